"""The OpenAPI document's patterns say exactly what the registry's checks accept.

fullmatch: JSON Schema patterns are ECMA-262, whose `$` does not match before a final newline.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from atoll.errors import InvalidInput
from atoll.registry import names

ALIAS = re.compile(names.ALIAS_PATTERN)
MODEL = re.compile(names.MODEL_NAME_PATTERN)


def _accepted(check: object, value: str) -> bool:
    try:
        check(value)  # type: ignore[operator]
    except InvalidInput:
        return False
    return True


NEAR_RESERVED = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(["", "l", "La", "lat", "LATE", "lates", "latest", "Latest", "v", "V", "v1"]),
    st.text(alphabet="atesvlLATES0123456789x_-", max_size=4),
)


@settings(max_examples=400, derandomize=True)
@given(st.one_of(NEAR_RESERVED, st.text(max_size=12)))
def test_alias_pattern_accepts_exactly_what_check_alias_accepts(alias: str) -> None:
    # Reserved names (latest in any case, v<number>) are refused by both; so is anything non-ASCII.
    assert bool(ALIAS.fullmatch(alias)) == _accepted(names.check_alias, alias)


@settings(max_examples=400, derandomize=True)
@given(st.text(max_size=20))
def test_model_name_pattern_accepts_what_check_model_name_accepts(name: str) -> None:
    # The only names the pattern lets through and the check refuses are '.' and '..'.
    if name in {".", ".."}:
        assert not _accepted(names.check_model_name, name)
        return
    assert bool(MODEL.fullmatch(name)) == _accepted(names.check_model_name, name)
