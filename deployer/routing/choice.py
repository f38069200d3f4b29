"""Which deployment serves a request: a pure function of an endpoint's routes.

Routes carry integer weights in percent that sum to 100 (`atoll.deployer.endpoints`). A
route can take traffic when its weight is above 0 and its deployment is ready. `choose`
maps a number `draw` in [0, 1) onto the cumulative weights of those routes, so:

- one route at 100, the others warm at 0: every draw picks the active deployment;
- a weighted split without a unit key: the caller passes a uniform random draw.

With a unit key, `choose_for_unit` applies sticky assignment instead (weighted rendezvous
hashing of (split salt, unit), deployer/assignment.py), the same in every router replica
and across restarts. The router's retry passes the routes left once the failed one is
taken out: their weights are renormalised, and a sticky unit goes to its second choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from atoll.deployer.assignment import pick


@dataclass(frozen=True)
class Route:
    deployment: str
    weight: int
    address: str | None  # http://host:port of the model server; None until it is available
    ready: bool

    @property
    def can_serve(self) -> bool:
        return self.weight > 0 and self.ready and self.address is not None


@dataclass(frozen=True)
class EndpointRoutes:
    name: str
    routes: tuple[Route, ...]
    salt: str = ""  # the split salt: seeds sticky assignment, names the split in exposures
    unit_header: bytes = b"x-atoll-unit"  # lowercase
    unit_field: str | None = None  # a JSON body field (dotted path) holding the unit key

    def describe(self) -> str:
        """The routes as a person reads them, for a 503's detail."""
        if not self.routes:
            return "no deployments"
        return ", ".join(
            f"{r.deployment} {r.weight}% ({'ready' if r.ready else 'not ready'})" for r in self.routes
        )


def choose(routes: Sequence[Route], draw: float) -> Route | None:
    """The route that serves a request whose draw is `draw` (0 <= draw < 1); None if none can."""
    eligible = [r for r in routes if r.can_serve]
    total = sum(r.weight for r in eligible)
    if total == 0:
        return None
    point = draw * total
    cumulative = 0
    for route in eligible:
        cumulative += route.weight
        if point < cumulative:
            return route
    return eligible[-1]


def choose_for_unit(routes: Sequence[Route], unit_key: int) -> Route | None:
    """The route of the unit whose key (assignment.unit_key) is `unit_key`; None if none can serve."""
    eligible = {r.deployment: r for r in routes if r.can_serve}
    found = pick(unit_key, [(r.deployment, r.weight) for r in eligible.values()])
    return None if found is None else eligible[found]
