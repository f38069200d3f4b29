"""Canary guardrails: error rate and p99 latency per deployment, from the model servers' own metrics.

Each model server exports (deployer/serving/telemetry.py) a request counter
`atoll_serve_requests{route,status}` and a latency histogram
`atoll_serve_request_duration_seconds{route}`. A guardrail reads them from the
deployment's address (`GET /metrics`) and keeps only the prediction routes (`infer`,
`invocations`: health probes and scrapes are not traffic). It judges deltas: the
counters at the start of a canary step are stored (`Counters.to_json`), and the step is
judged on what happened since, so a deployment's past does not dilute a fresh breach.

- error rate = 5xx answers / all answers (4xx are the caller's mistakes, not the model's);
- p99 from the histogram's buckets, interpolated like Prometheus' `histogram_quantile`;
- a breach of p99 needs the candidate above the stable deployment by BOTH the ratio and
  the added milliseconds that are set (one left unset is not checked): the buckets are
  coarse (0.5, 1, 2.5, 5 ms...), so a ratio alone flaps between adjacent buckets when both
  answer in about a millisecond;
- nothing is judged before the candidate answered `min_requests` in the step (the p99
  comparison also waits for the stable deployment's `min_requests`).

On Kubernetes a deployment's address is its Service, so one scrape reads one pod: the
guardrail is exact on the local target (one process per deployment) and a sample there;
reading each pod (or Prometheus) is the step beyond.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "atoll_serve_requests"
LATENCY = "atoll_serve_request_duration_seconds"
PREDICTION_ROUTES = frozenset({"infer", "invocations"})
SCRAPE_TIMEOUT_SECONDS = 3.0

Buckets = tuple[tuple[float, float], ...]  # (upper bound in seconds, cumulative count), +Inf last


@dataclass(frozen=True)
class Counters:
    """A model server's cumulative prediction counters (or their delta over a step)."""

    requests: float = 0.0
    errors: float = 0.0  # 5xx answers
    buckets: Buckets = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "buckets": [[_bound_json(b), c] for b, c in self.buckets],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Counters:
        buckets = tuple((math.inf if b == "+Inf" else float(b), float(c)) for b, c in data.get("buckets", []))
        return cls(float(data.get("requests", 0.0)), float(data.get("errors", 0.0)), buckets)


def _bound_json(bound: float) -> float | str:
    return "+Inf" if math.isinf(bound) else bound


def parse_metrics(text: str) -> Counters:
    """The prediction routes' counters from a model server's Prometheus text exposition."""
    requests = errors = 0.0
    by_bound: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == REQUESTS:
            for sample in family.samples:
                if sample.name != f"{REQUESTS}_total" or sample.labels.get("route") not in PREDICTION_ROUTES:
                    continue
                requests += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    errors += sample.value
        elif family.name == LATENCY:
            for sample in family.samples:
                if sample.name != f"{LATENCY}_bucket" or sample.labels.get("route") not in PREDICTION_ROUTES:
                    continue
                bound = float(sample.labels["le"])
                by_bound[bound] = by_bound.get(bound, 0.0) + sample.value
    return Counters(requests, errors, tuple(sorted(by_bound.items())))


def delta(now: Counters, base: Counters | None) -> Counters:
    """What happened since `base`. A counter that went down means the server restarted: all of
    `now` is new then (Prometheus' reset rule)."""
    if base is None or now.requests < base.requests or now.errors < base.errors:
        return now
    before = dict(base.buckets)
    buckets = tuple((bound, max(count - before.get(bound, 0.0), 0.0)) for bound, count in now.buckets)
    return Counters(now.requests - base.requests, now.errors - base.errors, buckets)


def quantile(q: float, buckets: Buckets) -> float | None:
    """The q-quantile (0..1) of a cumulative histogram, as Prometheus' `histogram_quantile`.

    Linear interpolation inside the bucket holding the rank (the first bucket starts at 0);
    a rank in the +Inf bucket answers the highest finite bound. None without observations.
    """
    if not buckets or not 0.0 <= q <= 1.0:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank and cumulative > below:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / (cumulative - below)
        lower, below = (lower if math.isinf(upper) else upper), cumulative
    return lower


@dataclass(frozen=True)
class Reading:
    """One deployment over one step: what the portal and `atoll canary status` show."""

    requests: int
    errors: int
    error_rate: float | None
    p99_ms: float | None

    @classmethod
    def of(cls, counters: Counters) -> Reading:
        p99 = quantile(0.99, counters.buckets)
        rate = counters.errors / counters.requests if counters.requests else None
        return cls(
            int(counters.requests),
            int(counters.errors),
            rate,
            None if p99 is None else round(p99 * 1000.0, 3),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p99_ms": self.p99_ms,
        }


@dataclass(frozen=True)
class Thresholds:
    max_error_rate: float
    max_p99_ratio: float | None
    max_p99_added_ms: float | None
    min_requests: int


@dataclass(frozen=True)
class Verdict:
    judged: bool  # the candidate answered enough requests in this step to be judged
    breach: str | None  # which metric, its value against its threshold; None when within bounds


def judge(candidate: Reading, stable: Reading, limits: Thresholds) -> Verdict:
    """Breach or not, and why, for one step so far."""
    if candidate.requests < max(limits.min_requests, 1):
        return Verdict(False, None)
    rate = candidate.error_rate or 0.0
    if rate > limits.max_error_rate:
        return Verdict(
            True,
            f"error rate {rate:.3f} > {limits.max_error_rate:.3f} "
            f"({candidate.errors} of {candidate.requests} requests answered 5xx)",
        )
    if (
        candidate.p99_ms is not None
        and stable.p99_ms is not None
        and stable.requests >= limits.min_requests
        and (limits.max_p99_ratio is not None or limits.max_p99_added_ms is not None)
    ):
        ratio_over = limits.max_p99_ratio is None or candidate.p99_ms > stable.p99_ms * limits.max_p99_ratio
        added_over = (
            limits.max_p99_added_ms is None or candidate.p99_ms - stable.p99_ms > limits.max_p99_added_ms
        )
        if ratio_over and added_over:
            ratio = candidate.p99_ms / stable.p99_ms if stable.p99_ms > 0 else math.inf
            limits_text = " and ".join(
                text
                for text in (
                    f"{limits.max_p99_ratio:g}x" if limits.max_p99_ratio is not None else "",
                    f"+{limits.max_p99_added_ms:g} ms" if limits.max_p99_added_ms is not None else "",
                )
                if text
            )
            return Verdict(
                True,
                f"p99 latency {candidate.p99_ms:.1f} ms vs stable {stable.p99_ms:.1f} ms "
                f"({ratio:.2f}x) exceeds {limits_text}",
            )
    return Verdict(True, None)


def scrape(address: str, *, timeout: float = SCRAPE_TIMEOUT_SECONDS) -> Counters:
    """A model server's counters now; raises `httpx.HTTPError` when it cannot be read."""
    response = httpx.get(f"{address.rstrip('/')}/metrics", timeout=timeout)
    response.raise_for_status()
    return parse_metrics(response.text)
