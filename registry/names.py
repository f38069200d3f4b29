"""Name rules, checked before any MLflow call so a bad name is a 422, not a 5xx.

They are MLflow's own rules (mlflow.utils.validation) plus two of ours: no quote (names go
into MLflow filter strings) and no control characters or surrounding spaces.
"""

from __future__ import annotations

import posixpath
import re
import string

from atoll.errors import InvalidInput

MAX_NAME = 256
MAX_ALIAS = 255
# The same rules as regular expressions for the OpenAPI document (ECMA-262 and Python alike:
# no look-arounds, ASCII classes), so clients and fuzzers see them; the checks below give
# each broken rule its own message. A model name: no '/', ':', quotes or control characters,
# no surrounding spaces, at most 256 characters ('.' and '..' are refused by the check only).
_NAME_CHAR = "[^/:'\"\\x00-\\x1f\\x7f]"
_NAME_EDGE = "[^\\s/:'\"\\x00-\\x1f\\x7f]"
MODEL_NAME_PATTERN = f"^{_NAME_EDGE}(?:{_NAME_CHAR}{{0,254}}{_NAME_EDGE})?$"
ALIAS_CHARS = r"^[A-Za-z0-9_-]{1,255}$"


def _not_reserved_alias() -> str:
    """ASCII letters, digits, '_' and '-', except MLflow's reserved `latest` (any case) and
    `v<number>`, as one regular expression without look-arounds (the length is checked apart)."""
    w = "[A-Za-z0-9_-]"

    def except_letters(*letters: str) -> str:  # a character of w other than the letters, any case
        banned = {c for letter in letters for c in (letter.lower(), letter.upper())}
        kept = "".join(c for c in string.ascii_letters if c not in banned)
        return f"[{kept}0-9_-]"

    tail = f"{except_letters('t')}{w}*|[tT]{w}+"  # after "lates": anything but a lone "t"
    for letter in reversed("ates"):  # "l" + a, t, e, s: each level may stop or turn away
        tail = f"{except_letters(letter)}{w}*|[{letter}{letter.upper()}](?:{tail})?"
    starts_with_l = f"[lL](?:{tail})?"
    starts_with_v = f"[vV](?:[0-9]*[A-Za-z_-]{w}*)?"
    return f"^(?:{starts_with_l}|{starts_with_v}|{except_letters('l', 'v')}{w}*)$"


ALIAS_PATTERN = _not_reserved_alias()
TAG_KEY_PATTERN = r"^[A-Za-z0-9_./ -]{1,250}$"
_ALIAS = re.compile(ALIAS_CHARS)
_VERSION_LIKE = re.compile(r"^[vV]\d+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TAG_KEY = re.compile(TAG_KEY_PATTERN)


def check_model_name(name: str) -> str:
    if not name or not name.strip():
        raise InvalidInput("model name: must not be empty")
    problems = []
    if name != name.strip():
        problems.append("must not start or end with spaces")
    if any(c in name for c in "/:'\"") or _CONTROL.search(name):
        problems.append("must not contain '/', ':', quotes or control characters")
    if len(name) > MAX_NAME:
        problems.append(f"must be at most {MAX_NAME} characters")
    normalized = posixpath.normpath(name)
    if normalized != name or normalized in {".", ".."} or normalized.startswith(".."):
        problems.append("must not be a relative path like '.' or '..'")
    if problems:
        raise InvalidInput(f"model name {name!r}: {'; '.join(problems)}")
    return name


def check_alias(alias: str) -> str:
    if len(alias) > MAX_ALIAS:
        raise InvalidInput(f"alias {alias!r}: must be at most {MAX_ALIAS} characters")
    if not _ALIAS.match(alias or ""):
        raise InvalidInput(f"alias {alias!r}: use ASCII letters, digits, '_' and '-' only")
    if alias.lower() == "latest" or _VERSION_LIKE.match(alias):
        raise InvalidInput(f"alias {alias!r} is reserved by MLflow ('latest' and v<number>)")
    return alias


def check_version(version: str | int) -> str:
    text = str(version)
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f"version {text!r}: must be a positive whole number")
    return str(int(text))


def check_tag_key(key: str) -> str:
    if not _TAG_KEY.match(key):
        raise InvalidInput(f"tag key {key!r}: 1-250 ASCII letters, digits, '_', '-', '.', '/' or spaces")
    return key
