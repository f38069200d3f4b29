"""Portal pages of the deployer: Deployments, a deployment (live status, events, pods or the
local process, logs, rollback, undeploy) and the one-click deploy from a build row
(form → the target's preview → Deploy).

Thin like the rest of the portal: the same services as `/api/v1/deployments`. Mutations go
through the CSRF-checked `Writer` and need the `deploy` scope, as the API does. A refusal
(a bad name, a build that did not succeed, an unreachable target) answers 200 with a
"not deployed" box where the person is looking, with the service's own sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from atoll.auth.policy import Principal, Scope
from atoll.deployer import desired, endpoints, lifecycle, service, states
from atoll.deployer.lifecycle import DeployerContext
from atoll.deployer.schemas import DeployRequest
from atoll.errors import AtollError, Forbidden
from atoll.registry import names
from atoll.registry import service as registry_service
from atoll.registry.builds import service as builds
from atoll.web.deps import DeployerDep, SessionDep, SettingsDep
from atoll.web.portal.render import render
from atoll.web.portal.views import Viewer, Writer

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 100
LOG_LINES = 200


def _need(principal: Principal, scope: Scope) -> None:
    reason = principal.missing(scope)
    if reason is not None:
        raise Forbidden(reason)


def _refused(
    request: Request, principal: Principal, exc: AtollError, what: str, *, into: str | None = None
) -> Response:
    """The refusal box; `into` sends it to another element than the form's target (htmx)."""
    response = render(request, "deployer/_refused.html", principal=principal, what=what, detail=exc.detail)
    if into is not None:
        response.headers["HX-Retarget"], response.headers["HX-Reswap"] = into, "innerHTML"
    return response


@router.get("/deployments", response_class=HTMLResponse)
def deployments_page(
    request: Request,
    principal: Viewer,
    session: SessionDep,
    deployer: DeployerDep,
    settings: SettingsDep,
    every: bool = False,
) -> Response:
    rows, total = service.search(session, include_undeployed=every, limit=PAGE_SIZE, offset=0)
    found, _ = endpoints.search(session, limit=PAGE_SIZE, offset=0)
    return render(
        request,
        "deployer/deployments.html",
        principal=principal,
        deployments=[service.read(session, row) for row in rows],
        total=total,
        every=every,
        endpoints=[endpoints.read(session, e, settings.effective_router_url) for e in found],
        targets=service.target_health(deployer),
    )


def _deployment_context(session: SessionDep, deployer: DeployerDep, name: str) -> dict[str, Any]:
    status = service.live_status(session, deployer, name)
    return {
        "live": status,
        "d": status.deployment,
        "polling": status.deployment.state in states.ROLLING_STATES,
        "events": service.events(session, deployer, name, limit=30),
    }


@router.get("/deployments/{name}", response_class=HTMLResponse)
def deployment_page(
    request: Request, name: str, principal: Viewer, session: SessionDep, deployer: DeployerDep
) -> Response:
    lifecycle.get(session, name)
    return render(
        request,
        "deployer/deployment.html",
        principal=principal,
        can_deploy=principal.can(Scope.deploy),
        revisions=service.revisions(session, name),
        **_deployment_context(session, deployer, name),
    )


@router.get("/deployments/{name}/live", response_class=HTMLResponse)
def deployment_live(
    request: Request, name: str, principal: Viewer, session: SessionDep, deployer: DeployerDep
) -> Response:
    """The status and events block; it keeps polling itself every 2 s while the rollout runs."""
    return render(
        request,
        "deployer/_live.html",
        principal=principal,
        can_deploy=principal.can(Scope.deploy),
        **_deployment_context(session, deployer, name),
    )


@router.get("/deployments/{name}/logs", response_class=HTMLResponse)
def deployment_logs(
    request: Request, name: str, principal: Viewer, session: SessionDep, deployer: DeployerDep
) -> Response:
    try:
        found = service.logs(session, deployer, name, tail=LOG_LINES).logs
        error = None
    except AtollError as exc:
        found, error = [], exc.detail
    return render(request, "deployer/_logs.html", principal=principal, logs=found, error=error)


@router.post("/deployments/{name}/rollback", response_class=HTMLResponse)
def rollback(
    request: Request,
    name: str,
    principal: Writer,
    session: SessionDep,
    deployer: DeployerDep,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    return _act(
        request,
        principal,
        session,
        deployer,
        name,
        "Not rolled back",
        lambda: service.rollback(session, deployer, actor=principal, name=name, reason=reason.strip()),
    )


@router.post("/deployments/{name}/undeploy", response_class=HTMLResponse)
def undeploy(
    request: Request,
    name: str,
    principal: Writer,
    session: SessionDep,
    deployer: DeployerDep,
    force: Annotated[bool, Form()] = False,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    return _act(
        request,
        principal,
        session,
        deployer,
        name,
        "Not undeployed",
        lambda: service.undeploy(
            session, deployer, actor=principal, name=name, force=force, reason=reason.strip()
        ),
    )


def _act(
    request: Request,
    principal: Principal,
    session: Session,
    deployer: DeployerContext,
    name: str,
    refused_title: str,
    action: Callable[[], object],
) -> Response:
    """Run a deployment action for the deployment page; re-render its live part, or say why not."""
    try:
        _need(principal, Scope.deploy)
        action()
    except AtollError as exc:
        return _refused(request, principal, exc, refused_title, into="#action-result")
    session.flush()
    return render(
        request,
        "deployer/_live.html",
        principal=principal,
        can_deploy=True,
        **_deployment_context(session, deployer, name),
    )


# --- the one click: a build row → form → preview → deploy -----------------------------------


@router.get("/models/{model}/versions/{version}/deploy", response_class=HTMLResponse)
def deploy_form(
    request: Request,
    model: str,
    version: int,
    principal: Viewer,
    session: SessionDep,
    deployer: DeployerDep,
    backend: str,
    build_id: int | None = None,
) -> Response:
    names.check_model_name(model)
    registry_service.get_version(session, model, version)
    candidates = [b for b in builds.list_builds(session, model, version) if b.backend == backend]
    build = next((b for b in candidates if b.id == build_id), candidates[0] if candidates else None)
    found, _ = endpoints.search(session, limit=PAGE_SIZE, offset=0)
    return render(
        request,
        "deployer/deploy_form.html",
        principal=principal,
        can_deploy=principal.can(Scope.deploy),
        model=model,
        version=version,
        backend=backend,
        build=build,
        default_name=desired.default_name(model, version, backend),
        endpoint_names=[e.name for e in found],
        targets=service.target_health(deployer),
    )


def _deploy_form(
    model: str,
    version: int,
    backend: Annotated[str, Form()],
    target: Annotated[str, Form()] = "",
    endpoint: Annotated[str, Form(max_length=63)] = "",
    name: Annotated[str, Form(max_length=63)] = "",
    replicas: Annotated[int, Form(ge=1, le=1000)] = 1,
    build_id: Annotated[int | None, Form()] = None,
) -> DeployRequest:
    """The deploy form (preview and deploy post the same one) as the API's request."""
    return DeployRequest.model_validate(
        {
            "model": model,
            "version": version,
            "backend": backend,
            "build_id": build_id,
            "target": target or None,
            "endpoint": endpoint.strip() or None,
            "name": name.strip() or None,
            "replicas": replicas,
        }
    )


DeployForm = Annotated[DeployRequest, Depends(_deploy_form)]


@router.post("/models/{model}/versions/{version}/deploy/preview", response_class=HTMLResponse)
def deploy_preview(
    request: Request,
    principal: Writer,
    session: SessionDep,
    deployer: DeployerDep,
    body: DeployForm,
) -> Response:
    """The target's own dry run of what Deploy would apply, and the Deploy button."""
    try:
        preview = service.preview(session, deployer, body)
    except AtollError as exc:
        return _refused(request, principal, exc, "Cannot deploy")
    return render(
        request,
        "deployer/_preview.html",
        principal=principal,
        preview=preview,
        form=body,
        can_deploy=principal.can(Scope.deploy),
    )


@router.post("/models/{model}/versions/{version}/deploy", response_class=HTMLResponse)
def deploy(
    request: Request,
    principal: Writer,
    session: SessionDep,
    deployer: DeployerDep,
    body: DeployForm,
) -> Response:
    """Deploy, then send the browser to the deployment's page to watch the rollout."""
    try:
        _need(principal, Scope.deploy)
        created = service.deploy(session, deployer, actor=principal, request=body)
    except AtollError as exc:
        return _refused(request, principal, exc, "Not deployed")
    return Response(status_code=204, headers={"HX-Redirect": f"/deployments/{created.name}"})
