"""Endpoints API: list, create, read, switch (blue/green), history. Thin: the service decides."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from atoll.deployer import endpoints
from atoll.deployer.schemas import EndpointChangeRead, EndpointCreate, EndpointRead, SwitchRequest
from atoll.schemas import Page
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
        session, actor=principal, name=body.name, description=body.description, settings=body.settings
    )
    return endpoints.read(session, created, settings.effective_router_url)


@router.get("/endpoints/{name}")
def get_endpoint(
    name: EndpointName, principal: Reader, session: SessionDep, settings: SettingsDep
) -> EndpointRead:
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
    name: EndpointName, principal: Reader, session: SessionDep, page: PageDep
) -> Page[EndpointChangeRead]:
    """Every change of the endpoint's routes, newest first: from, to, who, why, which job."""
    rows, total = endpoints.history(session, name, limit=page.limit, offset=page.offset)
    items = [EndpointChangeRead.model_validate(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
