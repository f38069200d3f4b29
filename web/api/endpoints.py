"""Endpoints API: list, create, read, update settings, switch (blue/green), split, history and
what served at a time T. Thin: the services decide (deployer/endpoints.py, traffic_history.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from atoll.deployer import endpoints, traffic_history
from atoll.deployer.schemas import (
    EndpointChangeRead,
    EndpointCreate,
    EndpointRead,
    EndpointUpdate,
    ServedAtRead,
    SplitRequest,
    SwitchRequest,
)
from atoll.schemas import IsoDateTime, Page
from atoll.web.deps import Deployer, PageDep, Reader, SessionDep, SettingsDep
from atoll.web.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["endpoints"])

DNS_1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
EndpointName = Annotated[
    str, Path(pattern=DNS_1123_LABEL, max_length=63, description="A DNS-1123 label, e.g. fraud-scoring")
]


@router.get("/endpoints")
def list_endpoints(
    principal: Reader, session: SessionDep, settings: SettingsDep, page: PageDep
) -> Page[EndpointRead]:
    rows, total = endpoints.search(session, limit=page.limit, offset=page.offset)
    items = [endpoints.read(session, row, settings.effective_router_url) for row in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post("/endpoints", status_code=status.HTTP_201_CREATED, responses=errors(409))
def create_endpoint(
    body: EndpointCreate, principal: Deployer, session: SessionDep, settings: SettingsDep
) -> EndpointRead:
    """An endpoint with no deployment yet (deploying with `endpoint` creates one too)."""
    created = endpoints.create(
        session,
        actor=principal,
        name=body.name,
        description=body.description,
        settings=body.settings.model_dump(exclude_none=True),
    )
    return endpoints.read(session, created, settings.effective_router_url)


@router.get("/endpoints/{name}")
def get_endpoint(
    name: EndpointName, principal: Reader, session: SessionDep, settings: SettingsDep
) -> EndpointRead:
    return endpoints.read(session, endpoints.get(session, name), settings.effective_router_url)


@router.patch("/endpoints/{name}")
def update_endpoint(
    name: EndpointName, body: EndpointUpdate, principal: Deployer, session: SessionDep, settings: SettingsDep
) -> EndpointRead:
    """Description and settings (`unit_header`, `unit_field`: where the router finds a request's unit)."""
    updated = endpoints.update(
        session,
        actor=principal,
        name=name,
        description=body.description,
        settings=body.settings.model_dump(exclude_unset=True) if body.settings else None,
        reason=body.reason,
    )
    return endpoints.read(session, updated, settings.effective_router_url)


@router.put("/endpoints/{name}/split", responses=errors(409))
def split_endpoint(
    name: EndpointName, body: SplitRequest, principal: Deployer, session: SessionDep, settings: SettingsDep
) -> EndpointRead:
    """Set the weights at once (percent, summing to 100; deployments left out get 0).

    422 names the field when the weights do not sum to 100 or name a deployment of another
    endpoint; 409 when a weight goes to a deployment that is not available, or a canary or an
    experiment controls the split (`traffic_owner`).
    """
    endpoints.set_weights(session, actor=principal, name=name, to=body.weights, reason=body.reason)
    return endpoints.read(session, endpoints.get(session, name), settings.effective_router_url)


@router.post("/endpoints/{name}/switch", responses=errors(409))
def switch_endpoint(
    name: EndpointName, body: SwitchRequest, principal: Deployer, session: SessionDep, settings: SettingsDep
) -> EndpointRead:
    """All traffic to one available deployment at once; the previous one stays warm at weight 0."""
    endpoints.switch(session, actor=principal, name=name, to=body.to, reason=body.reason)
    return endpoints.read(session, endpoints.get(session, name), settings.effective_router_url)


@router.get("/endpoints/{name}/history")
def endpoint_history(
    name: EndpointName,
    principal: Reader,
    session: SessionDep,
    page: PageDep,
    at: Annotated[
        IsoDateTime | None,
        Query(
            description="Instead of the list: what served the endpoint's traffic at this time (ISO 8601; "
            "UTC when no offset): per deployment its weight, model, version and backend then"
        ),
    ] = None,
) -> Page[EndpointChangeRead] | ServedAtRead:
    """Every change of the endpoint's routes, newest first: from, to, who, why, which job."""
    if at is not None:
        return traffic_history.served_at(session, name, at)
    rows, total = endpoints.history(session, name, limit=page.limit, offset=page.offset)
    items = [EndpointChangeRead.model_validate(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
