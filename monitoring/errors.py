"""Errors of the drift checks: bad input (the user's to fix) and Evidently failing."""

from __future__ import annotations

from collections.abc import Iterable

from atoll.errors import InvalidInput


class DriftInputError(InvalidInput):
    """Reference, window or spec that cannot be checked; the message says what to change."""


class EvidentlyError(RuntimeError):
    """Evidently raised while running or saving a report; carries its message."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def check_same_columns(reference: Iterable[str], current: Iterable[str], expected: Iterable[str]) -> None:
    """Raise unless reference and window both hold exactly the spec's columns, naming the others."""
    ref, cur, want = set(reference), set(current), set(expected)
    problems = []
    if ref != cur:
        only_ref, only_cur = sorted(ref - cur), sorted(cur - ref)
        problems.append(
            "reference and window have different columns"
            + (f"; only in the reference: {only_ref}" if only_ref else "")
            + (f"; only in the window: {only_cur}" if only_cur else "")
        )
    missing = sorted(want - (ref & cur))
    if missing:
        problems.append(f"columns of the spec missing from the data: {missing}")
    if problems:
        raise DriftInputError("; ".join(problems))
