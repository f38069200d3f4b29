from __future__ import annotations

import pytest

from atoll.errors import InvalidInput
from atoll.registry import names


@pytest.mark.parametrize("good", ["ranker", "Ranker_v2", "team.model-1", "a b"])
def test_model_names_mlflow_accepts(good: str) -> None:
    assert names.check_model_name(good) == good


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", "empty"),
        ("a/b", "'/'"),
        ("a:b", "':'"),
        ("it's", "quotes"),
        ("..", "relative path"),
        ("./x", "relative path"),
        (" x", "spaces"),
        ("x\n", "control"),
        ("x" * 257, "at most"),
    ],
)
def test_model_names_mlflow_rejects(bad: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        names.check_model_name(bad)


@pytest.mark.parametrize(
    ("bad", "why"), [("latest", "reserved"), ("V3", "reserved"), ("a.b", "letters"), ("", "letters")]
)
def test_aliases(bad: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        names.check_alias(bad)
    assert names.check_alias("production") == "production"


def test_versions() -> None:
    assert names.check_version("07") == "7"
    for bad in ("0", "-1", "one"):
        with pytest.raises(InvalidInput):
            names.check_version(bad)
