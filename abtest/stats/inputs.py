"""Turning user input (JSON text, pydantic errors) into requests and one-line messages.

Shared by the API, the CLI and the portal calculator. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from atoll.abtest.stats.schemas import (
    AnalysisRequest,
    ArmData,
    ArmSpec,
    Hypothesis,
    MetricSpec,
    PowerRequest,
)

# Every field name of the request models: a validation message that starts with one of
# these (`control: unknown arm`, `sum_squares=... is impossible`) is about that field.
KNOWN_FIELDS = frozenset(
    name
    for model in (AnalysisRequest, ArmSpec, MetricSpec, ArmData, Hypothesis, PowerRequest)
    for name in model.model_fields
)
_LEADING_FIELD = re.compile(r"^(?P<field>[a-z_]\w*(?:\.[\w-]+)*)(?P<sep>:\s*|=|\s)")


def refine_error(error: Mapping[str, Any], *, prefix: tuple[str | int, ...] = ()) -> dict[str, Any]:
    """One pydantic error with its `loc` pointing at the field its message names.

    Model-level validators report at the model (`loc` empty, or the sub-model) and name
    the field at the start of the message; that name is appended to `loc`, a leading
    "`name:`" is dropped from the message, and so is pydantic's "Value error, " prefix.
    ``prefix`` is the part of `loc` outside the model (FastAPI's ``("body",)``).
    """
    loc = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    match = _LEADING_FIELD.match(message)
    if match and match["field"].split(".")[0] in KNOWN_FIELDS:
        named = tuple(match["field"].split("."))
        inner = loc[len(prefix) :]
        if not inner or inner[-1] != named[0]:
            loc = loc + named
        if match["sep"].startswith(":"):
            message = message[match.end() :]
    return {**error, "loc": loc, "msg": message}


def field_path(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc)


def describe(exc: ValidationError) -> str:
    """A one-line `field: message` for a person, e.g. for the CLI or the portal."""
    errors = [refine_error(e) for e in exc.errors()]
    first = errors[0]
    where = field_path(first["loc"]) or "request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


ModelT = TypeVar("ModelT", bound=BaseModel)


class StatsInputError(ValueError):
    """Input a person must fix; the message is one line that names the field."""


def load_request(text: str | bytes, model: type[ModelT]) -> ModelT:
    """Parse a JSON document into ``model`` (the CLI's FILE, the portal's textarea)."""
    try:
        data = json.loads(text)
    except UnicodeDecodeError as exc:
        raise StatsInputError(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise StatsInputError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise StatsInputError(describe(exc)) from exc
