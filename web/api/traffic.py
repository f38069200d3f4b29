"""Progressive delivery API: an endpoint's canary (start, status, abort) and shadow (start, stop,
comparison). Thin: the services (deployer/canary.py, deployer/shadow.py) decide."""

from __future__ import annotations

from fastapi import APIRouter, status

from atoll.deployer import canary, shadow
from atoll.deployer.traffic_schemas import CanaryAbort, CanaryRead, CanaryStart, ShadowRead, ShadowStart
from atoll.web.api.endpoints import EndpointName
from atoll.web.deps import Deployer, Reader, SessionDep
from atoll.web.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["traffic"])


@router.post("/endpoints/{name}/canary", status_code=status.HTTP_201_CREATED, responses=errors(409))
def start_canary(
    name: EndpointName, body: CanaryStart, principal: Deployer, session: SessionDep
) -> CanaryRead:
    """Move the endpoint's traffic to `to` step by step; a guardrail breach rolls it back by itself.

    409 when the endpoint already has a canary or an experiment, or `to` is not available;
    422 for bad steps or a `to` that is not behind the endpoint."""
    started = canary.start(session, actor=principal, name=name, body=body)
    return canary.read(session, started)


@router.get("/endpoints/{name}/canary")
def canary_status(name: EndpointName, principal: Reader, session: SessionDep) -> CanaryRead:
    """The endpoint's latest canary: its step, and the guardrail values of the step so far."""
    return canary.read(session, canary.get_latest(session, name))


@router.post("/endpoints/{name}/canary/abort", responses=errors(409))
def abort_canary(
    name: EndpointName, principal: Deployer, session: SessionDep, body: CanaryAbort | None = None
) -> CanaryRead:
    """All traffic back to the stable deployment; the canary ends `aborted`."""
    aborted = canary.abort(session, actor=principal, name=name, reason=body.reason if body else "")
    return canary.read(session, aborted)


@router.post("/endpoints/{name}/shadow", status_code=status.HTTP_201_CREATED, responses=errors(409))
def start_shadow(
    name: EndpointName, body: ShadowStart, principal: Deployer, session: SessionDep
) -> ShadowRead:
    """Mirror `share` of the endpoint's requests to `to` (after each caller has its answer) and
    compare the predictions."""
    started = shadow.start(session, actor=principal, name=name, body=body)
    return shadow.read(session, started)


@router.delete("/endpoints/{name}/shadow", responses=errors(409))
def stop_shadow(name: EndpointName, principal: Deployer, session: SessionDep) -> ShadowRead:
    stopped = shadow.stop(session, actor=principal, name=name)
    return shadow.read(session, stopped)


@router.get("/endpoints/{name}/shadow")
def shadow_status(name: EndpointName, principal: Reader, session: SessionDep) -> ShadowRead:
    """The endpoint's latest shadow and the comparison so far (aggregated), with the last rows."""
    return shadow.read(session, shadow.get_latest(session, name))
