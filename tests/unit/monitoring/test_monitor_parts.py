"""The pure parts of monitors: alert signing, windows as DataFrames, schedule alignment,
histograms and the portal's drift chart geometry."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from atoll.monitoring import alerts
from atoll.monitoring.histograms import histogram
from atoll.monitoring.models import Monitor
from atoll.monitoring.runs import aligned_window_end
from atoll.monitoring.values import category_counts, numeric_values
from atoll.monitoring.windows import Window, frame_of, group_key
from atoll.web.portal.drift_charts import TimelinePoint, histogram_bars, timeline

SECRET = "0123456789abcdef-secret"
BODY = b'{"text":"drift"}'


class TestSignature:
    def test_signs_timestamp_dot_body_with_hmac_sha256_hex(self) -> None:
        header = alerts.sign(SECRET, 1_767_225_600, BODY)
        expected = hmac.new(SECRET.encode(), b"1767225600." + BODY, hashlib.sha256).hexdigest()
        assert header == f"t=1767225600,v1={expected}"

    def test_verify_accepts_a_fresh_genuine_delivery(self) -> None:
        header = alerts.sign(SECRET, 1000, BODY)
        assert alerts.verify(SECRET, header=header, body=BODY, now=1100) is None

    @pytest.mark.parametrize(
        ("header", "body", "now", "reason"),
        [
            ("t=1000,v1=00", BODY, 1000, "does not match"),
            (None, b'{"text":"other"}', 1000, "does not match"),
            (None, BODY, 1000 + 301, "older than 5 minutes"),
            ("v1=abc", BODY, 1000, "must be t="),
            ("t=soon,v1=abc", BODY, 1000, "not a number"),
        ],
    )
    def test_verify_refuses(self, header: str | None, body: bytes, now: float, reason: str) -> None:
        sent = header or alerts.sign(SECRET, 1000, BODY)
        refused = alerts.verify(SECRET, header=sent, body=body, now=now)
        assert refused is not None and reason in refused

    def test_a_different_secret_does_not_verify(self) -> None:
        header = alerts.sign(SECRET, 1000, BODY)
        assert alerts.verify("another-secret-value", header=header, body=BODY, now=1000) is not None


class TestWindow:
    def test_nested_values_are_dropped_and_missing_keys_are_nulls(self) -> None:
        frame = frame_of([{"a": 1.0, "p": [0.1, 0.9], "c": "x"}, {"a": None, "p": [0.5, 0.5]}])
        assert list(frame.columns) == ["a", "c"]
        assert frame["a"].isna().tolist() == [False, True] and frame["c"].isna().tolist() == [False, True]

    def test_groups_split_rows_by_the_named_columns_and_carry_versions(self) -> None:
        features = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})
        served = pd.DataFrame(
            {
                "deployment": ["a", "b", "a", None],
                "backend": ["cpu", "gpu", "cpu", "cpu"],
                "arm": ["a", "b", "a", None],
                "model_name": ["m", "m", "m", "m"],
                "model_version": ["1", "2", "1", "x"],
            }
        )
        window = Window(features, served, truncated=False)
        groups = {group_key(g): part for g, part in window.groups(["deployment", "backend"])}
        assert set(groups) == {
            "deployment=a,backend=cpu",
            "deployment=b,backend=gpu",
            "deployment=-,backend=cpu",
        }
        assert groups["deployment=a,backend=cpu"].features["x"].tolist() == [1.0, 3.0]
        assert window.model_versions() == [("m", 1), ("m", 2)]  # "x" is not a version number
        assert list(window.groups([])) == []


def test_window_end_is_aligned_to_the_schedule() -> None:
    monitor = Monitor(schedule_seconds=600, window_seconds=3600)
    at = datetime(2026, 12, 1, 10, 17, 42, tzinfo=UTC)
    assert aligned_window_end(monitor, at) == datetime(2026, 12, 1, 10, 10, tzinfo=UTC)
    assert aligned_window_end(monitor, at + timedelta(minutes=2)) == aligned_window_end(monitor, at)


class TestHistograms:
    def test_numeric_shares_over_the_reference_range_clip_the_window(self) -> None:
        reference = numeric_values(pd.Series(np.linspace(0, 10, 101)))
        found = histogram(reference, pd.Series([-5.0, 9.5, 50.0, None]))
        assert found is not None and len(found["labels"]) == 10
        assert sum(found["reference"]) == pytest.approx(1.0, abs=1e-3)
        assert found["current"][0] == pytest.approx(1 / 3, abs=1e-3)
        assert found["current"][-1] == pytest.approx(2 / 3, abs=1e-3)

    def test_categorical_top_values_and_other(self) -> None:
        reference = category_counts(pd.Series(list("aaabbc") + [str(i) for i in range(10)]))
        found = histogram(reference, pd.Series(["a", "z", "z"]))
        assert found is not None and found["labels"][0] == "a" and found["labels"][-1] == "other"
        assert found["current"][0] == pytest.approx(1 / 3, abs=1e-3) and found["current"][
            -1
        ] == pytest.approx(2 / 3, abs=1e-3)

    def test_an_empty_reference_has_no_histogram(self) -> None:
        assert histogram(numeric_values(pd.Series([None], dtype=float)), pd.Series([1.0])) is None


class TestCharts:
    def test_timeline_places_oldest_left_and_skips_windows_without_a_verdict(self) -> None:
        start = datetime(2026, 12, 1, tzinfo=UTC)
        points = [
            TimelinePoint(start + timedelta(hours=2), 0.8, "succeeded", "drift", 3),
            TimelinePoint(start, 0.0, "succeeded", "ok", 1),
            TimelinePoint(start + timedelta(hours=1), None, "no_data", None, 2),
        ]
        chart = timeline(points, threshold=0.5)
        xs = [p.x for p in chart.points]
        assert xs == sorted(xs) and [p.run_id for p in chart.points] == [1, 2, 3]
        assert chart.points[0].y == chart.bottom and chart.points[1].y is None
        assert chart.points[2].tone == "drift" and chart.line.count(",") == 2
        assert chart.top < chart.threshold_y < chart.bottom

    def test_bars_share_one_scale(self) -> None:
        bars = histogram_bars(
            {"labels": ["a", "b"], "reference": [0.5, 0.5], "current": [1.0, 0.0]}, height=40
        )
        assert [b.current_height for b in bars] == [40.0, 0.0] and bars[0].reference_height == 20.0
        assert histogram_bars(None) == []
