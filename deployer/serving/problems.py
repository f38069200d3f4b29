"""Errors as `application/problem+json`: the platform's shape, never a stack trace.

type, title, status, detail, request_id, plus what the error adds (for bad input: `field`
and `expected`, the signature). One `Problem` serves both halves of the server: the bare
ASGI prediction path sends `body()`, the Starlette routes return `response()`. Both take
the request id by one rule, `atoll.context.request_id_from`: the caller's `X-Request-ID`
when it is sane, else a fresh one, echoed in the body and the `X-Request-ID` header.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Scope

from atoll.context import request_id_from
from atoll.errors import PROBLEM_JSON, problem_body


def scope_request_id(scope: Scope) -> str:
    """The request id of an ASGI request (`request_id_from` its `X-Request-ID` header).

    For the Starlette half; the prediction path reads the header in the one pass it makes
    over the headers, and applies the same rule.
    """
    given = None
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            given = value  # the last one, as the prediction path's header dict keeps it
    return request_id_from(given)


class Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        request_id: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.request_id = request_id
        self.extra = extra
        self.headers = dict(headers or {})
        if request_id:
            self.headers["X-Request-ID"] = request_id

    def answering(self, request_id: str) -> Problem:
        """This problem as the answer to the request `request_id` (body and header)."""
        self.request_id = request_id
        self.headers["X-Request-ID"] = request_id
        return self

    def body(self) -> bytes:
        content = problem_body(self.status, self.title, self.detail, self.request_id, **self.extra)
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)

    def response(self) -> Response:
        return Response(self.body(), status_code=self.status, media_type=PROBLEM_JSON, headers=self.headers)
