"""Deployments API: deploy (or preview), list, read, status, events, logs, revisions,
rollback, undeploy; and the targets' health. Thin: parse, authorise, call the service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from atoll.deployer import lifecycle, service
from atoll.deployer.schemas import (
    DeploymentRead,
    DeploymentStatusRead,
    DeployRequest,
    EventsRead,
    LogsRead,
    PreviewRead,
    RevisionRead,
    RollbackRequest,
    TargetHealthRead,
    UndeployRead,
)
from atoll.deployer.states import State
from atoll.schemas import Page
from atoll.web.deps import Deployer, DeployerDep, PageDep, Reader, SessionDep
from atoll.web.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["deployments"])

DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DeploymentName = Annotated[
    str,
    Path(
        pattern=DNS_1035_LABEL,
        max_length=63,
        description="A DNS-1123 label starting with a letter, e.g. ranker-v7-gpu",
    ),
]


@router.get("/deployments")
def list_deployments(
    principal: Reader,
    session: SessionDep,
    page: PageDep,
    state: State | None = None,
    endpoint: str | None = None,
    model: str | None = None,
    include_undeployed: bool = True,
) -> Page[DeploymentRead]:
    """Newest first; filter by state, endpoint or model."""
    rows, total = service.search(
        session,
        state=state,
        endpoint=endpoint,
        model=model,
        include_undeployed=include_undeployed,
        limit=page.limit,
        offset=page.offset,
    )
    items = [service.read(session, row) for row in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post(
    "/deployments", status_code=status.HTTP_202_ACCEPTED, response_model=None, responses=errors(404, 409, 503)
)
def create_deployment(
    body: DeployRequest, principal: Deployer, session: SessionDep, deployer: DeployerDep, response: Response
) -> DeploymentRead | PreviewRead:
    """Deploy a build (202: the rollout runs in a job; poll `/status`). With `dry_run`, the
    target's preview instead (200), and nothing is written."""
    if body.dry_run:
        response.status_code = status.HTTP_200_OK
        return service.preview(session, deployer, body)
    deployment = service.deploy(session, deployer, actor=principal, request=body)
    return service.read(session, deployment)


# Not /deployments/preview: that path is also the deployment named "preview".
@router.post("/deployment-previews", responses=errors(404, 409, 503))
def preview_deployment(
    body: DeployRequest, principal: Reader, session: SessionDep, deployer: DeployerDep
) -> PreviewRead:
    """What deploying would change on the target (its own server-side dry run)."""
    return service.preview(session, deployer, body)


@router.get("/deployments/{name}")
def get_deployment(name: DeploymentName, principal: Reader, session: SessionDep) -> DeploymentRead:
    return service.read(session, lifecycle.get(session, name))


@router.get("/deployments/{name}/status")
def deployment_status(
    name: DeploymentName, principal: Reader, session: SessionDep, deployer: DeployerDep
) -> DeploymentStatusRead:
    """The stored state and what the target reports now (pods or the local process)."""
    return service.live_status(session, deployer, name)


@router.get("/deployments/{name}/events")
def deployment_events(
    name: DeploymentName,
    principal: Reader,
    session: SessionDep,
    deployer: DeployerDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EventsRead:
    """Atoll's events (state changes, repairs, switches) and the target's, newest first."""
    return service.events(session, deployer, name, limit=limit)


@router.get("/deployments/{name}/logs")
def deployment_logs(
    name: DeploymentName,
    principal: Reader,
    session: SessionDep,
    deployer: DeployerDep,
    tail: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> LogsRead:
    """The last lines of each model server's log."""
    return service.logs(session, deployer, name, tail=tail)


@router.get("/deployments/{name}/revisions")
def deployment_revisions(name: DeploymentName, principal: Reader, session: SessionDep) -> list[RevisionRead]:
    return service.revisions(session, name)


@router.post("/deployments/{name}/rollback", status_code=status.HTTP_202_ACCEPTED, responses=errors(409, 503))
def rollback_deployment(
    name: DeploymentName,
    principal: Deployer,
    session: SessionDep,
    deployer: DeployerDep,
    body: RollbackRequest | None = None,
) -> DeploymentRead:
    """Back to the previous revision, rolled out as a new one."""
    reason = body.reason if body else ""
    deployment = service.rollback(session, deployer, actor=principal, name=name, reason=reason)
    return service.read(session, deployment)


@router.delete("/deployments/{name}", responses=errors(409, 503))
def undeploy(
    name: DeploymentName,
    principal: Deployer,
    session: SessionDep,
    deployer: DeployerDep,
    force: Annotated[bool, Query(description="Also when it serves its endpoint's traffic")] = False,
    reason: Annotated[str, Query(max_length=2000)] = "",
) -> UndeployRead:
    """Delete everything the target applied for it, and nothing else."""
    deleted = service.undeploy(session, deployer, actor=principal, name=name, force=force, reason=reason)
    return UndeployRead(deployment=service.read(session, lifecycle.get(session, name)), deleted=deleted)


@router.get("/targets", tags=["deployments"])
def list_targets(principal: Reader, deployer: DeployerDep) -> list[TargetHealthRead]:
    """Each deployment target: reachable, or why not (the context, the server, the supervisor)."""
    return service.target_health(deployer)
