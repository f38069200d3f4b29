"""The fast engine without Evidently: profiles, bad input, verdicts and the BH correction.

Agreement with Evidently itself is in tests/integration/test_drift_engine.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from atoll.monitoring.drift import detect_drift
from atoll.monitoring.errors import DriftInputError
from atoll.monitoring.kinds import infer_columns, infer_kind
from atoll.monitoring.reference import ReferenceProfile, build_profile
from atoll.monitoring.schemas import ColumnDrift, ColumnSpec, DriftSpec
from atoll.monitoring.verdicts import benjamini_hochberg, dataset_verdict, summarize

SPEC = DriftSpec(
    columns=(
        ColumnSpec(name="x", kind="numeric"),
        ColumnSpec(name="n", kind="numeric", method="psi", threshold=0.2),
        ColumnSpec(name="c", kind="categorical"),
        ColumnSpec(name="k", kind="categorical", method="chisquare"),
    )
)


def frames(rows: int, shift: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = rng.normal(shift, 1.0, rows)
    n[::7] = np.nan
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, rows),
            "n": n,
            "c": rng.choice(
                np.array(["a", "b", "c"], dtype=object), rows, p=[0.5, 0.3, 0.2] if shift else None
            ),
            "k": rng.integers(0, 4, rows),
        }
    )


class TestProfile:
    def test_round_trip_gives_the_same_answers(self) -> None:
        reference, current = frames(3000, 0.0, seed=1), frames(2000, 0.5, seed=2)
        profile = build_profile(reference, SPEC)
        restored = ReferenceProfile.from_bytes(profile.to_bytes())
        assert restored.rows == 3000 and restored.frame_columns == ("x", "n", "c", "k")
        assert detect_drift(restored, current, SPEC) == detect_drift(profile, current, SPEC)

    def test_categories_keep_their_types(self) -> None:
        reference = pd.DataFrame({"c": pd.Series(["1", 2, 1.5, False, "1"], dtype=object)})
        spec = DriftSpec(columns=(ColumnSpec(name="c", kind="categorical"),))
        restored = ReferenceProfile.from_bytes(build_profile(reference, spec).to_bytes())
        counts = restored.columns["c"].counts  # type: ignore[union-attr]
        assert sorted(counts.items(), key=repr) == sorted({"1": 2, 2: 1, 1.5: 1, False: 1}.items(), key=repr)
        assert {type(k) for k in counts} == {str, int, float, bool}

    def test_empty_reference_is_refused(self) -> None:
        with pytest.raises(DriftInputError, match="no rows"):
            build_profile(frames(0, 0.0), SPEC)

    def test_unsupported_category_values_are_named(self) -> None:
        reference = pd.DataFrame({"c": pd.Series([b"bytes", b"more"], dtype=object)})
        spec = DriftSpec(columns=(ColumnSpec(name="c", kind="categorical"),))
        with pytest.raises(DriftInputError, match="column 'c' holds a bytes value"):
            build_profile(reference, spec)


class TestBadInput:
    profile = build_profile(frames(500, 0.0), SPEC)

    def test_different_columns_are_listed(self) -> None:
        current = frames(100, 0.0).rename(columns={"x": "x2"})
        with pytest.raises(DriftInputError) as caught:
            detect_drift(self.profile, current, SPEC)
        assert "only in the reference: ['x']" in caught.value.detail
        assert "only in the window: ['x2']" in caught.value.detail
        assert caught.value.status == 422

    def test_profile_of_other_kinds_is_refused(self) -> None:
        spec = SPEC.model_copy(update={"columns": (ColumnSpec(name="k", kind="numeric"), *SPEC.columns[:3])})
        with pytest.raises(DriftInputError, match=r"other kinds or columns for \['k'\]"):
            detect_drift(self.profile, frames(100, 0.0), spec)

    def test_empty_window_is_no_data(self) -> None:
        result = detect_drift(self.profile, frames(0, 0.0), SPEC)
        assert (result.status, result.columns, result.evidently, result.current_rows) == (
            "no_data",
            (),
            None,
            0,
        )

    def test_all_null_window_column_is_reported(self) -> None:
        current = frames(200, 0.0).assign(x=np.nan, c=None)
        result = detect_drift(self.profile, current, SPEC)
        for name in ("x", "c"):
            column = result.column(name)
            assert (column.status, column.drifted, column.method, column.current_nulls) == (
                "all_null",
                None,
                None,
                200,
            )
            assert column.detail == "no non-null value in the window: not tested"
        assert result.evidently is not None and result.evidently.tested_columns == 2

    def test_every_column_null_is_no_data(self) -> None:
        current = frames(50, 0.0).assign(x=np.nan, n=np.nan, c=None, k=None)
        result = detect_drift(self.profile, current, SPEC)
        assert result.status == "no_data" and {c.status for c in result.columns} == {"all_null"}

    def test_constant_window_column_is_tested_and_flagged_constant(self) -> None:
        result = detect_drift(self.profile, frames(200, 0.0).assign(c="a"), SPEC)
        column = result.column("c")
        assert (column.status, column.method, column.drifted) == ("constant", "chisquare", True)
        assert column.detail == "the window holds a single value"

    def test_text_declared_numeric_is_refused(self) -> None:
        current = frames(50, 0.0).assign(x="seven")
        with pytest.raises(DriftInputError, match="column 'x' is declared numeric but holds object values"):
            detect_drift(self.profile, current, SPEC)

    def test_threads_give_the_same_answer(self) -> None:
        current = frames(5000, 0.3, seed=9)
        assert detect_drift(self.profile, current, SPEC, workers=2) == detect_drift(
            self.profile, current, SPEC
        )


def _column(name: str, method: str, score: float, drifted: bool) -> ColumnDrift:
    return ColumnDrift(
        column=name,
        kind="numeric",
        status="tested",
        method=method,
        score_type="distance" if method == "wasserstein" else "p_value",
        threshold=0.05,
        score=score,
        drifted=drifted,
        reference_values=10,
        current_values=10,
        reference_nulls=0,
        current_nulls=0,
    )


class TestVerdicts:
    def test_bh_is_statsmodels_fdr_bh(self) -> None:
        p = list(np.random.default_rng(4).uniform(0, 0.2, 40))
        np.testing.assert_allclose(benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], rtol=1e-12)
        assert benjamini_hochberg([]) == []

    def test_dataset_rule_is_share_at_or_above(self) -> None:
        assert dataset_verdict([True, True, False, False], 0.5).drifted
        assert not dataset_verdict([True, False, False, False, False], 0.25).drifted
        assert dataset_verdict([True, False, False, False], 0.25).share == 0.25

    def test_corrected_verdict_drops_marginal_p_values_and_keeps_distances(self) -> None:
        columns = [
            _column("a", "ks", 0.001, True),
            _column("b", "ks", 0.03, True),
            _column("c", "chisquare", 0.04, True),
            _column("d", "ks", 0.6, False),
            _column("e", "wasserstein", 0.3, True),
            _column("f", "z", float("nan"), False),
        ]
        spec = DriftSpec(
            columns=tuple(ColumnSpec(name=c.column, kind="numeric") for c in columns), drift_share=0.5
        )
        result = summarize(columns, spec, reference_rows=10, current_rows=10)
        corrected = {c.column: c.drifted_corrected for c in result.columns}
        assert corrected == {"a": True, "b": False, "c": False, "d": False, "e": True, "f": False}
        assert result.column("a").adjusted_p_value == pytest.approx(0.001 * 4 / 1)
        assert result.column("e").adjusted_p_value is None and result.column("f").adjusted_p_value is None
        assert result.evidently is not None and result.corrected is not None
        assert (result.evidently.drifted_columns, result.evidently.drifted) == (4, True)
        assert (result.corrected.drifted_columns, result.corrected.drifted) == (2, False)
        assert result.status == "drift"
        by_bh = summarize(
            columns, spec.model_copy(update={"alert_rule": "corrected"}), reference_rows=10, current_rows=10
        )
        assert (by_bh.status, by_bh.alert_rule) == ("ok", "corrected")


class TestKinds:
    def test_evidentlys_inference_rules(self) -> None:
        assert infer_kind(pd.Series([1.0, 2.0])) == "numeric"
        assert infer_kind(pd.Series(range(10))) == "categorical"
        assert infer_kind(pd.Series(range(11))) == "numeric"
        assert infer_kind(pd.Series(["a", "b", "a", "b"])) == "categorical"
        assert infer_kind(pd.Series(["a", "b", "c", "b"])) is None  # more distinct than half: text
        assert infer_kind(pd.Series([True, False])) == "categorical"
        assert infer_kind(pd.Series(pd.to_datetime(["2026-01-01"]))) is None

    def test_infer_columns_names_the_ones_to_state(self) -> None:
        frame = pd.DataFrame({"x": [1.0, 2.0], "t": ["free", "text"], "c": ["a", "a"]})
        with pytest.raises(DriftInputError, match=r"\['t \(object\)'\]; state their kind"):
            infer_columns(frame)
        assert [(c.name, c.kind, c.method) for c in infer_columns(frame[["x", "c"]])] == [
            ("x", "numeric", "auto"),
            ("c", "categorical", "auto"),
        ]
