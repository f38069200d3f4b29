"""The method catalogue, Evidently's auto choice and the spec's validation (pure)."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from atoll.monitoring.methods import METHODS, auto_method
from atoll.monitoring.schemas import ColumnSpec, DriftSpec


class TestAutoMethod:
    @pytest.mark.parametrize(
        ("kind", "reference_values", "distinct", "expected"),
        [
            ("numeric", 1000, 6, "ks"),
            ("numeric", 1000, 5, "chisquare"),
            ("numeric", 1000, 3, "chisquare"),
            ("numeric", 1000, 2, "z"),
            ("numeric", 1, 1, "z"),
            ("categorical", 1000, 3, "chisquare"),
            ("categorical", 1000, 50, "chisquare"),
            ("categorical", 1000, 2, "z"),
            ("numeric", 1001, 6, "wasserstein"),
            ("numeric", 1001, 5, "jensenshannon"),
            ("numeric", 1001, 2, "jensenshannon"),
            ("categorical", 1001, 2, "jensenshannon"),
            ("categorical", 50_000, 400, "jensenshannon"),
        ],
    )
    def test_follows_evidentlys_default_rules(
        self, kind: str, reference_values: int, distinct: int, expected: str
    ) -> None:
        assert auto_method(kind, reference_values, distinct) == expected  # type: ignore[arg-type]


class TestVerdictRules:
    def test_ks_flags_at_the_threshold_chisquare_and_z_below_it(self) -> None:
        assert METHODS["ks"].is_drift(0.05, 0.05)
        assert not METHODS["chisquare"].is_drift(0.05, 0.05)
        assert not METHODS["z"].is_drift(0.05, 0.05)
        assert METHODS["z"].is_drift(0.0499, 0.05)

    @pytest.mark.parametrize("method", ["wasserstein", "jensenshannon", "psi", "kl_div", "hellinger"])
    def test_distances_flag_at_or_above(self, method: str) -> None:
        info = METHODS[method]  # type: ignore[index]
        assert info.is_drift(0.1, 0.1) and info.is_drift(0.3, 0.1) and not info.is_drift(0.0999, 0.1)

    def test_nan_is_never_drift(self) -> None:
        assert not any(info.is_drift(math.nan, info.default_threshold) for info in METHODS.values())

    def test_defaults_are_evidentlys(self) -> None:
        assert {n: i.default_threshold for n, i in METHODS.items()} == {
            "ks": 0.05, "wasserstein": 0.1, "chisquare": 0.05, "z": 0.05,
            "jensenshannon": 0.1, "psi": 0.1, "kl_div": 0.1, "hellinger": 0.1,
        }  # fmt: skip


class TestSpecValidation:
    @pytest.mark.parametrize(
        ("kind", "method"),
        [("numeric", "chisquare"), ("numeric", "z"), ("categorical", "ks"), ("categorical", "wasserstein")],
    )
    def test_method_must_apply_to_the_kind(self, kind: str, method: str) -> None:
        with pytest.raises(
            ValidationError, match=f"method '{method}' does not apply to {kind} columns; use one of"
        ):
            ColumnSpec(name="x", kind=kind, method=method)

    def test_p_value_threshold_must_be_below_one(self) -> None:
        with pytest.raises(ValidationError, match="must be in \\(0, 1\\)"):
            ColumnSpec(name="x", kind="numeric", method="ks", threshold=1.5)
        with pytest.raises(ValidationError, match="with method 'auto'"):
            ColumnSpec(name="x", kind="numeric", threshold=2.0)
        assert ColumnSpec(name="x", kind="numeric", method="psi", threshold=2.0).threshold == 2.0

    @pytest.mark.parametrize("threshold", [0.0, -0.1, math.inf, math.nan])
    def test_threshold_must_be_a_positive_number(self, threshold: float) -> None:
        with pytest.raises(ValidationError):
            ColumnSpec(name="x", kind="numeric", method="psi", threshold=threshold)

    def test_threshold_for_resolves_auto(self) -> None:
        assert ColumnSpec(name="x", kind="numeric").threshold_for("wasserstein") == 0.1
        assert ColumnSpec(name="x", kind="numeric").threshold_for("ks") == 0.05
        assert ColumnSpec(name="x", kind="numeric", threshold=0.2).threshold_for("ks") == 0.2

    def test_columns_unique_and_present(self) -> None:
        column = ColumnSpec(name="x", kind="numeric")
        with pytest.raises(ValidationError, match="listed more than once: \\['x'\\]"):
            DriftSpec(columns=(column, column))
        with pytest.raises(ValidationError):
            DriftSpec(columns=())

    @pytest.mark.parametrize("share", [0.0, 1.01])
    def test_drift_share_in_range(self, share: float) -> None:
        with pytest.raises(ValidationError):
            DriftSpec(columns=(ColumnSpec(name="x", kind="numeric"),), drift_share=share)

    def test_unknown_method_is_rejected(self) -> None:
        with pytest.raises(ValidationError):
            ColumnSpec(name="x", kind="numeric", method="anderson")
