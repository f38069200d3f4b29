"""Experiments API: define, list, read, start, stop, conclude (and promote), results, planning.

Thin: the abtest services decide and write the audit rows. Starting, stopping and
concluding change the endpoint's split, so they need the `deploy` scope; a promotion also
goes through the alias's gates (whose `required_role` decides who may).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from atoll.abtest import conclusion, lifecycle, planning, results, service
from atoll.abtest.schemas import (
    ConcludeRequest,
    ExperimentCreate,
    ExperimentRead,
    PlanRead,
    PlanRequest,
    ResultsRead,
    StopRequest,
)
from atoll.schemas import Page
from atoll.web.deps import Deployer, OptionalRegistryDep, PageDep, Reader, SessionDep
from atoll.web.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["experiments"])

ExperimentKey = Annotated[
    str,
    Path(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63, description="A DNS-1123 label"),
]


@router.get("/experiments")
def list_experiments(
    principal: Reader,
    session: SessionDep,
    page: PageDep,
    endpoint: Annotated[str | None, Query(max_length=63)] = None,
    state: Annotated[str | None, Query(pattern="^(draft|running|stopped|concluded)$")] = None,
) -> Page[ExperimentRead]:
    rows, total = service.search(
        session, endpoint=endpoint, state=state, limit=page.limit, offset=page.offset
    )
    return Page(items=[service.read(r) for r in rows], total=total, limit=page.limit, offset=page.offset)


@router.post("/experiments", status_code=status.HTTP_201_CREATED, responses=errors(409))
def create_experiment(body: ExperimentCreate, principal: Deployer, session: SessionDep) -> ExperimentRead:
    """A draft: checked against the endpoint (arms behind it, weights summing to 100, one control)."""
    return service.read(service.create(session, actor=principal, body=body))


# Not /experiments/plan: that path is also the experiment keyed "plan".
@router.post("/experiment-plans")
def plan_experiment(body: PlanRequest, principal: Reader, session: SessionDep) -> PlanRead:
    """The wizard's proposal: units per arm from the power calculator, days from recent traffic."""
    return planning.plan(session, body)


@router.get("/experiments/{key}")
def get_experiment(key: ExperimentKey, principal: Reader, session: SessionDep) -> ExperimentRead:
    return service.read(service.get(session, key))


@router.post("/experiments/{key}/start", responses=errors(409))
def start_experiment(key: ExperimentKey, principal: Deployer, session: SessionDep) -> ExperimentRead:
    """Claim the endpoint's split and set the arms' weights with the experiment's own salt."""
    return service.read(lifecycle.start(session, actor=principal, key=key))


@router.post("/experiments/{key}/stop", responses=errors(409))
def stop_experiment(
    key: ExperimentKey, principal: Deployer, session: SessionDep, body: StopRequest | None = None
) -> ExperimentRead:
    """Put back the weights and salt found at start, and release the endpoint."""
    reason = body.reason if body else ""
    return service.read(lifecycle.stop(session, actor=principal, key=key, reason=reason))


@router.post("/experiments/{key}/conclude", responses=errors(409, 503))
def conclude_experiment(
    key: ExperimentKey,
    principal: Deployer,
    session: SessionDep,
    registry: OptionalRegistryDep,
    body: ConcludeRequest | None = None,
) -> ExperimentRead:
    """Record the verdict as evidence on each arm's version; with `promote`, move the winner's
    alias through the gates and all traffic to it in one step (409 with the gates' reasons)."""
    body = body or ConcludeRequest()
    concluded = conclusion.conclude(
        session, registry, actor=principal, key=key, promote=body.promote, reason=body.reason
    )
    return service.read(concluded)


@router.get("/experiments/{key}/results")
def experiment_results(key: ExperimentKey, principal: Reader, session: SessionDep) -> ResultsRead:
    """The live readout, computed now by aggregate SQL and the statistics engine."""
    return results.compute(session, service.get(session, key))
