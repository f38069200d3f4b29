"""Request and result models of the A/B statistics engine.

The same models are the HTTP body of ``POST /api/v1/stats/analyze`` and
``POST /api/v1/stats/power`` and the file format of ``atoll ab analyze FILE``; see
``docs/statistics.md`` for a JSON example and every convention.

Inputs are pre-aggregated per arm and metric (``n``, ``sum``, ``sum_squares``, ...), the
shape a warehouse ``GROUP BY arm`` query produces. Validation messages name the field.
"""

from __future__ import annotations

import math
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MetricType = Literal["binary", "mean", "ratio"]
Method = Literal["fixed", "sequential", "bayesian"]
Correction = Literal["holm", "bh", "none"]
HypothesisType = Literal["superiority", "non_inferiority"]
MarginType = Literal["relative", "absolute"]
Direction = Literal["increase", "decrease"]
Verdict = Literal["ship", "dont_ship", "keep_running", "invalid"]

#: Relative tolerance for the moment inequalities (Cauchy-Schwarz) on float sums.
MOMENT_RTOL = 1e-9
#: Tolerance on the sum of arm weights.
WEIGHT_TOL = 1e-6


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


def _check_square_sum(field: str, n: int, total: float, squares: float) -> None:
    """Cauchy-Schwarz: ``squares * n >= total**2`` (with a float tolerance)."""
    if squares < 0:
        raise ValueError(f"{field} must be >= 0, got {squares}")
    lhs, rhs = squares * n, total * total
    if lhs < rhs - MOMENT_RTOL * max(abs(lhs), abs(rhs), 1.0):
        raise ValueError(
            f"{field}={squares} is impossible for n={n} and its sum={total}: {field} * n must be >= sum**2"
        )


def _centered(n: int, total: float, squares: float) -> float:
    return max(squares - total * total / n, 0.0) if n > 0 else 0.0


class ArmData(_Strict):
    """Summary statistics of one metric in one arm.

    ``sum``/``sum_squares`` are over the per-unit metric values (for ratio metrics, the
    numerator). CUPED adds the pre-period covariate (``pre_sum``, ``pre_sum_squares``)
    and ``sum_products`` = sum of post x pre; ratio metrics add the denominator
    (``denominator_sum``, ``denominator_sum_squares``) and ``sum_products`` = sum of
    numerator x denominator.
    """

    n: int = Field(ge=0, description="number of units")
    sum: float
    sum_squares: float
    pre_sum: float | None = None
    pre_sum_squares: float | None = None
    denominator_sum: float | None = None
    denominator_sum_squares: float | None = None
    sum_products: float | None = None

    @model_validator(mode="after")
    def _moments_possible(self) -> Self:
        _check_square_sum("sum_squares", self.n, self.sum, self.sum_squares)
        if (self.pre_sum is None) != (self.pre_sum_squares is None):
            raise ValueError("pre_sum and pre_sum_squares must be given together")
        if (self.denominator_sum is None) != (self.denominator_sum_squares is None):
            raise ValueError("denominator_sum and denominator_sum_squares must be given together")
        if self.pre_sum is not None and self.denominator_sum is not None:
            raise ValueError("give pre_* (CUPED) or denominator_* (ratio), not both")
        other = self.pre_sum if self.pre_sum is not None else self.denominator_sum
        other_sq = self.pre_sum_squares if self.pre_sum is not None else self.denominator_sum_squares
        name = "pre_sum_squares" if self.pre_sum is not None else "denominator_sum_squares"
        if other is not None and other_sq is not None:
            _check_square_sum(name, self.n, other, other_sq)
            if self.sum_products is not None and self.n > 0:
                sxy = self.sum_products - self.sum * other / self.n
                sxx = _centered(self.n, other, other_sq)
                syy = _centered(self.n, self.sum, self.sum_squares)
                bound = sxx * syy
                if sxy * sxy > bound + 1e-6 * max(bound, sxy * sxy, 1.0):
                    raise ValueError(
                        f"sum_products={self.sum_products} is impossible for the given sums: "
                        "the implied covariance exceeds the product of the standard deviations"
                    )
        return self


class ArmSpec(_Strict):
    """An arm of the experiment and its intended traffic weight."""

    name: str = Field(min_length=1)
    weight: float = Field(gt=0, le=1)
    units: int | None = Field(
        default=None,
        ge=0,
        description="units assigned to the arm, for the SRM check; "
        "defaults to the largest n of the arm over the metrics",
    )


class MetricSpec(_Strict):
    """One metric: its type, decision role and per-arm data (``data[arm_name]``)."""

    name: str = Field(min_length=1)
    type: MetricType
    higher_is_better: bool = True
    guardrail: bool = False
    margin: float = Field(
        default=0.0,
        ge=0,
        description="guardrail: tolerated worsening before the metric fails",
    )
    margin_type: MarginType = "relative"
    cuped: bool = False
    data: dict[str, ArmData]

    @model_validator(mode="after")
    def _data_fits_type(self) -> Self:
        for arm, d in self.data.items():
            where = f"data.{arm}"
            if self.type == "binary":
                if not 0 <= d.sum <= d.n:
                    raise ValueError(f"{where}.sum must be within [0, n] for a binary metric")
                if not math.isclose(d.sum_squares, d.sum, rel_tol=1e-9, abs_tol=1e-9):
                    raise ValueError(f"{where}.sum_squares must equal sum for a binary metric")
            if self.type == "ratio" and (d.denominator_sum is None or d.sum_products is None):
                raise ValueError(
                    f"{where}: ratio metrics need denominator_sum, denominator_sum_squares and sum_products"
                )
            if self.cuped and (d.pre_sum is None or d.sum_products is None):
                raise ValueError(f"{where}: cuped needs pre_sum, pre_sum_squares and sum_products")
        if self.cuped and self.type == "ratio":
            raise ValueError("cuped: supported for binary and mean metrics, not ratio")
        return self


class Hypothesis(_Strict):
    """``superiority``, or ``non_inferiority`` within ``margin`` (relative by default)."""

    type: HypothesisType = "superiority"
    margin: float = Field(default=0.0, ge=0)
    margin_type: MarginType = "relative"

    @model_validator(mode="after")
    def _margin_needed(self) -> Self:
        if self.type == "non_inferiority" and self.margin <= 0:
            raise ValueError("margin must be > 0 for a non_inferiority hypothesis")
        return self


class AnalysisRequest(_Strict):
    """Everything ``analyze`` needs; see docs/statistics.md for a JSON example."""

    arms: list[ArmSpec] = Field(min_length=2)
    control: str
    metrics: list[MetricSpec] = Field(min_length=1)
    alpha: float = Field(default=0.05, gt=0, le=0.5)
    hypothesis: Hypothesis = Hypothesis()
    method: Method = "fixed"
    correction: Correction = "holm"
    sequential_tuning: float = Field(
        default=5000.0,
        gt=0,
        description="sequential: total sample size (control + treatment) at which the "
        "confidence sequence is tightest",
    )
    prior_mean: float = Field(default=0.0, description="bayesian: prior mean of the relative lift")
    prior_std: float | None = Field(
        default=None,
        gt=0,
        description="bayesian: prior std of the relative lift; null = flat (improper) prior",
    )

    @field_validator("arms")
    @classmethod
    def _arms_ok(cls, arms: list[ArmSpec]) -> list[ArmSpec]:
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ValueError("arm names must be unique")
        total = sum(a.weight for a in arms)
        if abs(total - 1.0) > WEIGHT_TOL:
            raise ValueError(f"weights must sum to 1 (got {total:.9g})")
        return arms

    @model_validator(mode="after")
    def _names_known(self) -> Self:
        names = {a.name for a in self.arms}
        if self.control not in names:
            raise ValueError(f"control: unknown arm {self.control!r} (arms: {sorted(names)})")
        seen: set[str] = set()
        for m in self.metrics:
            if m.name in seen:
                raise ValueError(f"metrics: duplicate metric name {m.name!r}")
            seen.add(m.name)
            unknown = set(m.data) - names
            if unknown:
                raise ValueError(f"metrics.{m.name}.data: unknown arm(s) {sorted(unknown)} not in arms")
            missing = names - set(m.data)
            if missing:
                raise ValueError(f"metrics.{m.name}.data: missing arm(s) {sorted(missing)}")
        return self


# ---------------------------------------------------------------- results


class Interval(BaseModel):
    lower: float
    upper: float


class ArmEstimate(BaseModel):
    """Per-arm estimate of a metric (CUPED-adjusted mean when CUPED is on)."""

    arm: str
    n: int
    mean: float | None
    std: float | None


class Comparison(BaseModel):
    """One treatment arm against control for one metric."""

    arm: str
    absolute_lift: float | None
    absolute_ci: Interval | None
    relative_lift: float | None = Field(
        description="(treatment - control) / |control mean|: the sign of absolute_lift for "
        "any control mean; null when the control mean is not distinguishable from zero"
    )
    relative_ci: Interval | None
    ci_level: float = Field(description="confidence level of the intervals after adjustment")
    p_value: float | None
    adjusted_p_value: float | None
    chance_to_beat_control: float | None = None
    expected_loss: float | None = Field(
        default=None,
        description="bayesian: expected loss if the arm is shipped, a fraction of |control mean|",
    )
    expected_loss_control: float | None = Field(
        default=None,
        description="bayesian: expected loss if control is kept, a fraction of |control mean|",
    )
    verdict: Verdict
    reasons: list[str]


class MetricResult(BaseModel):
    name: str
    type: MetricType
    guardrail: bool
    higher_is_better: bool
    cuped_theta: float | None = None
    notes: list[str] = Field(default_factory=list)
    arms: list[ArmEstimate]
    comparisons: list[Comparison]


class SRMResult(BaseModel):
    """Chi-square goodness of fit of arm unit counts against the intended weights."""

    statistic: float | None
    df: int
    p_value: float | None
    threshold: float
    mismatch: bool
    observed: dict[str, int]
    expected: dict[str, float]
    reason: str | None = None


class ArmDecision(BaseModel):
    """Overall decision for a treatment arm over its primary and guardrail metrics."""

    arm: str
    verdict: Verdict
    reasons: list[str]


class AnalysisResult(BaseModel):
    method: Method
    alpha: float
    hypothesis: Hypothesis
    control: str
    correction: Correction
    correction_note: str
    srm: SRMResult
    valid: bool
    metrics: list[MetricResult]
    decisions: list[ArmDecision]


# ---------------------------------------------------------------- power


class PowerRequest(_Strict):
    """Sample size (give ``mde``), MDE (give ``n_per_arm``) or power (give both)."""

    metric_type: Literal["binary", "mean"]
    baseline: float = Field(description="control conversion rate (binary) or mean")
    std: float | None = Field(default=None, gt=0, description="per-unit std (mean metrics)")
    mde: float | None = Field(
        default=None,
        description="minimum detectable effect; negative sizes the test for a drop "
        "(relative: a fraction of |baseline|)",
    )
    mde_type: MarginType = "relative"
    direction: Direction | None = Field(
        default=None,
        description="side of the effect: with mde, its sign decides (default); "
        "without mde, the side the MDE is solved on (default increase)",
    )
    n_per_arm: int | None = Field(default=None, ge=2)
    alpha: float = Field(default=0.05, gt=0, le=0.5)
    power: float = Field(default=0.8, gt=0, lt=1)
    arms: int = Field(default=2, ge=2, description="number of arms including control")
    method: Method = "fixed"
    correction: Correction = "holm"
    sequential_tuning: float | None = Field(
        default=None,
        gt=0,
        description="sequential: total sample size at which the bound is tightest; "
        "null = tuned at the computed sample size",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.mde is None and self.n_per_arm is None:
            raise ValueError("mde or n_per_arm: give at least one of them")
        if self.mde == 0:
            raise ValueError("mde: must be non-zero (positive for a rise, negative for a drop)")
        if (
            self.mde is not None
            and self.direction is not None
            and (self.mde < 0) != (self.direction == "decrease")
        ):
            raise ValueError(
                f"direction: {self.direction!r} contradicts mde={self.mde} "
                "(a negative mde is a decrease); give the signed mde alone"
            )
        if self.metric_type == "binary" and not 0 < self.baseline < 1:
            raise ValueError("baseline must be a rate in (0, 1) for a binary metric")
        if self.metric_type == "mean" and self.std is None:
            raise ValueError("std is required for a mean metric")
        if self.mde_type == "relative" and self.baseline == 0:
            raise ValueError("baseline must be non-zero for a relative mde")
        if self.metric_type == "binary" and self.mde is not None:
            effect = self.mde * self.baseline if self.mde_type == "relative" else self.mde
            if not 0 < self.baseline + effect < 1:
                raise ValueError(
                    f"mde: takes the rate from {self.baseline:g} to {self.baseline + effect:g}; "
                    "the rate to detect must stay within (0, 1)"
                )
        return self


class PowerResult(BaseModel):
    metric_type: Literal["binary", "mean"]
    method: Method
    alpha: float
    alpha_per_comparison: float
    target_power: float
    n_per_arm: int | None = Field(description="units per arm, rounded up")
    n_per_arm_exact: float | None = Field(description="units per arm before rounding")
    n_total: int | None
    mde_absolute: float | None = Field(description="signed: negative for a drop")
    mde_relative: float | None = Field(description="signed, a fraction of |baseline|")
    achieved_power: float | None
    sequential_inflation: float | None = Field(
        default=None, description="sequential n / fixed-horizon n at the same effect"
    )
    notes: list[str]
