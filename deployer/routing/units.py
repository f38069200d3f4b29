"""What the router reads from a request besides its path: the unit key and whether a retry is safe.

The unit key makes the choice sticky (deployer/assignment.py). It comes from, in order:

1. the header the endpoint's settings name (`unit_header`, default `X-Atoll-Unit`);
2. a field of the JSON body the settings name (`unit_field`), a dotted path such as
   `customer.id`; for an Open Inference Protocol v2 body (`{"inputs": [...]}`) where the
   path is not a key, the first value of the input tensor of that name (so a caller can
   send the unit as a one-element BYTES or INT64 tensor `user_id`, and a batch's rows
   follow the first row's unit), or the request `parameters` entry of that name.

A number is written as its JSON text, an integral float without its `.0` (FP32/FP64
tensors carry ids as 12345.0), so the header `12345` and the field `12345.0` are one unit.
Without a key the choice is a uniform draw per request. A key over 128 characters is the
caller's mistake (the exposure log keeps 128): the router answers 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

DEFAULT_UNIT_HEADER = "x-atoll-unit"
MAX_UNIT_CHARS = 128

# Methods whose repetition has no further effect (RFC 9110 9.2.2), and the model server's
# prediction paths: a prediction writes nothing a second one would duplicate (the inference
# log may hold both rows, with their request id), so a retry after a connection broke
# mid-request is safe there. Any other POST is not retried once it may have reached a server.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
PREDICTION_PATH = re.compile(
    r"^/(v2/models/[^/]+(/versions/[^/]+)?/infer|invocations|v1/models/[^/]+:predict)$"
)


class UnitTooLong(ValueError):
    pass


def is_idempotent(method: str, path: str) -> bool:
    """`path` is the part after `/endpoints/{name}`, starting with '/'."""
    return method in IDEMPOTENT_METHODS or (method == "POST" and PREDICTION_PATH.match(path) is not None)


def _as_unit(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int | str):
        return str(value)
    return None


def _dotted(body: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(body, Mapping) or part not in body:
            return None
        body = body[part]
    return body


def _first(data: Any) -> Any:
    while isinstance(data, list):
        if not data:
            return None
        data = data[0]
    return data


def _from_oip(body: Mapping[str, Any], field: str) -> Any:
    inputs = body.get("inputs")
    if isinstance(inputs, list):
        for tensor in inputs:
            if isinstance(tensor, Mapping) and tensor.get("name") == field:
                return _first(tensor.get("data"))
    parameters = body.get("parameters")
    return parameters.get(field) if isinstance(parameters, Mapping) else None


def unit_from_body(body: bytes, field: str) -> str | None:
    """The unit named by `field` in a JSON body; None when the body is not JSON or lacks it."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    value = _dotted(parsed, field.split("."))
    if value is None and isinstance(parsed, Mapping):
        value = _from_oip(parsed, field)
    return _as_unit(value)


def unit_of(
    headers: list[tuple[bytes, bytes]], body: bytes, *, header: bytes, field: str | None
) -> str | None:
    """The request's unit key (see the module's docstring); `UnitTooLong` past 128 characters."""
    unit: str | None = None
    for name, value in headers:
        if name.lower() == header:
            unit = value.decode("utf-8", "replace").strip() or None
            break
    if unit is None and field:
        unit = unit_from_body(body, field)
    if unit is not None and len(unit) > MAX_UNIT_CHARS:
        raise UnitTooLong(f"the unit key is {len(unit)} characters; at most {MAX_UNIT_CHARS}")
    return unit
