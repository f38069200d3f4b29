"""Errors as `application/problem+json`: the platform's shape, never a stack trace.

type, title, status, detail, request_id, plus what the error adds (for bad input: `field`
and `expected`, the signature). One `Problem` serves both halves of the server: the bare
ASGI prediction path sends `body()`, the Starlette routes return `response()`.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from atoll.errors import PROBLEM_JSON, problem_body


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

    def body(self) -> bytes:
        content = problem_body(self.status, self.title, self.detail, self.request_id, **self.extra)
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)

    def response(self) -> Response:
        return Response(self.body(), status_code=self.status, media_type=PROBLEM_JSON, headers=self.headers)
