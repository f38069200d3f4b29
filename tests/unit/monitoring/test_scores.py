"""The fast formulas against the library calls Evidently makes (scipy, numpy), on random data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from atoll.monitoring.scores import (
    histogram_sorted,
    sturges_edges,
    wasserstein_distance_sorted,
    z_p_value,
)
from atoll.monitoring.values import Category, category_counts, distinct_count, numeric_values, runs

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
float_arrays = hnp.arrays(np.float64, st.integers(1, 300), elements=finite)
int_arrays = hnp.arrays(np.int64, st.integers(1, 300), elements=st.integers(-1000, 1000))
# Few distinct values so that ties (the hard case for a merge) are common.
tied_arrays = hnp.arrays(np.float64, st.integers(1, 200), elements=st.sampled_from([-1.5, 0.0, 0.25, 3.0]))


@settings(max_examples=100, deadline=None)
@given(u=st.one_of(float_arrays, tied_arrays), v=st.one_of(float_arrays, tied_arrays))
def test_wasserstein_from_sorted_arrays_is_scipys(u: np.ndarray, v: np.ndarray) -> None:
    ours = wasserstein_distance_sorted(np.sort(u), np.sort(v))
    assert math.isclose(ours, stats.wasserstein_distance(u, v), rel_tol=1e-12, abs_tol=1e-9)


@settings(max_examples=100, deadline=None)
@given(a=st.one_of(float_arrays, int_arrays, tied_arrays))
def test_sturges_edges_are_numpys(a: np.ndarray) -> None:
    expected = np.histogram_bin_edges(a, bins="sturges")
    ours = sturges_edges(float(a.min()), float(a.max()), a.size, a.dtype.kind == "i")
    np.testing.assert_array_equal(ours, expected)


@settings(max_examples=100, deadline=None)
@given(a=st.one_of(float_arrays, int_arrays, tied_arrays), b=st.one_of(float_arrays, tied_arrays))
def test_histogram_of_sorted_values_is_numpys(a: np.ndarray, b: np.ndarray) -> None:
    both = np.concatenate((a, b))
    edges = np.histogram_bin_edges(both, bins="sturges")
    np.testing.assert_array_equal(
        histogram_sorted(np.sort(a.astype(float)), edges), np.histogram(a, edges)[0]
    )


@settings(max_examples=100, deadline=None)
@given(u=st.one_of(float_arrays, tied_arrays), v=st.one_of(float_arrays, tied_arrays))
def test_distinct_count_is_pandas_nunique(u: np.ndarray, v: np.ndarray) -> None:
    ref, cur = numeric_values(pd.Series(u)), numeric_values(pd.Series(v))
    assert distinct_count(ref, cur) == pd.concat([pd.Series(u), pd.Series(v)]).nunique()
    assert runs(ref.sorted_values) == pd.Series(u).value_counts().to_dict()


def test_numeric_values_drop_nulls_and_infinities_like_evidently() -> None:
    series = pd.Series([3.0, np.nan, np.inf, -np.inf, 1.0, 2.0], name="x")
    values = numeric_values(series, with_std=True)
    np.testing.assert_array_equal(values.sorted_values, [1.0, 2.0, 3.0])
    assert (values.nulls, values.integer) == (3, False)
    assert values.std == np.std(series.replace([np.inf, -np.inf], np.nan).dropna())
    assert numeric_values(pd.Series([3, 1, 2])).integer


def test_category_counts_drop_nulls_and_unobserved_levels() -> None:
    series = pd.Series(pd.Categorical(["a", None, "b", "a"], categories=["a", "b", "never"]))
    counted = category_counts(series)
    assert (dict(counted.counts), counted.nulls, counted.count) == ({"a": 2, "b": 1}, 1, 3)
    assert category_counts(pd.Series([1, 2, 2])).counts == {1: 1, 2: 2}


def test_z_test_is_the_pooled_two_proportion_test() -> None:
    ref: dict[Category, int] = {"a": 70, "b": 30}
    cur: dict[Category, int] = {"a": 50, "b": 50}
    pooled = (30 + 50) / 200
    z = (0.3 - 0.5) / math.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 100))
    assert math.isclose(z_p_value(ref, cur), 2 * (1 - stats.norm.cdf(abs(z))), rel_tol=1e-12)
    assert z_p_value({"a": 5}, {"a": 9}) == 1.0
    assert z_p_value({"a": 500}, {"b": 900}) == 0.0  # 2 * (1 - Phi(|z|)) underflows, as in Evidently
