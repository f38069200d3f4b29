"""The router's view of the endpoints: read from the platform database, cached.

Staleness is bounded: a `TableCache` serves a table at most `refresh_seconds` old (1 s by
default, `ATOLL_ROUTER_REFRESH_SECONDS`) plus the time one query takes; the app refreshes
at once, at most every `MIN_FORCED_SECONDS`, when a request names an endpoint it does not
know, finds no ready deployment, or a deployment refuses the connection. So a switch
reaches every router replica within about a second, and the previous deployment stays
warm (weight 0, still running) for that second, which is why a switch fails no request.
The same bound holds for a weight change, a new split salt and the endpoint's unit
settings: each replica applies them within about a second (plus one query); during that
second two replicas may send a unit that moves to different deployments.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from atoll.deployer.models import Deployment, Endpoint, EndpointRoute
from atoll.deployer.routing.choice import EndpointRoutes, Route
from atoll.deployer.routing.units import DEFAULT_UNIT_HEADER

AVAILABLE = "available"
MIN_FORCED_SECONDS = 0.2


def load(engine: Engine) -> dict[str, EndpointRoutes]:
    """Every endpoint with its routes, split salt and unit settings, in one query."""
    query = (
        select(
            Endpoint.name,
            Endpoint.split_salt,
            Endpoint.settings,
            Deployment.name,
            EndpointRoute.weight,
            Deployment.address,
            Deployment.state,
        )
        .select_from(Endpoint)
        .outerjoin(EndpointRoute, EndpointRoute.endpoint_id == Endpoint.id)
        .outerjoin(Deployment, Deployment.id == EndpointRoute.deployment_id)
        .order_by(Endpoint.name, EndpointRoute.weight.desc(), Deployment.name)
    )
    routes: dict[str, list[Route]] = {}
    splits: dict[str, tuple[str, dict[str, Any]]] = {}
    with engine.connect() as connection:
        for endpoint, salt, settings, deployment, weight, address, state in connection.execute(query):
            found = routes.setdefault(endpoint, [])
            splits[endpoint] = (salt, settings or {})
            if deployment is not None:
                found.append(Route(deployment, int(weight), address, state == AVAILABLE))
    return {name: _endpoint(name, tuple(found), *splits[name]) for name, found in routes.items()}


def _endpoint(name: str, routes: tuple[Route, ...], salt: str, settings: dict[str, Any]) -> EndpointRoutes:
    header = settings.get("unit_header") or DEFAULT_UNIT_HEADER
    field = settings.get("unit_field") or None
    return EndpointRoutes(
        name,
        routes,
        salt=salt,
        unit_header=str(header).lower().encode("latin-1"),
        unit_field=str(field) if field else None,
    )


@dataclass
class TableCache:
    """The last table read, when, and the last error (the app refreshes it; it never blocks a request)."""

    refresh_seconds: float = 1.0
    table: dict[str, EndpointRoutes] = field(default_factory=dict)
    loaded_at: float | None = None  # time.monotonic() of the last successful load
    last_error: str | None = None
    last_forced: float = 0.0

    def store(self, table: dict[str, EndpointRoutes]) -> None:
        self.table, self.loaded_at, self.last_error = table, time.monotonic(), None

    def age(self) -> float | None:
        return None if self.loaded_at is None else time.monotonic() - self.loaded_at

    def fresh_enough(self) -> bool:
        """Ready to route: loaded, and not far behind (five refresh periods, at least 5 s)."""
        age = self.age()
        return age is not None and age <= max(5 * self.refresh_seconds, 5.0)

    def may_force(self) -> bool:
        now = time.monotonic()
        if now - self.last_forced < MIN_FORCED_SECONDS:
            return False
        self.last_forced = now
        return True
