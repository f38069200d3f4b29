"""Thompson-sampling allocation for an experiment's primary metric (pure: no I/O).

Each arm's success rate gets a Beta posterior; the share of traffic an arm receives is the
Monte-Carlo probability that it is the best arm (Thompson sampling in its "probability
matching" form, applied per re-weighting rather than per request), with a floor per arm so
every arm keeps learning, rounded to integer percent summing to exactly 100.

Binary metrics: successes = converted units, trials = units. Bounded metrics (a value known
to lie in [lower, upper], e.g. a rating or a capped watch time): the Bernoulli trick of
Agrawal & Goyal (2012) — a reward r scaled to [0, 1] counts as a Bernoulli success with
probability r, so in expectation successes = Σ r and trials = n. The posterior is then
never narrower than the one the bounded rewards justify (a Bernoulli has the largest
variance of any [0, 1] variable with that mean), which errs towards exploring.

What is valid under adaptive allocation is in docs/adaptive-allocation.md: the posteriors
are; the engine's fixed-horizon p-value is not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel
from scipy import stats as scipy_stats

from atoll.abtest.stats.schemas import ArmData

PERCENT = 100
CREDIBLE_LEVEL = 0.95


@dataclass(frozen=True)
class BetaPosterior:
    """Beta(alpha, beta) over an arm's success rate (uniform Beta(1, 1) prior by default)."""

    alpha: float
    beta: float

    def __post_init__(self) -> None:
        if not (self.alpha > 0 and self.beta > 0 and math.isfinite(self.alpha + self.beta)):
            raise ValueError(f"alpha and beta must be finite and > 0, got {self.alpha}, {self.beta}")

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def credible_interval(self, level: float = CREDIBLE_LEVEL) -> tuple[float, float]:
        tail = (1 - level) / 2
        lower, upper = scipy_stats.beta.ppf([tail, 1 - tail], self.alpha, self.beta)
        return float(lower), float(upper)


def beta_posterior(
    successes: float, trials: float, *, prior_alpha: float = 1.0, prior_beta: float = 1.0
) -> BetaPosterior:
    """The conjugate posterior after `successes` out of `trials` (fractional counts allowed)."""
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"successes must be within [0, trials], got {successes} of {trials}")
    return BetaPosterior(prior_alpha + successes, prior_beta + trials - successes)


def posterior_from_sums(data: ArmData, *, bounds: tuple[float, float] = (0.0, 1.0)) -> BetaPosterior:
    """The posterior of one arm from the experiment sums (`abtest.sums.arm_sums`).

    A binary metric is the default bounds (0, 1): Σy is the number of converted units.
    A bounded metric gives its `bounds`; the per-unit values are scaled into [0, 1] and
    counted by the Bernoulli trick (see the module docstring).
    """
    lower, upper = bounds
    if not upper > lower:
        raise ValueError(f"bounds: upper must exceed lower, got {bounds}")
    successes = (data.sum - data.n * lower) / (upper - lower)
    tolerance = 1e-9 * max(data.n, 1)
    if not -tolerance <= successes <= data.n + tolerance:
        raise ValueError(f"bounds: the arm's mean {data.sum / max(data.n, 1):g} lies outside {bounds}")
    return beta_posterior(min(max(successes, 0.0), float(data.n)), data.n)


def probability_best(
    posteriors: Mapping[str, BetaPosterior], *, draws: int = 10_000, seed: int | None = None
) -> dict[str, float]:
    """P(arm has the highest rate), estimated from `draws` joint samples of the posteriors."""
    if not posteriors:
        raise ValueError("posteriors: at least one arm is needed")
    if draws < 1:
        raise ValueError("draws: must be >= 1")
    rng = np.random.default_rng(seed)
    arms = list(posteriors)
    samples = np.column_stack([rng.beta(posteriors[a].alpha, posteriors[a].beta, size=draws) for a in arms])
    wins = np.bincount(samples.argmax(axis=1), minlength=len(arms))
    return {arm: float(count) / draws for arm, count in zip(arms, wins, strict=True)}


def allocate(shares: Mapping[str, float], *, floor_percent: int) -> dict[str, int]:
    """Integer percent per arm: `floor_percent` each, the rest in proportion to `shares`.

    Rounded by largest remainder (ties to the earlier arm), so the result sums to exactly
    100 and no arm drops below its floor.
    """
    arms = list(shares)
    if not arms:
        raise ValueError("shares: at least one arm is needed")
    if floor_percent < 0 or floor_percent * len(arms) > PERCENT:
        raise ValueError(
            f"floor_percent: {floor_percent}% for {len(arms)} arms must be within [0, {PERCENT // len(arms)}]"
        )
    total = sum(shares.values())
    if total <= 0 or any(s < 0 for s in shares.values()):
        raise ValueError("shares: must be >= 0 and not all zero")
    free = PERCENT - floor_percent * len(arms)
    quotas = {arm: floor_percent + free * shares[arm] / total for arm in arms}
    weights = {arm: math.floor(quota) for arm, quota in quotas.items()}
    left = PERCENT - sum(weights.values())
    by_remainder = sorted(arms, key=lambda arm: (-(quotas[arm] - weights[arm]), arms.index(arm)))
    for arm in by_remainder[:left]:
        weights[arm] += 1
    return weights


def thompson_weights(
    posteriors: Mapping[str, BetaPosterior],
    floor_percent: int = 10,
    draws: int = 10_000,
    seed: int | None = None,
) -> dict[str, int]:
    """The next split: integer percent per arm from P(best), with a floor, summing to 100."""
    return allocate(probability_best(posteriors, draws=draws, seed=seed), floor_percent=floor_percent)


class ArmPosterior(BaseModel):
    """One arm's posterior as the results page and the allocation history show it."""

    arm: str
    alpha: float
    beta: float
    mean: float
    lower: float
    upper: float
    credible_level: float
    probability_best: float


def posterior_summary(
    posteriors: Mapping[str, BetaPosterior], *, draws: int = 10_000, seed: int | None = None
) -> list[ArmPosterior]:
    """Per arm: the Beta parameters, mean, 95% credible interval and P(best)."""
    best = probability_best(posteriors, draws=draws, seed=seed)
    summary = []
    for arm, posterior in posteriors.items():
        lower, upper = posterior.credible_interval()
        summary.append(
            ArmPosterior(
                arm=arm, alpha=posterior.alpha, beta=posterior.beta, mean=posterior.mean, lower=lower,
                upper=upper, credible_level=CREDIBLE_LEVEL, probability_best=best[arm],
            )
        )  # fmt: skip
    return summary
