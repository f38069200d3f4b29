"""Portal pages for experiments: the list, the wizard, the live results page, its actions, and
the fragment the endpoint page embeds (`/endpoints/{name}/experiments`).

Thin: parse, authorise, call the abtest services, render. A refused action rolls the
request's transaction back before it renders the refusal (the request still answers 200 so
htmx shows the box where the person is looking), so nothing half-done is committed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.abtest import allocation, conclusion, lifecycle, planning, results, service
from atoll.abtest.models import RUNNING, Experiment
from atoll.abtest.schemas import ExperimentCreate, PlanRequest, ResultsRead
from atoll.abtest.stats.inputs import describe
from atoll.abtest.sums import exposures_per_arm
from atoll.auth.policy import Principal, Scope
from atoll.deployer import endpoints
from atoll.deployer.models import Endpoint
from atoll.errors import AtollError, Forbidden
from atoll.web.deps import OptionalRegistryDep, SessionDep
from atoll.web.portal import charts
from atoll.web.portal.experiment_charts import LinePlot, line_plot
from atoll.web.portal.render import render
from atoll.web.portal.views import Viewer, Writer

router = APIRouter(include_in_schema=False)
FormText = Annotated[str, Form()]
PAGE_SIZE = 100


def _need(principal: Principal, scope: Scope) -> None:
    reason = principal.missing(scope)
    if reason is not None:
        raise Forbidden(reason)


def _refused(
    request: Request, principal: Principal, session: Session, exc: AtollError, what: str
) -> Response:
    session.rollback()
    response = render(request, "deployer/_refused.html", principal=principal, what=what, detail=exc.detail)
    response.headers["HX-Retarget"], response.headers["HX-Reswap"] = "#action-result", "innerHTML"
    return response


@router.get("/experiments", response_class=HTMLResponse)
def experiments_page(request: Request, principal: Viewer, session: SessionDep) -> Response:
    rows, total = service.search(session, limit=PAGE_SIZE, offset=0)
    return render(
        request,
        "experiments/list.html",
        principal=principal,
        experiments=rows,
        total=total,
        can_deploy=principal.can(Scope.deploy),
    )


# --- the wizard ------------------------------------------------------------------------------


def _endpoint_arms(session: Session, name: str) -> list[dict[str, Any]]:
    try:
        found = endpoints.get(session, name)
    except AtollError:
        return []
    return [
        {"deployment": d.name, "weight": r.weight, "state": d.state, "model": f"{d.model_name} v{d.version}"}
        for r, d in endpoints.routes(session, found)
    ]


@router.get("/experiments/new", response_class=HTMLResponse)
def wizard(request: Request, principal: Viewer, session: SessionDep, endpoint: str = "") -> Response:
    names = list(session.scalars(select(Endpoint.name).order_by(Endpoint.name)))
    chosen = endpoint if endpoint in names else (names[0] if names else "")
    return render(
        request,
        "experiments/new.html",
        principal=principal,
        endpoints=names,
        chosen=chosen,
        arms=_endpoint_arms(session, chosen),
    )


@router.get("/experiments/new/arms", response_class=HTMLResponse)
def wizard_arms(request: Request, principal: Viewer, session: SessionDep, endpoint: str = "") -> Response:
    return render(
        request, "experiments/_arms.html", principal=principal, arms=_endpoint_arms(session, endpoint)
    )


def _number(text: str) -> float | None:
    return float(text) if text.strip() else None


@router.post("/experiments/new/plan", response_class=HTMLResponse)
def wizard_plan(
    request: Request,
    principal: Writer,
    session: SessionDep,
    endpoint: FormText = "",
    metric_type: FormText = "binary",
    baseline: FormText = "",
    std: FormText = "",
    mde: FormText = "",
    alpha: FormText = "0.05",
    power: FormText = "0.8",
    method: FormText = "fixed",
    arm_count: FormText = "2",
) -> Response:
    """The proposal: units per arm from the power calculator, days from the endpoint's traffic."""
    try:
        body = PlanRequest.model_validate(
            {
                "endpoint": endpoint,
                "metric_type": metric_type if metric_type in ("binary", "mean") else "binary",
                "baseline": _number(baseline),
                "std": _number(std),
                "mde": _number(mde),
                "alpha": _number(alpha),
                "power": _number(power),
                "arms": int(arm_count or 2),
                "method": method,
            }
        )
        proposal = planning.plan(session, body)
    except ValidationError as exc:
        return render(request, "stats/_error.html", principal=principal, error=describe(exc))
    except (AtollError, ValueError) as exc:
        return render(
            request, "stats/_error.html", principal=principal, error=getattr(exc, "detail", str(exc))
        )
    return render(request, "experiments/_plan.html", principal=principal, plan=proposal)


@router.post("/experiments/new", response_class=HTMLResponse)
async def create(request: Request, principal: Writer, session: SessionDep) -> Response:
    form = await request.form()
    text = {k: str(v).strip() for k, v in form.items()}
    deployments = [k.removeprefix("weight:") for k in text if k.startswith("weight:")]
    arms = [
        {"deployment": d, "weight": int(text[f"weight:{d}"] or 0), "control": text.get("control") == d}
        for d in deployments
        if (text[f"weight:{d}"] or "0") != "0"
    ]
    metric: dict[str, Any] = {"name": text.get("metric_name", ""), "type": text.get("metric_type", "binary")}
    metric["event"] = text.get("metric_event") or None
    body: dict[str, Any] = {
        "key": text.get("key", ""),
        "endpoint": text.get("endpoint", ""),
        "description": text.get("description", ""),
        "arms": arms,
        "metrics": [metric],
        "hypothesis": text.get("hypothesis", "superiority"),
        "margin": _number(text.get("margin", "")) or 0.0,
        "alpha": _number(text.get("alpha", "")) or 0.05,
        "method": text.get("method", "fixed"),
        "mde": _number(text.get("mde", "")),
        "baseline": _number(text.get("baseline", "")),
        "std": _number(text.get("std", "")),
        "attribution_seconds": int(float(text.get("attribution_hours") or 24) * 3600),
        "allocation": text.get("allocation", "fixed"),
    }
    try:
        _need(principal, Scope.deploy)
        created = service.create(session, actor=principal, body=ExperimentCreate.model_validate(body))
    except ValidationError as exc:
        session.rollback()
        return render(request, "stats/_error.html", principal=principal, error=describe(exc))
    except AtollError as exc:
        session.rollback()
        return render(request, "stats/_error.html", principal=principal, error=exc.detail)
    return Response(status_code=204, headers={"HX-Redirect": f"/experiments/{created.key}"})


# --- one experiment ------------------------------------------------------------------------------


@router.get("/experiments/{key}", response_class=HTMLResponse)
def experiment_page(request: Request, key: str, principal: Viewer, session: SessionDep) -> Response:
    return render(
        request,
        "experiments/experiment.html",
        principal=principal,
        experiment=service.get(session, key),
        can_deploy=principal.can(Scope.deploy),
    )


def lift_charts(session: Session, experiment: Experiment, readout: ResultsRead) -> dict[str, LinePlot]:
    """Per metric, the cumulative relative lift of each treatment arm over the snapshots."""
    plots = {}
    control = service.control_arm(experiment)
    for metric in service.metrics_of(experiment):
        data: dict[str, list[Any]] = {}
        for row in results.history(session, experiment, metric.name):
            if row.arm == control:
                continue
            scale = 100.0
            data.setdefault(row.arm, []).append(
                (
                    row.ts,
                    row.relative_lift * scale if row.relative_lift is not None else None,
                    row.relative_lower * scale if row.relative_lower is not None else None,
                    row.relative_upper * scale if row.relative_upper is not None else None,
                )
            )
        if any(len(points) > 1 for points in data.values()):
            plots[metric.name] = line_plot(data, axis_label="relative lift over time (%)", percent=True)
    return plots


def share_chart(session: Session, experiment: Experiment) -> LinePlot | None:
    """Each arm's share of traffic from the start through every adaptive re-weighting."""
    changes = allocation.history(session, experiment)
    if not changes or experiment.started_at is None:
        return None
    data: dict[str, list[Any]] = {}
    started_with: dict[str, int] = changes[0].posterior.get("previous", {})
    for deployment, weight in started_with.items():  # the weights it started with, then each change
        data.setdefault(deployment, []).append((experiment.started_at, float(weight), None, None))
    for change in changes:
        for arm, weight in change.weights.items():
            data.setdefault(arm, []).append((change.ts, float(weight), None, None))
    return line_plot(data, axis_label="share of traffic (%)", percent=True, include_zero=True)


@router.get("/experiments/{key}/results", response_class=HTMLResponse)
def results_fragment(request: Request, key: str, principal: Viewer, session: SessionDep) -> Response:
    """The live part of the page (htmx refreshes it): progress, SRM, metrics, charts."""
    experiment = service.get(session, key)
    readout = results.compute(session, experiment)
    analysis = readout.analysis
    forests = {m.name: charts.metric_forest(m) for m in analysis.metrics} if analysis else {}
    if readout.secondary:
        forests.update({m.name: charts.metric_forest(m) for m in readout.secondary.metrics})
    changes = allocation.history(session, experiment)
    return render(
        request,
        "experiments/_results.html",
        principal=principal,
        experiment=experiment,
        readout=readout,
        charts=forests,
        lifts=lift_charts(session, experiment, readout),
        shares=share_chart(session, experiment),
        posteriors=changes[-1].posterior.get("arms", []) if changes else [],
        labels=charts.VERDICT_LABELS,
        fmt=charts.format_value,
        fmt_p=charts.format_p,
    )


def _act(
    request: Request, principal: Principal, session: Session, key: str, what: str, action: Any
) -> Response:
    try:
        _need(principal, Scope.deploy)
        action()
    except AtollError as exc:
        return _refused(request, principal, session, exc, what)
    return Response(status_code=204, headers={"HX-Redirect": f"/experiments/{key}"})


@router.post("/experiments/{key}/start", response_class=HTMLResponse)
def start(request: Request, key: str, principal: Writer, session: SessionDep) -> Response:
    return _act(
        request,
        principal,
        session,
        key,
        "Not started",
        lambda: lifecycle.start(session, actor=principal, key=key),
    )


@router.post("/experiments/{key}/stop", response_class=HTMLResponse)
def stop(
    request: Request, key: str, principal: Writer, session: SessionDep, reason: FormText = ""
) -> Response:
    return _act(
        request,
        principal,
        session,
        key,
        "Not stopped",
        lambda: lifecycle.stop(session, actor=principal, key=key, reason=reason.strip()),
    )


@router.post("/experiments/{key}/conclude", response_class=HTMLResponse)
def conclude(
    request: Request,
    key: str,
    principal: Writer,
    session: SessionDep,
    registry: OptionalRegistryDep,
    promote: FormText = "",
) -> Response:
    return _act(
        request,
        principal,
        session,
        key,
        "Not concluded",
        lambda: conclusion.conclude(session, registry, actor=principal, key=key, promote=promote == "true"),
    )


@router.get("/endpoints/{name}/experiments", response_class=HTMLResponse)
def endpoint_fragment(request: Request, name: str, principal: Viewer, session: SessionDep) -> Response:
    """For the endpoint page: its running experiment and units per arm; empty when there is none.

    Only the exposure counts (one grouped query), not the whole readout: the endpoint page
    polls often, and the results page is one click away."""
    experiment = session.scalar(
        select(Experiment).where(Experiment.endpoint == name, Experiment.state == RUNNING)
    )
    if experiment is None:
        return HTMLResponse("")
    units = exposures_per_arm(session, split=experiment.salt)
    return render(
        request, "experiments/_endpoint.html", principal=principal, experiment=experiment, units=units
    )
