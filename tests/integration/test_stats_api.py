"""The A/B statistics API over the real app: the same numbers as the engine, field-naming 422s."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from atoll.abtest.stats import AnalysisRequest, PowerRequest, analyze, power
from atoll.auth.policy import Role

from .conftest import Caller, MakeCaller, sign_in

ANALYZE = "/api/v1/stats/analyze"
POWER = "/api/v1/stats/power"


def binary(n: int, conversions: int) -> dict[str, float]:
    return {"n": n, "sum": conversions, "sum_squares": conversions}


def two_arm() -> dict[str, Any]:
    return {
        "arms": [{"name": "control", "weight": 0.5}, {"name": "candidate", "weight": 0.5}],
        "control": "control",
        "metrics": [
            {
                "name": "conversion",
                "type": "binary",
                "data": {"control": binary(10000, 1000), "candidate": binary(10050, 1100)},
            },
            {
                "name": "latency_ms",
                "type": "mean",
                "guardrail": True,
                "higher_is_better": False,
                "margin": 0.02,
                "data": {
                    "control": {"n": 10000, "sum": 1200000, "sum_squares": 160000000},
                    "candidate": {"n": 10050, "sum": 1206000, "sum_squares": 160800000},
                },
            },
        ],
    }


def three_arm() -> dict[str, Any]:
    third = 1 / 3
    return {
        "arms": [{"name": n, "weight": third} for n in ("control", "b", "c")],
        "control": "control",
        "correction": "holm",
        "metrics": [
            {
                "name": "conversion",
                "type": "binary",
                "data": {
                    "control": binary(8000, 800),
                    "b": binary(8000, 900),
                    "c": binary(8000, 810),
                },
            },
            {
                "name": "revenue",
                "type": "mean",
                "data": {
                    "control": {"n": 8000, "sum": 40000, "sum_squares": 600000},
                    "b": {"n": 8000, "sum": 41000, "sum_squares": 615000},
                    "c": {"n": 8000, "sum": 39500, "sum_squares": 590000},
                },
            },
        ],
    }


def mean_arm(n: int, mean: float, std: float) -> dict[str, float]:
    total = n * mean
    return {"n": n, "sum": total, "sum_squares": (n - 1) * std**2 + total * total / n}


def negative_baseline(method: str) -> dict[str, Any]:
    """Issue 11: a net margin with control mean -5.2 and a treatment 1.2 units higher."""
    return {
        "arms": [{"name": "control", "weight": 0.5}, {"name": "candidate", "weight": 0.5}],
        "control": "control",
        "method": method,
        "metrics": [
            {
                "name": "net_margin",
                "type": "mean",
                "data": {"control": mean_arm(3000, -5.2, 10), "candidate": mean_arm(3000, -4.0, 10)},
            }
        ],
    }


def post(client: TestClient, caller: Caller, path: str, body: Any) -> Any:
    response = client.post(path, json=body, headers=caller.headers)
    assert response.status_code == 200, response.text
    return response.json()


class TestAnalyze:
    def test_two_arm_binary_matches_the_engine(self, client: TestClient, admin: Caller) -> None:
        body = two_arm()
        got = post(client, admin, ANALYZE, body)
        assert got == analyze(AnalysisRequest.model_validate(body)).model_dump(mode="json")
        conversion = got["metrics"][0]["comparisons"][0]
        assert conversion["arm"] == "candidate"
        assert conversion["absolute_lift"] == pytest.approx(1100 / 10050 - 0.1)
        assert got["decisions"][0]["arm"] == "candidate"

    def test_three_arms_with_holm(self, client: TestClient, admin: Caller) -> None:
        body = three_arm()
        got = post(client, admin, ANALYZE, body)
        assert got == analyze(AnalysisRequest.model_validate(body)).model_dump(mode="json")
        assert got["correction"] == "holm"
        assert "Holm" in got["correction_note"] and "4 comparisons" in got["correction_note"]
        assert [d["arm"] for d in got["decisions"]] == ["b", "c"]
        for metric in got["metrics"]:
            assert [c["arm"] for c in metric["comparisons"]] == ["b", "c"]
            for c in metric["comparisons"]:
                assert c["adjusted_p_value"] >= c["p_value"]
                assert c["ci_level"] == pytest.approx(1 - 0.05 / 4)

    @pytest.mark.parametrize("method", ["fixed", "sequential", "bayesian"])
    def test_a_negative_control_mean_reads_up(self, client: TestClient, admin: Caller, method: str) -> None:
        body = negative_baseline(method)
        got = post(client, admin, ANALYZE, body)
        assert got == analyze(AnalysisRequest.model_validate(body)).model_dump(mode="json")
        c = got["metrics"][0]["comparisons"][0]
        assert c["relative_lift"] == pytest.approx(1.2 / 5.2)
        assert c["relative_ci"]["lower"] > 0
        assert c["verdict"] == "ship"
        if method == "bayesian":
            assert c["chance_to_beat_control"] > 0.999
            assert c["expected_loss"] < c["expected_loss_control"]
        assert any("control mean is negative" in n for n in got["metrics"][0]["notes"])

    def test_a_viewer_token_may_analyse(self, client: TestClient, make_caller: MakeCaller) -> None:
        viewer = make_caller("vera", Role.viewer)
        assert post(client, viewer, ANALYZE, two_arm())["valid"] is True

    def test_no_token_is_401(self, client: TestClient) -> None:
        response = client.post(ANALYZE, json=two_arm())
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"

    def test_nothing_is_audited(self, client: TestClient, admin: Caller) -> None:
        before = client.get("/api/v1/audit", headers=admin.headers).json()
        post(client, admin, ANALYZE, two_arm())
        post(client, admin, POWER, {"metric_type": "binary", "baseline": 0.1, "mde": 0.05})
        assert client.get("/api/v1/audit", headers=admin.headers).json() == before


def broken(path: str, value: Any) -> dict[str, Any]:
    """`two_arm()` with the value at a dotted path replaced."""
    body = two_arm()
    *parents, last = path.split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return body


INVALID = [
    pytest.param(
        broken("metrics.0.data.candidate.n", -5),
        "metrics.0.data.candidate.n",
        "greater than",
        id="negative-n",
    ),
    pytest.param(
        broken("metrics.1.data.candidate.sum_squares", 10.0),
        "metrics.1.data.candidate.sum_squares",
        "impossible",
        id="impossible-sum-squares",
    ),
    pytest.param(
        broken("metrics.0.data.candidate", binary(100, 200)),
        "metrics.0.data.candidate.sum_squares",
        "impossible",
        id="binary-sum-above-n",
    ),
    pytest.param(broken("control", "nobody"), "control", "unknown arm 'nobody'", id="unknown-control"),
    pytest.param(broken("arms.0.weight", 0.7), "arms", "weights must sum to 1", id="weights"),
    pytest.param(
        broken("metrics.0.data.ghost", binary(10, 1)),
        "metrics.conversion.data",
        "unknown arm",
        id="unknown-arm",
    ),
    pytest.param(broken("alpha", 0.9), "alpha", "less than or equal to 0.5", id="alpha"),
    pytest.param(
        {**two_arm(), "hypothesis": {"type": "non_inferiority"}},
        "hypothesis.margin",
        "margin must be > 0",
        id="non-inferiority-margin",
    ),
    pytest.param({**two_arm(), "colour": "blue"}, "colour", "Extra inputs", id="unknown-field"),
]


class TestInvalidAnalysis:
    @pytest.mark.parametrize(("body", "field", "message"), INVALID)
    def test_422_names_the_field(
        self, client: TestClient, admin: Caller, body: dict[str, Any], field: str, message: str
    ) -> None:
        response = client.post(ANALYZE, json=body, headers=admin.headers)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["errors"][0]["field"] == field
        assert message in problem["errors"][0]["message"]
        assert problem["detail"].startswith(f"{field}: ")

    def test_invalid_json(self, client: TestClient, admin: Caller) -> None:
        response = client.post(
            ANALYZE, content=b"{not json", headers={**admin.headers, "content-type": "application/json"}
        )
        assert response.status_code == 422
        assert "JSON" in response.json()["detail"]


class TestPower:
    @pytest.mark.parametrize(
        "body",
        [
            {"metric_type": "binary", "baseline": 0.1, "mde": 0.05},
            {"metric_type": "mean", "baseline": 5.0, "std": 12.0, "mde": 0.25, "mde_type": "absolute"},
            {"metric_type": "binary", "baseline": 0.2, "n_per_arm": 5000, "arms": 3},
            {"metric_type": "binary", "baseline": 0.1, "mde": 0.05, "method": "sequential"},
            {"metric_type": "binary", "baseline": 0.1, "mde": -0.1},
            {"metric_type": "mean", "baseline": -5.2, "std": 10.0, "mde": -0.1, "method": "bayesian"},
            {"metric_type": "binary", "baseline": 0.3, "n_per_arm": 4000, "direction": "decrease"},
        ],
    )
    def test_matches_the_engine(self, client: TestClient, admin: Caller, body: dict[str, Any]) -> None:
        got = post(client, admin, POWER, body)
        assert got == power(PowerRequest.model_validate(body)).model_dump(mode="json")

    def test_a_drop_of_a_rate_needs_its_own_sample_size(self, client: TestClient, admin: Caller) -> None:
        rise = post(client, admin, POWER, {"metric_type": "binary", "baseline": 0.1, "mde": 0.1})
        drop = post(client, admin, POWER, {"metric_type": "binary", "baseline": 0.1, "mde": -0.1})
        assert (rise["n_per_arm"], drop["n_per_arm"]) == (14749, 13493)
        assert drop["mde_absolute"] == pytest.approx(-0.01)
        assert drop["mde_relative"] == pytest.approx(-0.1)
        assert "sized for a drop of the rate from 0.1 to 0.09" in drop["notes"]

    def test_a_viewer_token_may_plan(self, client: TestClient, make_caller: MakeCaller) -> None:
        viewer = make_caller("vic", Role.viewer)
        assert post(client, viewer, POWER, {"metric_type": "binary", "baseline": 0.1, "mde": 0.05})[
            "n_per_arm"
        ]

    def test_no_token_is_401(self, client: TestClient) -> None:
        assert (
            client.post(POWER, json={"metric_type": "binary", "baseline": 0.1, "mde": 0.05}).status_code
            == 401
        )

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"metric_type": "binary", "baseline": 1.5, "mde": 0.05}, "baseline"),
            ({"metric_type": "mean", "baseline": 5.0, "mde": 0.05}, "std"),
            ({"metric_type": "binary", "baseline": 0.1}, "mde"),
            ({"metric_type": "binary", "baseline": 0.1, "mde": -1}, "mde"),
            ({"metric_type": "binary", "baseline": 0.1, "mde": 0}, "mde"),
            ({"metric_type": "binary", "baseline": 0.1, "mde": 0.95, "mde_type": "absolute"}, "mde"),
            ({"metric_type": "binary", "baseline": 0.1, "mde": -0.1, "direction": "increase"}, "direction"),
            ({"metric_type": "ratio", "baseline": 0.1, "mde": 0.1}, "metric_type"),
        ],
    )
    def test_422_names_the_field(
        self, client: TestClient, admin: Caller, body: dict[str, Any], field: str
    ) -> None:
        response = client.post(POWER, json=body, headers=admin.headers)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field
        assert response.json()["detail"].startswith(f"{field}: ")


class TestPortalCalculator:
    """The portal's calculator forms (a session, CSRF header): the same engine, signed MDEs."""

    def test_a_drop_is_sized(self, client: TestClient, admin: Caller) -> None:
        csrf = sign_in(client, admin, "/ab-calculator")
        form = {"metric_type": "binary", "baseline": "0.1", "mde": "-0.1", "direction": "increase"}
        page = client.post("/ab-calculator/power", data=form, headers=csrf)
        assert page.status_code == 200, page.text
        assert "13,493" in page.text  # the direction select only serves "solve the MDE"
        assert "-10.00%" in page.text

    def test_the_mde_of_a_drop_is_solved(self, client: TestClient, admin: Caller) -> None:
        csrf = sign_in(client, admin, "/ab-calculator")
        form = {"metric_type": "binary", "baseline": "0.1", "n_per_arm": "10000", "direction": "decrease"}
        page = client.post("/ab-calculator/power", data=form, headers=csrf)
        expected = power(
            PowerRequest(metric_type="binary", baseline=0.1, n_per_arm=10000, direction="decrease")
        )
        assert expected.mde_relative is not None and expected.mde_relative < 0
        assert f"{expected.mde_relative * 100:+.2f}%" in page.text

    def test_a_negative_control_mean_reads_up(self, client: TestClient, admin: Caller) -> None:
        csrf = sign_in(client, admin, "/ab-calculator")
        body = negative_baseline("bayesian")
        page = client.post("/ab-calculator/analyze", data={"analysis": json.dumps(body)}, headers=csrf)
        assert page.status_code == 200, page.text
        assert "+23.08%" in page.text
        assert "control mean is negative" in page.text
        assert 'data-testid="verdict">Ship</span>' in page.text
