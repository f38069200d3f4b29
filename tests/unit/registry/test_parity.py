"""Parity math on crafted arrays: what a build compares and how it is judged."""

from __future__ import annotations

import math

import numpy as np
import pytest

from atoll.registry.builds import parity


class TestCompare:
    def test_identical_outputs_have_no_difference_and_full_agreement(self) -> None:
        proba = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
        labels = np.array([1, 0, 0])
        diff = parity.compare(proba, proba.copy(), reference_labels=labels, candidate_labels=labels.copy())
        assert diff == parity.Diff(
            rows=3, max_abs_diff=0.0, mean_abs_diff=0.0, max_scaled_diff=0.0, label_agreement=1.0
        )

    def test_known_differences(self) -> None:
        reference = np.array([[0.1, 0.9], [0.5, 0.5]])
        candidate = np.array([[0.1, 0.9], [0.53, 0.47]])
        diff = parity.compare(reference, candidate)
        assert diff.rows == 2
        assert diff.max_abs_diff == pytest.approx(0.03)
        assert diff.mean_abs_diff == pytest.approx(0.06 / 4)
        assert diff.max_scaled_diff == pytest.approx(0.03)  # |reference| <= 1: the same as absolute
        assert diff.label_agreement is None

    def test_label_agreement_is_the_share_of_equal_labels(self) -> None:
        diff = parity.compare(
            np.zeros(4),
            np.zeros(4),
            reference_labels=np.array([0, 1, 1, 0]),
            candidate_labels=np.array([0, 1, 0, 0]),
        )
        assert diff.label_agreement == 0.75

    def test_labels_of_different_kinds_compare_as_text(self) -> None:
        assert parity.agreement(np.array(["a", "b"]), np.array(["a", "c"])) == 0.5
        assert parity.agreement(np.array([1, 2]), np.array(["1", "2"])) == 1.0
        assert parity.agreement(np.array([1, 2]), np.array([1.0, 2.0])) == 1.0

    def test_large_regression_outputs_are_held_to_relative_difference(self) -> None:
        reference = np.array([1000.0, -2000.0, 0.5])
        candidate = np.array([1000.01, -2000.0, 0.5])
        diff = parity.compare(reference, candidate)
        assert diff.max_abs_diff == pytest.approx(0.01, rel=1e-6)
        assert diff.max_scaled_diff == pytest.approx(1e-5, rel=1e-6)

    def test_column_vector_and_flat_outputs_compare(self) -> None:
        diff = parity.compare(np.array([1.0, 2.0]), np.array([[1.0], [2.5]]))
        assert diff.max_abs_diff == pytest.approx(0.5)

    def test_nan_on_one_side_is_an_infinite_difference(self) -> None:
        diff = parity.compare(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
        assert math.isinf(diff.max_abs_diff)
        assert parity.judge(diff, max_abs_diff=1e9, min_label_agreement=0).passed is False

    def test_nan_on_both_sides_is_no_difference(self) -> None:
        diff = parity.compare(np.array([1.0, np.nan]), np.array([1.0, np.nan]))
        assert diff.max_abs_diff == 0.0

    def test_shape_mismatch_is_refused(self) -> None:
        with pytest.raises(ValueError, match="output shapes differ"):
            parity.compare(np.zeros((3, 2)), np.zeros((3, 3)))
        with pytest.raises(ValueError, match="rows"):
            parity.compare(np.zeros((3, 2)), np.zeros((2, 2)))
        with pytest.raises(ValueError, match="label counts differ"):
            parity.agreement(np.zeros(2), np.zeros(3))

    def test_no_rows(self) -> None:
        diff = parity.compare(np.zeros((0, 2)), np.zeros((0, 2)), reference_labels=np.zeros(0),
                              candidate_labels=np.zeros(0))  # fmt: skip
        assert diff.max_abs_diff == 0.0 and diff.label_agreement == 1.0


def _diff(rows: int, max_abs: float, mean: float, scaled: float, labels: float | None) -> parity.Diff:
    return parity.Diff(
        rows=rows, max_abs_diff=max_abs, mean_abs_diff=mean, max_scaled_diff=scaled, label_agreement=labels
    )


class TestCombineAndJudge:
    def test_combine_takes_maxima_and_row_weighted_means(self) -> None:
        a = parity.Diff(
            rows=2, max_abs_diff=0.1, mean_abs_diff=0.05, max_scaled_diff=0.1, label_agreement=1.0
        )
        b = _diff(8, 0.3, 0.1, 0.2, 0.5)
        both = parity.combine([a, b])
        assert both.rows == 10
        assert both.max_abs_diff == 0.3
        assert both.max_scaled_diff == 0.2
        assert both.mean_abs_diff == pytest.approx(0.2 * 0.05 + 0.8 * 0.1)
        assert both.label_agreement == pytest.approx((2 * 1.0 + 8 * 0.5) / 10)

    def test_combine_without_labels(self) -> None:
        a = _diff(1, 0, 0, 0, None)
        assert parity.combine([a, a]).label_agreement is None
        with pytest.raises(ValueError, match="nothing to combine"):
            parity.combine([])

    def test_within_thresholds_passes(self) -> None:
        diff = parity.Diff(
            rows=5, max_abs_diff=1e-6, mean_abs_diff=1e-7, max_scaled_diff=1e-6, label_agreement=1.0
        )
        assert parity.judge(diff, max_abs_diff=1e-5, min_label_agreement=1.0) == parity.Verdict(True, [])

    def test_each_failed_threshold_gives_its_numbers(self) -> None:
        diff = parity.Diff(
            rows=200, max_abs_diff=0.2, mean_abs_diff=0.01, max_scaled_diff=0.2, label_agreement=0.98
        )
        verdict = parity.judge(diff, max_abs_diff=0.05, min_label_agreement=0.99)
        assert verdict.passed is False
        assert len(verdict.reasons) == 2
        assert "max diff 0.2 exceeds 0.05" in verdict.reasons[0]
        assert "200 rows" in verdict.reasons[0]
        assert "label agreement 98.0000% is below 99.0000%" in verdict.reasons[1]

    def test_threshold_is_inclusive(self) -> None:
        diff = parity.Diff(
            rows=1, max_abs_diff=0.01, mean_abs_diff=0.01, max_scaled_diff=0.01, label_agreement=0.99
        )
        assert parity.judge(diff, max_abs_diff=0.01, min_label_agreement=0.99).passed


class TestSampleAround:
    def test_seeded_and_shaped(self) -> None:
        example = np.array([[1.0, 10.0, 0.2], [3.0, 30.0, 0.8]])
        first = parity.sample_around(example, rows=256)
        assert first.shape == (256, 3)
        np.testing.assert_array_equal(first, parity.sample_around(example, rows=256))
        assert not np.array_equal(first, parity.sample_around(example, rows=256, seed=1))

    def test_centred_on_the_example_with_its_spread(self) -> None:
        example = np.array([[0.0, 100.0], [10.0, 300.0]])
        drawn = parity.sample_around(example, rows=5000, integer_columns=[False, False])
        assert drawn.mean(axis=0) == pytest.approx([5.0, 200.0], rel=0.05)
        assert drawn.std(axis=0) == pytest.approx([5.0, 100.0], rel=0.1)

    def test_one_row_gets_a_spread_of_ten_percent_or_one(self) -> None:
        drawn = parity.sample_around(np.array([50.0, 0.0, -2.5]), rows=5000)
        assert drawn.std(axis=0) == pytest.approx([5.0, 1.0, 0.25], rel=0.1)

    def test_unit_interval_columns_stay_inside(self) -> None:
        drawn = parity.sample_around(np.array([[0.1], [0.9]]), rows=1000)
        assert drawn.min() >= 0.0 and drawn.max() <= 1.0

    def test_integer_columns_are_rounded(self) -> None:
        drawn = parity.sample_around(np.array([[1.0, 2.5], [7.0, 3.5]]), rows=100)
        np.testing.assert_array_equal(drawn[:, 0], np.round(drawn[:, 0]))
        assert not np.array_equal(drawn[:, 1], np.round(drawn[:, 1]))
        forced = parity.sample_around(np.array([[1.5, 2.5]]), rows=10, integer_columns=[True, False])
        np.testing.assert_array_equal(forced[:, 0], np.round(forced[:, 0]))

    def test_non_finite_examples_still_sample(self) -> None:
        drawn = parity.sample_around(np.array([[np.nan, 1.0], [np.nan, 3.0]]), rows=10)
        assert np.isfinite(drawn).all()

    def test_empty_example_is_refused(self) -> None:
        with pytest.raises(ValueError, match="non-empty"):
            parity.sample_around(np.zeros((0, 3)))


def test_median_ms() -> None:
    assert parity.median_ms([0.001, 0.003, 0.002]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no timings"):
        parity.median_ms([])
