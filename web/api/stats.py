"""A/B statistics API: analyse per-arm summary statistics and plan sample sizes.

Pure computation over the request body (no database writes, so no audit event); any
caller with the `read` scope may use it. Invalid input is a 422 problem+json whose
`field` names what to fix, also for the model-level checks whose pydantic `loc` is empty
(`control`, `metrics.<name>.data`, `baseline`...): see `atoll.abtest.stats.inputs`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from atoll.abtest import stats
from atoll.abtest.stats import AnalysisRequest, AnalysisResult, PowerRequest, PowerResult
from atoll.abtest.stats.inputs import refine_error
from atoll.web.deps import Reader


class FieldNamingRoute(APIRoute):
    """Re-raises body validation errors with :func:`refine_error` applied."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def named(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                errors = [refine_error(e, prefix=("body",)) for e in exc.errors()]
                raise RequestValidationError(errors, body=exc.body) from exc

        return named


router = APIRouter(prefix="/api/v1/stats", tags=["stats"], route_class=FieldNamingRoute)


@router.post("/analyze")
def analyze(body: AnalysisRequest, principal: Reader) -> AnalysisResult:
    """Analyse an A/B test from per-arm summary statistics (see docs/statistics.md)."""
    return stats.analyze(body)


@router.post("/power")
def power(body: PowerRequest, principal: Reader) -> PowerResult:
    """Sample size (give `mde`), MDE (give `n_per_arm`) or achieved power (give both)."""
    return stats.power(body)
