"""Experiment API shapes: the definition a user writes (``atoll ab create FILE``), and what
a page, the CLI's ``--json`` or a script reads back.

The definition validates what is checkable without the database (types, ranges, one
primary metric, the fields each metric type needs); the service checks it against the
endpoint (arms behind it, weights, one control) and names the field either way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from atoll.abtest.serving import SERVING_TYPES, ServingMetric
from atoll.abtest.stats import AnalysisResult, ArmData, PowerResult
from atoll.schemas import IsoDateTime

DNS_1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MAX_ATTRIBUTION_SECONDS = 90 * 86_400
MetricRole = Literal["primary", "secondary", "guardrail"]
MetricKind = Literal["binary", "mean", "ratio"]
AllocationKind = Literal["fixed", "thompson"]
ExperimentMethod = Literal["fixed", "sequential"]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArmIn(_Input):
    """One arm: a deployment behind the experiment's endpoint and its share of traffic."""

    deployment: str = Field(min_length=1, max_length=63, pattern=DNS_1123_LABEL)
    weight: int = Field(ge=0, le=100, description="Percent of the endpoint's traffic")
    control: bool = Field(default=False, description="Exactly one arm is the control")


class MetricIn(_Input):
    """A metric defined once for the experiment, over outcome events per unit.

    binary: y = 1 if the unit has any `event` outcome in its attribution window; mean: y = the
    sum of its `event` values; ratio: y = the sum of `numerator` values over x = the sum of
    `denominator` values. `covariate` (CUPED) is the sum of that event's values in the
    `pre_period_days` before the unit's exposure.
    """

    name: str = Field(min_length=1, max_length=128, examples=["conversion"])
    role: MetricRole = "primary"
    type: MetricKind
    event: str | None = Field(
        default=None, max_length=128, description="Outcome metric name (binary, mean); default: name"
    )
    numerator: str | None = Field(default=None, max_length=128, description="ratio: outcome metric name")
    denominator: str | None = Field(default=None, max_length=128, description="ratio: outcome metric name")
    covariate: str | None = Field(default=None, max_length=128, description="CUPED: outcome metric name")
    pre_period_days: int = Field(default=14, ge=1, le=365, description="CUPED: days before exposure")
    higher_is_better: bool = True
    margin: float = Field(default=0.0, ge=0, description="guardrail: tolerated worsening")
    margin_type: Literal["relative", "absolute"] = "relative"
    max_value: float | None = Field(
        default=None,
        gt=0,
        description="mean metrics bounded in [0, max_value]: allows Thompson allocation on them",
    )
    serving: ServingMetric | None = Field(
        default=None,
        description="A serving metric per arm from the inference log (per request) instead of outcome "
        "events: latency_ms (mean) or error_rate (binary); for guardrail and secondary metrics",
    )

    @model_validator(mode="after")
    def _fields_for_type(self) -> Self:
        if self.serving is not None:
            wanted = SERVING_TYPES[self.serving]
            if self.type != wanted:
                raise ValueError(f"type: serving metric {self.serving} is a {wanted} metric")
            if self.role == "primary":
                raise ValueError(
                    "role: a serving metric is a guardrail or a secondary metric, not the primary"
                )
            if self.event or self.numerator or self.denominator or self.covariate:
                raise ValueError("serving: a serving metric reads the inference log, not outcome events")
            return self
        if self.type == "ratio":
            if not self.numerator or not self.denominator:
                raise ValueError("numerator and denominator: a ratio metric names both outcome metrics")
            if self.event or self.covariate:
                raise ValueError("event, covariate: a ratio metric takes numerator and denominator only")
        elif self.numerator or self.denominator:
            raise ValueError(
                f"numerator, denominator: only ratio metrics take them (this one is {self.type})"
            )
        if self.max_value is not None and self.type != "mean":
            raise ValueError("max_value: only mean metrics take a bound")
        return self

    @property
    def events(self) -> list[str]:
        """Every outcome metric name this metric reads (for the ingestion check)."""
        if self.serving is not None:
            return []
        names = [self.numerator, self.denominator] if self.type == "ratio" else [self.event or self.name]
        return [n for n in [*names, self.covariate] if n]


class ExperimentCreate(_Input):
    key: str = Field(min_length=1, max_length=63, pattern=DNS_1123_LABEL, examples=["checkout-2"])
    endpoint: str = Field(min_length=1, max_length=63, pattern=DNS_1123_LABEL)
    description: str = Field(default="", max_length=2000)
    unit_key: str = Field(
        default="unit_id", min_length=1, max_length=64, description="What a unit is (user_id, session...)"
    )
    arms: list[ArmIn] = Field(min_length=2, max_length=10)
    metrics: list[MetricIn] = Field(min_length=1, max_length=50)
    hypothesis: Literal["superiority", "non_inferiority"] = "superiority"
    margin: float = Field(default=0.0, ge=0, description="non_inferiority: tolerated worsening")
    margin_type: Literal["relative", "absolute"] = "relative"
    alpha: float = Field(default=0.05, gt=0, le=0.5)
    method: ExperimentMethod = "fixed"
    power: float = Field(default=0.8, gt=0, lt=1)
    mde: float | None = Field(default=None, description="Relative minimum detectable effect, e.g. 0.05")
    baseline: float | None = Field(
        default=None, description="Control rate or mean of the primary metric, to size the test"
    )
    std: float | None = Field(default=None, gt=0, description="Per-unit std of a mean primary metric")
    planned_n_per_arm: int | None = Field(default=None, ge=2, description="Default: from mde and baseline")
    planned_end: IsoDateTime | None = None
    attribution_seconds: int = Field(default=86_400, ge=1, le=MAX_ATTRIBUTION_SECONDS)
    allocation: AllocationKind = "fixed"
    allocation_floor: int = Field(default=10, ge=0, le=50, description="thompson: least percent per arm")
    allocation_every_seconds: int = Field(default=3600, ge=60, le=7 * 86_400)
    promote_alias: str = Field(default="champion", min_length=1, max_length=64)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        primaries = [m.name for m in self.metrics if m.role == "primary"]
        if len(primaries) != 1:
            raise ValueError(f"metrics: exactly one metric has role primary (found {len(primaries)})")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError("metrics: metric names must be unique")
        if self.hypothesis == "non_inferiority" and self.margin <= 0:
            raise ValueError("margin: must be > 0 for a non_inferiority hypothesis")
        if self.allocation == "thompson":
            primary = self.primary
            if primary.type != "binary" and not (primary.type == "mean" and primary.max_value):
                raise ValueError(
                    "allocation: thompson needs a binary primary metric, or a mean one with max_value"
                )
            if self.allocation_floor * len(self.arms) > 100:
                raise ValueError(
                    f"allocation_floor: {self.allocation_floor}% for each of "
                    f"{len(self.arms)} arms exceeds 100%"
                )
        return self

    @property
    def primary(self) -> MetricIn:
        return next(m for m in self.metrics if m.role == "primary")


class ExperimentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str
    endpoint: str
    description: str
    state: str
    salt: str
    unit_key: str
    arms: list[ArmIn]
    metrics: list[MetricIn]
    hypothesis: str
    margin: float
    margin_type: str
    alpha: float
    method: str
    power: float
    mde: float | None
    planned_n_per_arm: int | None
    planned_end: datetime | None
    attribution_seconds: int
    allocation: str
    allocation_floor: int
    allocation_every_seconds: int
    promote_alias: str
    previous_weights: dict[str, int] | None
    verdict: dict[str, Any] | None
    created_by: str
    created_at: datetime
    started_by: str | None
    started_at: datetime | None
    stopped_by: str | None
    stopped_at: datetime | None
    concluded_by: str | None
    concluded_at: datetime | None


class StopRequest(_Input):
    reason: str = Field(default="", max_length=2000)


class ConcludeRequest(_Input):
    promote: bool = Field(
        default=False,
        description="Move the winner's alias (promote_alias) through the gates and all traffic to it",
    )
    reason: str = Field(default="", max_length=2000)


class ArmProgress(BaseModel):
    arm: str
    deployment: str
    weight: int
    units: int
    planned: int | None


class ResultsRead(BaseModel):
    """The live readout: the engine's analysis of the sums computed in the database."""

    experiment: str
    state: str
    computed_at: datetime
    analysis: AnalysisResult | None = Field(description="Primary and guardrail metrics: the verdict")
    secondary: AnalysisResult | None = Field(description="Secondary metrics: reported, not decided on")
    sums: dict[str, dict[str, ArmData]] = Field(
        description="metric -> arm -> the sums computed in the database, as the engine read them"
    )
    chance_to_beat_control: dict[str, dict[str, float | None]] = Field(
        description="metric -> treatment arm -> posterior P(better than control), flat prior"
    )
    progress: list[ArmProgress]
    units_in_several_arms: int = Field(description="Units exposed under two arms (counted in their first)")
    unexposed_outcomes: int = Field(
        description="Outcome events of the experiment's metrics since its start from units the split "
        "never exposed: stored, not analysed"
    )
    verdict: str = Field(description="won | non_inferior | lost | inconclusive | invalid")
    winner: str | None = Field(description="The treatment arm that won (or was non-inferior), if one")
    reasons: list[str]
    valid_p_values: bool = Field(
        description="False under adaptive allocation: the fixed-horizon p-value does not hold there"
    )


class PlanRequest(_Input):
    """The wizard's sizing: the engine's power calculation and the endpoint's recent traffic."""

    endpoint: str = Field(min_length=1, max_length=63, pattern=DNS_1123_LABEL)
    metric_type: Literal["binary", "mean"] = "binary"
    baseline: float
    std: float | None = Field(default=None, gt=0)
    mde: float
    alpha: float = Field(default=0.05, gt=0, le=0.5)
    power: float = Field(default=0.8, gt=0, lt=1)
    arms: int = Field(default=2, ge=2, le=10)
    method: ExperimentMethod = "fixed"


class PlanRead(BaseModel):
    power: PowerResult
    units_per_day: float | None = Field(description="Distinct units per day seen by the endpoint lately")
    days: float | None = Field(description="Days to reach the planned sample at that rate")
