"""Which deployment serves a request: a pure function of an endpoint's routes.

Routes carry integer weights in percent that sum to 100 (`atoll.deployer.endpoints`). A
route can take traffic when its weight is above 0 and its deployment is ready. `choose`
maps a number `draw` in [0, 1) onto the cumulative weights of those routes, so:

- today (one route at 100, the others warm at 0) every draw picks the active deployment;
- a weighted split needs no change here: the caller passes a uniform random draw;
- sticky assignment passes a draw derived from a seeded hash of (split salt, unit key),
  the same in every router replica and across restarts.

The router's retry after a refused connection passes the routes left once the failed one
is taken out; their weights are then renormalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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
