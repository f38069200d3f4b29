"""Portal fragments of progressive delivery, loaded by the endpoint page's htmx slots:
`/endpoints/{name}/canary` (steps, guardrail values against thresholds, abort) and
`/endpoints/{name}/shadow` (the comparison; start and stop).

Each answers 200 with an empty body when there is nothing to show, so the slot stays
empty. Mutations go through the CSRF-checked `Writer` and need the `deploy` scope, as the
API does; a refusal is the "not done" box with the service's own sentence.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from atoll.auth.policy import Principal, Scope
from atoll.deployer import canary, endpoints, shadow, states
from atoll.deployer.traffic_schemas import ShadowStart
from atoll.errors import AtollError, Forbidden, NotFound
from atoll.web.deps import SessionDep
from atoll.web.portal.render import render
from atoll.web.portal.views import Viewer, Writer

router = APIRouter(include_in_schema=False)


def _need(principal: Principal) -> None:
    reason = principal.missing(Scope.deploy)
    if reason is not None:
        raise Forbidden(reason)


def _refused(request: Request, principal: Principal, exc: AtollError, what: str) -> Response:
    return render(request, "deployer/_refused.html", principal=principal, what=what, detail=exc.detail)


def _canary_fragment(request: Request, principal: Principal, session: SessionDep, name: str) -> Response:
    try:
        found = canary.latest(session, name)
    except NotFound:
        return HTMLResponse("")
    if found is None:
        return HTMLResponse("")
    return render(
        request,
        "deployer/_canary.html",
        principal=principal,
        c=canary.read(session, found),
        can_deploy=principal.missing(Scope.deploy) is None,
    )


@router.get("/endpoints/{name}/canary", response_class=HTMLResponse)
def canary_fragment(request: Request, name: str, principal: Viewer, session: SessionDep) -> Response:
    return _canary_fragment(request, principal, session, name)


@router.post("/endpoints/{name}/canary/abort", response_class=HTMLResponse)
def abort_canary(
    request: Request,
    name: str,
    principal: Writer,
    session: SessionDep,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    try:
        _need(principal)
        canary.abort(session, actor=principal, name=name, reason=reason.strip())
    except AtollError as exc:
        return _refused(request, principal, exc, "Not aborted")
    session.flush()
    return _canary_fragment(request, principal, session, name)


def _shadow_fragment(request: Request, principal: Principal, session: SessionDep, name: str) -> Response:
    try:
        endpoint = endpoints.get(session, name)
    except NotFound:
        return HTMLResponse("")
    found = shadow.latest(session, name)
    can_deploy = principal.missing(Scope.deploy) is None
    spare = [
        d.name
        for r, d in endpoints.routes(session, endpoint)
        if r.weight == 0 and d.state == states.AVAILABLE
    ]
    if found is None and not (can_deploy and spare):
        return HTMLResponse("")
    return render(
        request,
        "deployer/_shadow.html",
        principal=principal,
        endpoint=name,
        s=shadow.read(session, found) if found is not None else None,
        spare=spare,
        can_deploy=can_deploy,
    )


@router.get("/endpoints/{name}/shadow", response_class=HTMLResponse)
def shadow_fragment(request: Request, name: str, principal: Viewer, session: SessionDep) -> Response:
    return _shadow_fragment(request, principal, session, name)


@router.post("/endpoints/{name}/shadow", response_class=HTMLResponse)
def start_shadow(
    request: Request,
    name: str,
    principal: Writer,
    session: SessionDep,
    to: Annotated[str, Form(max_length=63)],
    share: Annotated[str, Form(max_length=32)],
) -> Response:
    try:
        _need(principal)
        try:
            body = ShadowStart(to=to, share=float(share))
        except ValueError:
            raise AtollError(f"share: {share!r} is not a number in (0, 1], e.g. 0.1") from None
        shadow.start(session, actor=principal, name=name, body=body)
    except AtollError as exc:
        return _refused(request, principal, exc, "Shadow not started")
    session.flush()
    return _shadow_fragment(request, principal, session, name)


@router.post("/endpoints/{name}/shadow/stop", response_class=HTMLResponse)
def stop_shadow(request: Request, name: str, principal: Writer, session: SessionDep) -> Response:
    try:
        _need(principal)
        shadow.stop(session, actor=principal, name=name)
    except AtollError as exc:
        return _refused(request, principal, exc, "Shadow not stopped")
    session.flush()
    return _shadow_fragment(request, principal, session, name)
