"""Real Evidently on generated data with known injected drift, and the fast engine beside it.

Each module fixture runs Evidently's ``DataDriftPreset`` once (Evidently takes seconds to
import and to run), and the tests read its per-column answers: the injected columns are
flagged and the others are not, at the thresholds the spec states; and the platform's fast
engine gives, per column, the same method, the same verdict and the same score (to 1e-9).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from atoll.monitoring.drift import detect_drift
from atoll.monitoring.errors import DriftInputError, EvidentlyError
from atoll.monitoring.evidently_adapter import EvidentlyReport, run_evidently
from atoll.monitoring.kinds import infer_kind
from atoll.monitoring.methods import METHODS, ColumnKind, MethodChoice, MethodName
from atoll.monitoring.reference import build_profile
from atoll.monitoring.schemas import ColumnSpec, DriftResult, DriftSpec

Source = Callable[[np.random.Generator, int, bool], np.ndarray]


def _with_nulls(rng: np.random.Generator, values: np.ndarray, share: float = 0.05) -> np.ndarray:
    out = values.astype(object) if values.dtype.kind in "OU" else values.astype(float)
    out[rng.random(values.size) < share] = None if out.dtype == object else np.nan
    return out


#: name -> (kind, generator(rng, n, drifted)); "_shift" sources are drifted in the window.
SOURCES: dict[str, tuple[ColumnKind, Source]] = {
    "num": ("numeric", lambda rng, n, d: _with_nulls(rng, rng.normal(0.8 if d else 0.0, 1.0, n))),
    "int": ("numeric", lambda rng, n, d: rng.integers(15 if d else 0, 75 if d else 60, n)),
    "few": (
        "numeric",
        lambda rng, n, d: rng.choice([0.0, 1.0, 2.0, 3.0], n, p=[0.4, 0.3, 0.2, 0.1] if d else None),
    ),
    "bin": ("numeric", lambda rng, n, d: (rng.random(n) < (0.5 if d else 0.3)).astype(float)),
    "cat": (
        "categorical",
        lambda rng, n, d: _with_nulls(
            rng,
            rng.choice(
                np.array(["a", "b", "c", "d"], dtype=object),
                n,
                p=[0.2, 0.3, 0.2, 0.3] if d else [0.4, 0.3, 0.2, 0.1],
            ),
        ),
    ),
    "flag": (
        "categorical",
        lambda rng, n, d: rng.choice(
            np.array(["no", "yes"], dtype=object), n, p=[0.5, 0.5] if d else [0.7, 0.3]
        ),
    ),
    "level": (
        "categorical",
        lambda rng, n, d: rng.choice([1, 2, 3, 4, 5], n, p=[0.1, 0.1, 0.2, 0.3, 0.3] if d else None),
    ),
}


def make_frames(
    columns: dict[str, str], reference_rows: int, current_rows: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Frames whose ``columns`` (name -> source) are drawn fresh; ``*_shift`` columns drift."""
    rng = np.random.default_rng(seed)
    reference = {name: SOURCES[source][1](rng, reference_rows, False) for name, source in columns.items()}
    current = {
        name: SOURCES[source][1](rng, current_rows, name.endswith("_shift"))
        for name, source in columns.items()
    }
    return pd.DataFrame(reference), pd.DataFrame(current)


def auto_columns(threshold: float | None = None) -> tuple[dict[str, str], DriftSpec]:
    columns = {f"{source}_{state}": source for source in SOURCES for state in ("same", "shift")}
    spec = DriftSpec(
        columns=tuple(
            ColumnSpec(name=name, kind=SOURCES[source][0], threshold=threshold)
            for name, source in columns.items()
        )
    )
    return columns, spec


def drifted(result: DriftResult) -> set[str]:
    return {c.column for c in result.columns if c.drifted}


def injected(spec: DriftSpec) -> set[str]:
    return {c.name for c in spec.columns if c.name.endswith("_shift")}


def assert_agree(fast: DriftResult, evidently: DriftResult) -> None:
    assert [c.column for c in fast.columns] == [c.column for c in evidently.columns]
    for ours, theirs in zip(fast.columns, evidently.columns, strict=True):
        where = f"column {ours.column}"
        assert (ours.status, ours.method, ours.threshold, ours.drifted) == (
            theirs.status,
            theirs.method,
            theirs.threshold,
            theirs.drifted,
        ), where
        assert (ours.reference_values, ours.current_values, ours.reference_nulls, ours.current_nulls) == (
            theirs.reference_values,
            theirs.current_values,
            theirs.reference_nulls,
            theirs.current_nulls,
        ), where
        if ours.score is None or theirs.score is None:
            assert ours.score is theirs.score, where
        else:
            assert math.isclose(ours.score, theirs.score, rel_tol=1e-9, abs_tol=1e-12), (
                where,
                ours.score,
                theirs.score,
            )
    assert fast.evidently == evidently.evidently
    assert fast.corrected == evidently.corrected
    assert fast.status == evidently.status


def run_both(
    reference: pd.DataFrame, current: pd.DataFrame, spec: DriftSpec, html_path: Path | None = None
) -> tuple[DriftResult, EvidentlyReport]:
    fast = detect_drift(build_profile(reference, spec), current, spec)
    return fast, run_evidently(reference, current, spec, html_path=html_path)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def small_reference(report_dir: Path) -> tuple[DriftSpec, DriftResult, EvidentlyReport]:
    """1,000-row reference (Evidently's p-value tests), a 300-row window, threshold 0.001.

    Evidently's chi-square compares the window with the reference *proportions* as if they
    were exact, so with a window as large as the reference an undrifted 5-level column
    passes p < 0.01 in 15% of simulated windows; a 300-row window and a stated 0.001 bring
    that to about 1% per column, while the injected shifts stay far below the threshold.
    """
    columns, spec = auto_columns(threshold=0.001)
    reference, current = make_frames(columns, 1000, 300, seed=7)
    fast, report = run_both(reference, current, spec, html_path=report_dir / "small.html")
    return spec, fast, report


@pytest.fixture(scope="module")
def large_reference() -> tuple[DriftSpec, DriftResult, EvidentlyReport]:
    """5,000-row reference (distances), default thresholds, a 20,000-row window."""
    columns, spec = auto_columns()
    reference, current = make_frames(columns, 5000, 20_000, seed=11)
    fast, report = run_both(reference, current, spec)
    return spec, fast, report


class TestAutoMethods:
    def test_small_reference_uses_evidently_p_value_tests(
        self, small_reference: tuple[DriftSpec, DriftResult, EvidentlyReport]
    ) -> None:
        _, _, report = small_reference
        methods = {c.column: c.method for c in report.result.columns}
        assert {methods[f"{s}_same"] for s in ("num", "int")} == {"ks"}
        assert methods["few_same"] == "chisquare" and methods["cat_same"] == "chisquare"
        assert methods["bin_same"] == "z" and methods["flag_same"] == "z"
        assert {c.threshold for c in report.result.columns} == {0.001}

    def test_small_reference_flags_exactly_the_injected_columns(
        self, small_reference: tuple[DriftSpec, DriftResult, EvidentlyReport]
    ) -> None:
        spec, fast, report = small_reference
        assert drifted(report.result) == injected(spec)
        assert drifted(fast) == injected(spec)

    def test_large_reference_uses_evidently_distances(
        self, large_reference: tuple[DriftSpec, DriftResult, EvidentlyReport]
    ) -> None:
        _, _, report = large_reference
        methods = {c.column: c.method for c in report.result.columns}
        assert methods["num_same"] == "wasserstein" and methods["int_same"] == "wasserstein"
        assert {methods[f"{s}_same"] for s in ("few", "bin", "cat", "flag", "level")} == {"jensenshannon"}

    def test_large_reference_flags_exactly_the_injected_columns(
        self, large_reference: tuple[DriftSpec, DriftResult, EvidentlyReport]
    ) -> None:
        spec, fast, report = large_reference
        assert drifted(report.result) == injected(spec)
        assert drifted(fast) == injected(spec)

    @pytest.mark.parametrize("case", ["small_reference", "large_reference"])
    def test_fast_engine_agrees_with_evidently(self, case: str, request: pytest.FixtureRequest) -> None:
        _, fast, report = request.getfixturevalue(case)
        assert_agree(fast, report.result)

    @pytest.mark.parametrize("case", ["small_reference", "large_reference"])
    def test_dataset_verdict_is_evidentlys(self, case: str, request: pytest.FixtureRequest) -> None:
        spec, _, report = request.getfixturevalue(case)
        assert report.result.evidently is not None
        assert report.drifted_share == pytest.approx(report.result.evidently.share)
        assert report.dataset_drift == report.result.evidently.drifted
        assert report.result.evidently.share == pytest.approx(7 / 14)  # one drifted of each pair
        assert report.dataset_drift is (spec.drift_share <= 7 / 14)


#: Each method on the sources it applies to, at a stated threshold (not always the default).
METHOD_SOURCES: dict[MethodName, tuple[tuple[str, ...], float]] = {
    "ks": (("num", "int", "few"), 0.01),
    "wasserstein": (("num", "int", "few"), 0.1),
    "chisquare": (("cat", "flag", "level"), 0.01),
    "z": (("flag", "cat"), 0.01),
    "jensenshannon": (("num", "int", "few", "cat"), 0.1),
    "psi": (("num", "int", "few", "cat"), 0.2),
    "kl_div": (("num", "int", "few", "cat"), 0.1),
    "hellinger": (("num", "int", "few", "cat"), 0.12),
}


@pytest.fixture(scope="module")
def per_method() -> tuple[DriftSpec, DriftResult, EvidentlyReport]:
    columns: dict[str, str] = {}
    specs = []
    for method, (sources, threshold) in METHOD_SOURCES.items():
        for source in sources:
            for state in ("same", "shift"):
                name = f"{method}__{source}_{state}"
                columns[name] = source
                chosen: MethodChoice = method
                specs.append(
                    ColumnSpec(name=name, kind=SOURCES[source][0], method=chosen, threshold=threshold)
                )
    spec = DriftSpec(columns=tuple(specs))
    reference, current = make_frames(columns, 3000, 1000, seed=3)
    fast, report = run_both(reference, current, spec)
    return spec, fast, report


class TestEachMethod:
    @pytest.mark.parametrize("method", list(METHOD_SOURCES))
    def test_flags_the_injected_columns_at_the_stated_threshold(
        self, method: MethodName, per_method: tuple[DriftSpec, DriftResult, EvidentlyReport]
    ) -> None:
        _, fast, report = per_method
        mine = [c for c in report.result.columns if c.column.startswith(f"{method}__")]
        assert {c.method for c in mine} == {method}
        assert {c.threshold for c in mine} == {METHOD_SOURCES[method][1]}
        assert {c.column for c in mine if c.drifted} == {
            c.column for c in mine if c.column.endswith("_shift")
        }
        assert {c.column for c in fast.columns if c.drifted and c.column.startswith(f"{method}__")} == {
            c.column for c in mine if c.drifted
        }

    def test_fast_engine_agrees_with_evidently(
        self, per_method: tuple[DriftSpec, DriftResult, EvidentlyReport]
    ) -> None:
        _, fast, report = per_method
        assert_agree(fast, report.result)

    def test_benjamini_hochberg_only_over_p_value_columns(
        self, per_method: tuple[DriftSpec, DriftResult, EvidentlyReport]
    ) -> None:
        _, fast, _ = per_method
        for column in fast.columns:
            assert column.method is not None
            if METHODS[column.method].score_type == "p_value":
                assert column.adjusted_p_value is not None and column.score is not None
                assert column.adjusted_p_value >= column.score
            else:
                assert column.adjusted_p_value is None
                assert column.drifted_corrected == column.drifted


class TestBadInput:
    @pytest.fixture(scope="class")
    def degenerate(self) -> tuple[DriftResult, EvidentlyReport]:
        rng = np.random.default_rng(5)
        n = 600
        frame = {
            "x": rng.normal(size=n),
            "gone": np.full(n, np.nan),
            "flat": np.full(n, 4.0),
            "label": rng.choice(np.array(["a", "b", "c"], dtype=object), n),
        }
        reference = pd.DataFrame(frame)
        current = reference.assign(x=rng.normal(1.0, 1.0, n), gone=rng.normal(size=n))
        current.loc[: n // 2, "label"] = None
        spec = DriftSpec(
            columns=(
                ColumnSpec(name="x", kind="numeric"),
                ColumnSpec(name="gone", kind="numeric", method="wasserstein"),
                ColumnSpec(name="flat", kind="numeric"),
                ColumnSpec(name="label", kind="categorical"),
            )
        )
        return run_both(reference, current, spec)

    def test_all_null_and_constant_columns_are_reported_not_crashed(
        self, degenerate: tuple[DriftResult, EvidentlyReport]
    ) -> None:
        fast, report = degenerate
        for result in (fast, report.result):
            gone, flat = result.column("gone"), result.column("flat")
            assert (gone.status, gone.drifted, gone.score, gone.method) == (
                "all_null",
                None,
                None,
                "wasserstein",
            )
            assert gone.detail is not None and "reference" in gone.detail
            assert flat.status == "constant" and flat.drifted is False and flat.score == 1.0
            assert result.evidently is not None and result.evidently.tested_columns == 3
        assert_agree(fast, report.result)

    def test_empty_window_is_no_data(self, tmp_path: Path) -> None:
        columns, spec = auto_columns()
        reference, current = make_frames(columns, 100, 0, seed=1)
        fast = detect_drift(build_profile(reference, spec), current, spec)
        report = run_evidently(reference, current, spec, html_path=tmp_path / "r.html")
        for result in (fast, report.result):
            assert (result.status, result.evidently, result.corrected, result.columns) == (
                "no_data",
                None,
                None,
                (),
            )
        assert report.html_path is None and not (tmp_path / "r.html").exists()

    def test_different_columns_are_listed(self) -> None:
        columns, spec = auto_columns()
        reference, current = make_frames(columns, 100, 100, seed=1)
        current = current.drop(columns=["num_same"]).assign(extra=1.0)
        with pytest.raises(
            DriftInputError, match=r"only in the reference: \['num_same'\].*only in the window: \['extra'\]"
        ):
            run_evidently(reference, current, spec)
        with pytest.raises(DriftInputError, match=r"only in the reference: \['num_same'\]"):
            detect_drift(build_profile(reference, spec), current, spec)

    def test_evidently_failure_raises_with_its_message(self) -> None:
        mixed = pd.DataFrame({"m": pd.Series(["a", 1] * 200, dtype=object)})
        spec = DriftSpec(columns=(ColumnSpec(name="m", kind="categorical"),))
        with pytest.raises(EvidentlyError, match="TypeError: '<' not supported"):
            run_evidently(mixed, mixed, spec)
        with pytest.raises(DriftInputError, match="cannot be compared"):
            detect_drift(build_profile(mixed, spec), mixed, spec)


def test_html_report_is_self_contained(
    small_reference: tuple[DriftSpec, DriftResult, EvidentlyReport], report_dir: Path
) -> None:
    _, _, report = small_reference
    assert report.html_path == report_dir / "small.html"
    html = report.html_path.read_text()
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:2000]
    assert len(html) > 100_000 and "num_shift" in html
    assert '<script src="http' not in html


def test_kind_inference_matches_evidently() -> None:
    from evidently.core.datasets import infer_column_type
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "f": rng.normal(size=n),
            "i_few": rng.integers(0, 10, n),
            "i_many": rng.integers(0, 500, n),
            "s_cat": rng.choice(np.array(["a", "b"], dtype=object), n),
            "s_text": np.array([f"free text {i}" for i in range(n)], dtype=object),
            "string": pd.Series(rng.choice(["u", "v"], n), dtype="string"),
            "b": rng.random(n) < 0.5,
            "c": pd.Series(rng.choice(["x", "y"], n), dtype="category"),
            "t": pd.date_range("2026-01-01", periods=n, freq="h"),
            "nulls": pd.Series([None] * n, dtype=object),
        }
    )
    expected = {ColumnType.Numerical: "numeric", ColumnType.Categorical: "categorical"}
    for name in frame.columns:
        assert infer_kind(frame[name]) == expected.get(infer_column_type(frame[name])), name


def test_report_on_a_sample_of_the_window_keeps_the_whole_reference(tmp_path: Path) -> None:
    columns = {"num_same": "num", "cat_shift": "cat"}
    spec = DriftSpec(
        columns=(
            ColumnSpec(name="num_same", kind="numeric"),
            ColumnSpec(name="cat_shift", kind="categorical"),
        )
    )
    reference, current = make_frames(columns, 1500, 4000, seed=2)
    report = run_evidently(reference, current, spec, html_path=tmp_path / "s.html", sample_rows=800, seed=1)
    assert (report.result.reference_rows, report.result.current_rows) == (1500, 800)
    assert {c.method for c in report.result.columns} == {"wasserstein", "jensenshannon"}  # reference > 1000
    sampled = current.sample(n=800, random_state=1)
    assert_agree(detect_drift(build_profile(reference, spec), sampled, spec), report.result)
    assert report.html_path is not None and report.html_path.stat().st_size > 100_000
