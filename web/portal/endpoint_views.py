"""The endpoint page: its deployments with weights (edited with a form), its unit settings, the
history of its splits, "what served at time T", and slots the other features fill.

Thin: the same services as `/api/v1/endpoints` (deployer/endpoints.py, traffic_history.py).
The weights form posts through the CSRF-checked `Writer` and needs the `deploy` scope, as
the API does; a refusal (weights not summing to 100, a deployment not available, a canary
or an experiment holding the split) shows the service's own sentence beside the form.

Slots (`hx-get` on load, each served by its owner, an empty 200 when there is nothing to
show): `/endpoints/{name}/canary` and `/endpoints/{name}/shadow` (traffic), `/experiments`
(abtest), `/drift-banner` (monitoring).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from atoll.auth.policy import Principal, Scope
from atoll.deployer import endpoints, traffic_history
from atoll.errors import AtollError, Forbidden, InvalidInput
from atoll.schemas import IsoDateTime
from atoll.web.deps import SessionDep, SettingsDep
from atoll.web.portal.render import render
from atoll.web.portal.views import Viewer, Writer

router = APIRouter(include_in_schema=False)
HISTORY_ROWS = 50
WEIGHT_FIELD = "weight:"  # the form's weight inputs are named weight:<deployment>
_AT = TypeAdapter(IsoDateTime)


def _routes_context(session: Session, name: str, router_url: str, principal: Principal) -> dict[str, Any]:
    return {
        "e": endpoints.read(session, endpoints.get(session, name), router_url),
        "can_deploy": principal.can(Scope.deploy),
    }


@router.get("/endpoints/{name}", response_class=HTMLResponse)
def endpoint_page(
    request: Request, name: str, principal: Viewer, session: SessionDep, settings: SettingsDep
) -> Response:
    context = _routes_context(session, name, settings.effective_router_url, principal)
    history, total = endpoints.history(session, name, limit=HISTORY_ROWS, offset=0)
    return render(
        request,
        "deployer/endpoint.html",
        principal=principal,
        history=history,
        history_total=total,
        **context,
    )


@router.post("/endpoints/{name}/split", response_class=HTMLResponse)
async def split(
    request: Request, name: str, principal: Writer, session: SessionDep, settings: SettingsDep
) -> Response:
    """Set the weights from the form; answer the routes block again, or the refusal inline."""
    form = await request.form()
    reason = str(form.get("reason", "")).strip()[:2000]
    try:
        if not principal.can(Scope.deploy):
            raise Forbidden(principal.missing(Scope.deploy) or "you may not change traffic")
        weights = _weights_from(form.multi_items())
        endpoints.set_weights(session, actor=principal, name=name, to=weights, reason=reason)
    except AtollError as exc:
        response = render(
            request,
            "deployer/_refused.html",
            principal=principal,
            what="Weights not changed",
            detail=exc.detail,
        )
        response.headers["HX-Retarget"], response.headers["HX-Reswap"] = "#split-result", "innerHTML"
        return response
    session.flush()
    return render(
        request,
        "deployer/_endpoint_routes.html",
        principal=principal,
        changed=True,
        **_routes_context(session, name, settings.effective_router_url, principal),
    )


def _weights_from(items: list[tuple[str, Any]]) -> dict[str, int]:
    weights: dict[str, int] = {}
    for key, value in items:
        if not key.startswith(WEIGHT_FIELD):
            continue
        deployment, text = key[len(WEIGHT_FIELD) :], str(value).strip() or "0"
        if not text.isdigit():
            raise InvalidInput(f"weights: {deployment} has {text!r}; a weight is a whole percent 0 to 100")
        weights[deployment] = int(text)
    if not weights:
        raise InvalidInput("weights: the form carried none")
    return weights


@router.get("/endpoints/{name}/served", response_class=HTMLResponse)
def served(request: Request, name: str, principal: Viewer, session: SessionDep, at: str = "") -> Response:
    """What served the endpoint's traffic at `at` (the page's "at time T" lookup)."""
    try:
        moment: datetime = _AT.validate_python(at.strip())
    except ValidationError:
        detail = f"{at!r} is not a date and time; use ISO 8601, e.g. 2026-11-27T10:00:00Z (UTC if no offset)"
        return render(
            request, "deployer/_refused.html", principal=principal, what="Cannot look up", detail=detail
        )
    found = traffic_history.served_at(session, name, moment)
    return render(request, "deployer/_served.html", principal=principal, served=found)
