"""Sticky assignment (deployer/assignment.py): the split it produces, what moves when weights
change, and that every process and both forms (scalar, numpy) give the same answers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atoll.deployer.assignment import (
    MAX_UNIT_BYTES,
    assign,
    assign_many,
    pick,
    unit_key,
    unit_keys,
)
from atoll.deployer.routing.choice import Route, choose

UNITS_100K = [f"user-{i}" for i in range(100_000)]


def jaccard_p(old: Mapping[str, int], new: Mapping[str, int]) -> float:
    """The probability Jaccard index J_P of two weightings (P-MinHash's collision probability)."""
    total_old, total_new = sum(old.values()), sum(new.values())
    x = {d: old.get(d, 0) / total_old for d in {*old, *new}}
    y = {d: new.get(d, 0) / total_new for d in x}
    index = 0.0
    for d in x:
        if x[d] > 0 and y[d] > 0:
            index += 1 / sum(max(x[j] / x[d], y[j] / y[d]) for j in x)
    return index


def must_move(old: Mapping[str, int], new: Mapping[str, int]) -> float:
    """The share that no scheme can keep in place: the total variation distance."""
    return sum(max(0, new.get(d, 0) - old.get(d, 0)) for d in {*old, *new}) / 100


def moved_share(salt: str, units: list[str], old: Mapping[str, int], new: Mapping[str, int]) -> float:
    before, after = assign_many(salt, units, old), assign_many(salt, units, new)
    return sum(a != b for a, b in zip(before, after, strict=True)) / len(units)


class TestTheSplit:
    @pytest.mark.parametrize(
        "weights",
        [
            {"blue": 50, "green": 50},
            {"stable": 95, "canary": 5},
            {"stable": 99, "canary": 1},
            {"a": 10, "b": 30, "c": 60},
            {"a": 25, "b": 25, "c": 25, "d": 25},
            {"a": 1, "b": 1, "c": 98},
        ],
    )
    def test_100k_units_split_within_three_standard_deviations_of_the_weights(
        self, weights: dict[str, int]
    ) -> None:
        counts = Counter(assign_many("experiment-7", UNITS_100K, weights))
        n = len(UNITS_100K)
        for deployment, weight in weights.items():
            p = weight / 100
            sd = math.sqrt(n * p * (1 - p))
            assert abs(counts[deployment] - n * p) <= 3 * sd, (deployment, counts[deployment], n * p, sd)

    def test_a_deployment_at_zero_gets_no_unit_and_all_zero_gets_none(self) -> None:
        assert set(assign_many("s", UNITS_100K[:5000], {"a": 100, "b": 0})) == {"a"}
        assert assign("s", "user-1", {"a": 0, "b": 0}) is None
        assert assign_many("s", ["user-1"], {}) == [None]

    def test_another_salt_reshuffles_the_units(self) -> None:
        weights = {"a": 50, "b": 50}
        first, second = assign_many("s1", UNITS_100K, weights), assign_many("s2", UNITS_100K, weights)
        same = sum(x == y for x, y in zip(first, second, strict=True)) / len(UNITS_100K)
        assert abs(same - 0.5) < 0.01  # independent: half agree by chance


class TestWhatMoves:
    @settings(max_examples=40, deadline=None)
    @given(st.integers(1, 99), st.integers(1, 99), st.text(min_size=1, max_size=12))
    def test_two_way_only_the_units_that_must_move_move_and_towards_the_grown_one(
        self, before: int, after: int, salt: str
    ) -> None:
        units = UNITS_100K[:20_000]
        old, new = {"stable": 100 - before, "canary": before}, {"stable": 100 - after, "canary": after}
        first, second = assign_many(salt, units, old), assign_many(salt, units, new)
        moves = Counter((a, b) for a, b in zip(first, second, strict=True) if a != b)
        grown = "canary" if after > before else "stable"
        assert set(moves) <= {("stable" if grown == "canary" else "canary", grown)}  # one direction only
        share = sum(moves.values()) / len(units)
        expected = abs(after - before) / 100
        assert abs(share - expected) <= 5 * math.sqrt(expected * (1 - expected) / len(units)) + 1e-9

    @settings(max_examples=30, deadline=None)
    @given(
        st.lists(st.integers(0, 100), min_size=3, max_size=5).filter(lambda w: sum(w) > 0),
        st.lists(st.integers(0, 100), min_size=3, max_size=5).filter(lambda w: sum(w) > 0),
    )
    def test_three_or_more_the_moved_share_is_the_stateless_optimum(
        self, old_raw: list[int], new_raw: list[int]
    ) -> None:
        """1 - J_P: at least what must move (the shares' difference), equal to it when one weight
        changes and the others keep their proportions; no stateless scheme does better."""
        size = min(len(old_raw), len(new_raw))
        old = {f"d{i}": w for i, w in enumerate(old_raw[:size])}
        new = {f"d{i}": w for i, w in enumerate(new_raw[:size])}
        units = UNITS_100K[:20_000]
        theory = 1 - jaccard_p(old, new)
        assert theory >= must_move_normalised(old, new) - 1e-9
        share = moved_share("salt", units, old, new)
        assert abs(share - theory) <= 5 * math.sqrt(max(theory * (1 - theory), 1e-4) / len(units))

    def test_growing_one_of_three_moves_only_its_growth_where_intervals_move_half_as_much_again(
        self,
    ) -> None:
        """The measured reason for rendezvous hashing over cumulative intervals (choice.choose)."""
        old, new = {"a": 10, "b": 45, "c": 45}, {"a": 20, "b": 40, "c": 40}
        assert must_move(old, new) == pytest.approx(0.10)
        rendezvous = moved_share("salt", UNITS_100K, old, new)
        assert rendezvous == pytest.approx(0.10, abs=0.005)

        def interval(weights: Mapping[str, int], unit: str) -> str:
            draw = (unit_key("salt", unit) >> 11) / (1 << 53)
            found = choose([Route(d, w, "http://x", True) for d, w in weights.items()], draw)
            assert found is not None
            return found.deployment

        intervals = sum(interval(old, u) != interval(new, u) for u in UNITS_100K) / len(UNITS_100K)
        assert intervals == pytest.approx(0.15, abs=0.005)

    def test_a_deployment_taken_out_moves_only_its_own_units_to_their_second_choice(self) -> None:
        weights = {"a": 20, "b": 30, "c": 50}
        everyone = assign_many("salt", UNITS_100K, weights)
        without_b = assign_many("salt", UNITS_100K, {"a": 20, "c": 50})
        for before, after in zip(everyone, without_b, strict=True):
            assert before == after or before == "b"


def must_move_normalised(old: Mapping[str, int], new: Mapping[str, int]) -> float:
    total_old, total_new = sum(old.values()), sum(new.values())
    return sum(max(0.0, new[d] / total_new - old[d] / total_old) for d in old)


class TestDeterminism:
    def test_golden_assignments_pin_the_scheme(self) -> None:
        """Changing the hash would reshuffle every live split: these values must never change."""
        weights = {"blue": 50, "green": 50}
        assert [assign("pinned", f"user-{i}", weights) for i in range(8)] == GOLDEN
        assert unit_key("pinned", "user-0") == GOLDEN_KEY

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.text(max_size=40), min_size=1, max_size=20),
        st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 100), min_size=1),
    )
    def test_the_numpy_form_gives_the_scalar_answers(self, units: list[str], weights: dict[str, int]) -> None:
        assert assign_many("salt", units, weights) == [assign("salt", u, weights) for u in units]
        assert unit_keys("salt", units).tolist() == [unit_key("salt", u) for u in units]

    def test_every_process_gives_the_same_answers(self) -> None:
        """Another interpreter with another PYTHONHASHSEED (str hashes differ there)."""
        units = [f"user-{i}" for i in range(200)] + ["ünïcode", ""]
        weights = {"a": 10, "b": 30, "c": 60}
        code = (
            "import json, sys; from atoll.deployer.assignment import assign;"
            "units, weights = json.load(sys.stdin);"
            "print(json.dumps([assign('salt', u, weights) for u in units]))"
        )
        there = subprocess.run(
            [sys.executable, "-c", code],
            input=json.dumps([units, weights]),
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "12345"},
        )
        assert json.loads(there.stdout) == [assign("salt", u, weights) for u in units]

    def test_a_unit_longer_than_the_log_keeps_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at most 512 bytes"):
            unit_key("s", "x" * (MAX_UNIT_BYTES + 1))
        with pytest.raises(ValueError, match="at most 512 bytes"):
            unit_keys("s", ["x" * (MAX_UNIT_BYTES + 1)])

    def test_pick_is_the_scalar_core(self) -> None:
        key = unit_key("salt", "user-1")
        assert pick(key, [("a", 50), ("b", 50)]) == assign("salt", "user-1", {"a": 50, "b": 50})
        assert pick(key, [("a", 0)]) is None


GOLDEN: list[str | None] = ["green", "blue", "green", "green", "blue", "green", "green", "green"]
GOLDEN_KEY = 7092728820980953707
