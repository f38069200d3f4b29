"""The OpenAPI document, made exact: what every operation can answer, and in which format.

FastAPI documents successes from the return types and a JSON 422 for request validation.
Atoll answers every error as `application/problem+json`, so the document is finished here:

- one shared `Problem` schema (RFC 9457 plus `request_id` and optional details), used by every
  error response of every operation;
- 401 and 403 (and the bearer security requirement) on every operation outside the public
  paths, 404 on every operation with a path parameter, 413 on every operation with a body,
  422 wherever FastAPI validates input; routes add what only they can answer (409, 503...)
  with `errors(...)`.

Generated clients and the contract tier (schemathesis) read this document; see docs/api.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import BaseRoute

from atoll.errors import PROBLEM_JSON
from atoll.web.http_semantics import flatten_routes

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
DESCRIPTIONS = {
    400: "Malformed request (e.g. a body that is not JSON)",
    401: "Not signed in: send `Authorization: Bearer <token>`",
    403: "Signed in, but the token or role does not allow this",
    404: "The resource does not exist",
    409: "Conflicts with the current state (the detail names it)",
    413: "The request body is larger than the platform accepts",
    422: "Invalid input; `errors` lists each field and what is wrong",
    501: "The feature is switched off on this platform (the detail says how to switch it on)",
    503: "A dependency (e.g. MLflow) is unavailable; retry after `Retry-After` seconds",
}
METHODS = ("get", "put", "post", "delete", "patch")
F = TypeVar("F", bound=Callable[..., Any])


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the field, e.g. `events.3.ts`")
    in_: str = Field(alias="in", description="Where the field is: body, query, path or header")
    message: str


class Problem(BaseModel):
    """An error (RFC 9457). `detail` is written for a person to act on."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})

    type: str = Field(default="about:blank")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    request_id: str | None = Field(description="Quote it when reporting a problem")
    errors: list[FieldError] | None = Field(default=None, description="422 only: every invalid field")


ERRORS_ATTRIBUTE = "__openapi_errors__"


def raises(*statuses: int) -> Callable[[F], F]:
    """Marks a dependency with the error statuses it answers; every operation using it
    declares them (e.g. the MLflow dependency's 503)."""

    def mark(function: F) -> F:
        setattr(function, ERRORS_ATTRIBUTE, statuses)
        return function

    return mark


def _dependency_errors(dependant: Dependant) -> set[int]:
    found = set(getattr(dependant.call, ERRORS_ATTRIBUTE, ()))
    for child in dependant.dependencies:
        found |= _dependency_errors(child)
    return found


def _errors_by_operation(routes: Sequence[BaseRoute]) -> dict[tuple[str, str], set[int]]:
    found: dict[tuple[str, str], set[int]] = {}
    for route in flatten_routes(routes):
        if isinstance(route, APIRoute):
            statuses = _dependency_errors(route.dependant)
            for method in route.methods or ():
                found[(route.path_format, method.lower())] = statuses
    return found


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the error statuses only it can answer (described in the document)."""
    return {status: {"description": DESCRIPTIONS[status]} for status in statuses}


def _problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    return {
        "description": description or DESCRIPTIONS.get(status, "Error"),
        "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
    }


def _finish_operation(
    operation: dict[str, Any], *, public: bool, has_path_params: bool, from_dependencies: set[int]
) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    wanted: set[int] = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
    wanted |= from_dependencies
    if not public:
        wanted |= {401, 403}
        operation["security"] = [{"bearer": []}]
    if has_path_params:
        wanted.add(404)
    if "requestBody" in operation:
        wanted |= {400, 413, 422}
    if operation.get("parameters"):
        wanted.add(422)
    for status in sorted(wanted):
        description = responses.get(str(status), {}).get("description")
        if status == 422 or description is None or description == "Validation Error":
            description = None
        responses[str(status)] = _problem_response(status, description)
        if status == 503:
            responses[str(status)]["headers"] = {
                "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
            }


def build_document(app: FastAPI, public_paths: Iterable[str]) -> dict[str, Any]:
    public = frozenset(public_paths)
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for generated in ("HTTPValidationError", "ValidationError"):
        schemas.pop(generated, None)
    schemas.update(_problem_schemas())
    document["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API token (`atoll tokens create`)"}
    }
    by_dependency = _errors_by_operation(app.routes)
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            params = operation.get("parameters", [])
            _finish_operation(
                operation,
                public=path in public,
                has_path_params=any(p.get("in") == "path" for p in params),
                from_dependencies=by_dependency.get((path, method), set()),
            )
    return document


def _problem_schemas() -> dict[str, Any]:
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
    definitions = schema.pop("$defs", {})
    return {"Problem": schema, **definitions}


def install(app: FastAPI, public_paths: Iterable[str]) -> None:
    """Replace FastAPI's generator with the finished document (built once, then cached)."""
    paths = tuple(public_paths)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app, paths)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
