"""Canary guardrails: parsing the model server's own metrics, p99 from buckets, judgement, steps."""

from __future__ import annotations

import math

import pytest
from prometheus_client import generate_latest

from atoll.deployer import guardrails
from atoll.deployer.canary import check_steps
from atoll.deployer.guardrails import Counters, Reading, Thresholds, delta, judge, parse_metrics, quantile
from atoll.deployer.serving.telemetry import Metrics
from atoll.errors import InvalidInput


class TestQuantile:
    def test_interpolates_inside_the_bucket_holding_the_rank(self) -> None:
        # 100 observations: 50 <= 1 ms, 40 in (1, 2.5] ms, 10 in (2.5, 5] ms.
        buckets = ((0.001, 50.0), (0.0025, 90.0), (0.005, 100.0), (math.inf, 100.0))
        assert quantile(0.5, buckets) == pytest.approx(0.001)
        assert quantile(0.9, buckets) == pytest.approx(0.0025)
        # rank 99 is the 9th of 10 in (2.5, 5]: 2.5 + 2.5 * 9/10 ms
        assert quantile(0.99, buckets) == pytest.approx(0.00475)
        # the first bucket starts at 0: rank 25 of 50 in (0, 1] ms
        assert quantile(0.25, buckets) == pytest.approx(0.0005)

    def test_a_rank_in_the_inf_bucket_answers_the_highest_finite_bound(self) -> None:
        buckets = ((0.001, 10.0), (0.005, 50.0), (math.inf, 100.0))
        assert quantile(0.99, buckets) == pytest.approx(0.005)

    def test_no_observations_is_none(self) -> None:
        assert quantile(0.99, ((0.001, 0.0), (math.inf, 0.0))) is None
        assert quantile(0.99, ()) is None

    def test_empty_buckets_between_filled_ones_are_skipped(self) -> None:
        buckets = ((0.001, 0.0), (0.0025, 0.0), (0.005, 10.0), (math.inf, 10.0))
        assert quantile(0.5, buckets) == pytest.approx(0.00375)


def _server_metrics(observations: list[tuple[str, int, float]]) -> str:
    metrics = Metrics()
    for route, status, seconds in observations:
        metrics.observe(route, status, seconds)
    return generate_latest(metrics.registry).decode()


class TestParse:
    def test_reads_the_model_servers_own_exposition_prediction_routes_only(self) -> None:
        text = _server_metrics(
            [("infer", 200, 0.002)] * 7
            + [("invocations", 500, 0.001)] * 2
            + [("infer", 503, 0.0004)]
            + [("infer", 422, 0.0003)]
            + [("ready", 200, 0.0001)] * 50  # probes are not traffic
        )
        found = parse_metrics(text)
        assert found.requests == 11 and found.errors == 3
        assert found.buckets[-1] == (math.inf, 11.0)
        assert dict(found.buckets)[0.0025] == 11.0 and dict(found.buckets)[0.001] == 4.0

    def test_delta_since_the_step_started_and_a_restart_counts_from_zero(self) -> None:
        base = Counters(100, 5, ((0.001, 80.0), (math.inf, 100.0)))
        now = Counters(130, 20, ((0.001, 90.0), (math.inf, 130.0)))
        step = delta(now, base)
        assert (step.requests, step.errors, step.buckets) == (30, 15, ((0.001, 10.0), (math.inf, 30.0)))
        restarted = Counters(12, 1, ((0.001, 12.0), (math.inf, 12.0)))
        assert delta(restarted, base) == restarted
        assert Counters.from_json(now.to_json()) == now


def _reading(requests: int, errors: int, p99_ms: float | None) -> Reading:
    return Reading(requests, errors, errors / requests if requests else None, p99_ms)


LIMITS = Thresholds(max_error_rate=0.05, max_p99_ratio=2.0, max_p99_added_ms=10.0, min_requests=20)


class TestJudge:
    def test_nothing_is_judged_before_min_requests(self) -> None:
        verdict = judge(_reading(19, 19, 900.0), _reading(100, 0, 1.0), LIMITS)
        assert verdict == guardrails.Verdict(False, None)

    def test_an_error_rate_above_the_threshold_is_a_breach_naming_value_and_threshold(self) -> None:
        verdict = judge(_reading(40, 20, 1.0), _reading(100, 0, 1.0), LIMITS)
        assert verdict.judged and verdict.breach is not None
        assert verdict.breach.startswith("error rate 0.500 > 0.050 (20 of 40 requests answered 5xx)")
        assert judge(_reading(40, 2, 1.0), _reading(100, 0, 1.0), LIMITS).breach is None

    def test_p99_breaches_only_above_both_the_ratio_and_the_added_ms(self) -> None:
        stable = _reading(100, 0, 2.0)
        assert judge(_reading(50, 0, 4.9), stable, LIMITS).breach is None  # 2.45x but +2.9 ms: noise
        assert judge(_reading(50, 0, 11.0), stable, LIMITS).breach is None  # 5.5x but +9 ms
        breach = judge(_reading(50, 0, 30.0), stable, LIMITS).breach
        assert breach == "p99 latency 30.0 ms vs stable 2.0 ms (15.00x) exceeds 2x and +10 ms"
        ratio_only = Thresholds(0.05, 2.0, None, 20)
        assert judge(_reading(50, 0, 4.9), stable, ratio_only).breach is not None
        assert judge(_reading(50, 0, 3.9), stable, ratio_only).breach is None

    def test_p99_is_not_compared_while_the_stable_deployment_has_too_few_requests(self) -> None:
        assert judge(_reading(50, 0, 300.0), _reading(5, 0, 1.0), LIMITS) == guardrails.Verdict(True, None)


class TestSteps:
    @pytest.mark.parametrize(
        ("steps", "message"),
        [
            ([], "at least one step"),
            ([5, 5, 100], "must increase"),
            ([50, 25, 100], "must increase"),
            ([0, 50, 100], "has 0"),
            ([5, 50, 101], "has 101"),
            ([5, 25, 50], "the last step must be 100"),
        ],
    )
    def test_bad_steps_are_422_naming_the_field(self, steps: list[int], message: str) -> None:
        with pytest.raises(InvalidInput) as caught:
            check_steps(steps)
        assert caught.value.extra["field"] == "steps" and message in caught.value.detail

    def test_good_steps_pass(self) -> None:
        assert check_steps([5, 25, 50, 100]) == [5, 25, 50, 100]
        assert check_steps([100]) == [100]
