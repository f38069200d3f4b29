"""`atoll ab`: computed locally (no server), the same numbers as the engine, exit 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from atoll.abtest.stats import AnalysisRequest, PowerRequest, analyze, power
from atoll.cli import app

from .test_stats_api import broken, negative_baseline, three_arm, two_arm

WIDE = {"COLUMNS": "200"}  # Rich wraps to the terminal; keep table cells on one line


def atoll(*args: str, input: str | None = None) -> Result:
    return CliRunner(env=WIDE).invoke(app, list(args), input=input)


def write(tmp_path: Path, body: Any, name: str = "analysis.json") -> str:
    path = tmp_path / name
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return str(path)


def engine_json(body: dict[str, Any]) -> Any:
    return analyze(AnalysisRequest.model_validate(body)).model_dump(mode="json")


class TestAnalyze:
    @pytest.mark.parametrize("make", [two_arm, three_arm])
    def test_json_matches_the_engine(self, tmp_path: Path, make: Any) -> None:
        body = make()
        result = atoll("ab", "analyze", write(tmp_path, body), "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == engine_json(body)

    def test_stdin(self) -> None:
        result = atoll("ab", "analyze", "-", "--json", input=json.dumps(two_arm()))
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == engine_json(two_arm())

    def test_human_output(self, tmp_path: Path) -> None:
        body = three_arm()
        result = atoll("ab", "analyze", write(tmp_path, body))
        assert result.exit_code == 0, result.output
        expected = engine_json(body)
        out = result.stdout
        assert "SRM: ok" in out
        for metric in ("conversion", "revenue"):
            assert metric in out
        labels = {"ship": "ship", "dont_ship": "don't ship", "keep_running": "keep running"}
        for metric in expected["metrics"]:
            for c in metric["comparisons"]:
                assert labels[c["verdict"]] in out
        for d in expected["decisions"]:
            assert f"decision {d['arm']} vs control: {labels[d['verdict']]}" in out
        b = expected["metrics"][0]["comparisons"][0]
        assert f"{b['relative_lift'] * 100:+.2f}%" in out

    @pytest.mark.parametrize("method", ["fixed", "sequential", "bayesian"])
    def test_a_negative_control_mean_reads_up(self, tmp_path: Path, method: str) -> None:
        body = negative_baseline(method)
        result = atoll("ab", "analyze", write(tmp_path, body))
        assert result.exit_code == 0, result.output
        expected = engine_json(body)["metrics"][0]["comparisons"][0]
        assert expected["relative_lift"] > 0
        assert f"{expected['relative_lift'] * 100:+.2f}%" in result.stdout  # +23.08%
        assert f"{expected['relative_ci']['lower'] * 100:+.2f}%" in result.stdout
        assert "decision candidate vs control: ship" in result.stdout
        assert "control mean is negative" in result.stdout

    def test_bayesian_shows_chance_to_beat_control(self, tmp_path: Path) -> None:
        result = atoll("ab", "analyze", write(tmp_path, {**two_arm(), "method": "bayesian"}))
        assert result.exit_code == 0, result.output
        assert "chance to beat control" in result.stdout

    def test_srm_is_shown_and_still_exit_0(self, tmp_path: Path) -> None:
        body = two_arm()
        body["arms"] = [
            {"name": "control", "weight": 0.5, "units": 10000},
            {"name": "candidate", "weight": 0.5, "units": 12000},
        ]
        result = atoll("ab", "analyze", write(tmp_path, body))
        assert result.exit_code == 0, result.output  # a readout, not a gate
        assert "sample ratio mismatch" in result.stdout
        assert "invalid" in result.stdout


class TestInvalidInput:
    def test_missing_file(self, tmp_path: Path) -> None:
        result = atoll("ab", "analyze", str(tmp_path / "nope.json"))
        assert result.exit_code == 2
        assert "FILE: cannot read" in result.stderr

    def test_bad_json(self, tmp_path: Path) -> None:
        result = atoll("ab", "analyze", write(tmp_path, '{"arms": [}'))
        assert result.exit_code == 2
        assert "invalid JSON at line 1, column 11" in result.stderr

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            (broken("metrics.0.data.candidate.n", -5), "metrics.0.data.candidate.n"),
            (broken("metrics.1.data.candidate.sum_squares", 10.0), "metrics.1.data.candidate.sum_squares"),
            (broken("control", "nobody"), "control"),
            (broken("arms.0.weight", 0.7), "arms"),
        ],
    )
    def test_field_is_named(self, tmp_path: Path, body: dict[str, Any], field: str) -> None:
        result = atoll("ab", "analyze", write(tmp_path, body))
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {field}: "), result.stderr

    def test_bad_stdin(self) -> None:
        result = atoll("ab", "analyze", "-", input="[]")
        assert result.exit_code == 2
        assert "error: request: " in result.stderr


class TestPower:
    @pytest.mark.parametrize(
        ("args", "body"),
        [
            (
                ["--metric-type", "binary", "--baseline", "0.1", "--mde", "0.05"],
                {"metric_type": "binary", "baseline": 0.1, "mde": 0.05},
            ),
            (
                ["--metric-type", "mean", "--baseline", "5", "--std", "12", "--mde", "0.25", "--absolute"],
                {"metric_type": "mean", "baseline": 5, "std": 12, "mde": 0.25, "mde_type": "absolute"},
            ),
            (
                ["--metric-type", "binary", "--baseline", "0.2", "--n-per-arm", "5000", "--arms", "3"],
                {"metric_type": "binary", "baseline": 0.2, "n_per_arm": 5000, "arms": 3},
            ),
            (
                ["--metric-type", "binary", "--baseline", "0.1", "--mde", "0.05", "--method", "sequential"],
                {"metric_type": "binary", "baseline": 0.1, "mde": 0.05, "method": "sequential"},
            ),
            (
                [
                    "--metric-type",
                    "binary",
                    "--baseline",
                    "0.1",
                    "--mde",
                    "0.1",
                    "--alpha",
                    "0.01",
                    "--power",
                    "0.9",
                ],
                {"metric_type": "binary", "baseline": 0.1, "mde": 0.1, "alpha": 0.01, "power": 0.9},
            ),
            (
                ["--metric-type", "binary", "--baseline", "0.1", "--mde", "-0.1"],
                {"metric_type": "binary", "baseline": 0.1, "mde": -0.1},
            ),
            (
                ["--metric-type", "mean", "--baseline", "-5.2", "--std", "10", "--mde=-0.5", "--absolute"],
                {"metric_type": "mean", "baseline": -5.2, "std": 10, "mde": -0.5, "mde_type": "absolute"},
            ),
            (
                [
                    "--metric-type",
                    "binary",
                    "--baseline",
                    "0.3",
                    "--n-per-arm",
                    "4000",
                    "--direction",
                    "decrease",
                ],
                {"metric_type": "binary", "baseline": 0.3, "n_per_arm": 4000, "direction": "decrease"},
            ),
        ],
    )
    def test_json_matches_the_engine(self, args: list[str], body: dict[str, Any]) -> None:
        result = atoll("ab", "power", *args, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == power(PowerRequest.model_validate(body)).model_dump(mode="json")

    def test_human_output(self) -> None:
        result = atoll("ab", "power", "--metric-type", "binary", "--baseline", "0.1", "--mde", "0.05")
        assert result.exit_code == 0, result.output
        expected = power(PowerRequest(metric_type="binary", baseline=0.1, mde=0.05))
        assert expected.n_per_arm is not None
        assert f"{expected.n_per_arm:,}" in result.stdout
        assert "units per arm" in result.stdout

    def test_a_drop_is_sized_and_shown_signed(self) -> None:
        result = atoll("ab", "power", "--metric-type", "binary", "--baseline", "0.1", "--mde", "-0.1")
        assert result.exit_code == 0, result.output
        assert "13,493" in result.stdout  # a 10% rise needs 14,749
        assert "-10.00%" in result.stdout
        assert "sized for a drop of the rate from 0.1 to 0.09" in result.stdout

    @pytest.mark.parametrize(
        ("args", "field"),
        [
            (["--metric-type", "binary", "--baseline", "0.1", "--mde", "0"], "mde"),
            (["--metric-type", "binary", "--baseline", "0.1", "--mde", "-1.5"], "mde"),
            (
                ["--metric-type", "binary", "--baseline", "0.1", "--mde", "-0.1", "--direction", "increase"],
                "direction",
            ),
            (["--metric-type", "mean", "--baseline", "5", "--mde", "0.1"], "std"),
            (["--metric-type", "binary", "--baseline", "1.5", "--mde", "0.1"], "baseline"),
            (["--metric-type", "binary", "--baseline", "0.1"], "mde"),
            (["--metric-type", "binary", "--baseline", "0.1", "--mde", "0.1", "--alpha", "0.7"], "alpha"),
        ],
    )
    def test_invalid_names_the_field(self, args: list[str], field: str) -> None:
        result = atoll("ab", "power", *args)
        assert result.exit_code == 2
        assert result.stderr.startswith(f"error: {field}: "), result.stderr

    def test_unknown_metric_type_is_a_usage_error(self) -> None:
        result = atoll("ab", "power", "--metric-type", "ratio", "--baseline", "0.1", "--mde", "0.1")
        assert result.exit_code == 2
        assert "metric-type" in result.output


def test_ab_is_listed_in_help() -> None:
    result = atoll("--help")
    assert result.exit_code == 0
    assert " ab " in result.output
    sub = atoll("ab", "--help")
    assert "computed locally; same engine as the API" in sub.output
