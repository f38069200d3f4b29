"""Schemas shared across domains."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _iso_8601_only(value: object) -> object:
    """Pydantic also reads numbers as Unix times; the API documents ISO 8601 only, so refuse them."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-11-27T10:00:00Z")
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_8601_only)]
