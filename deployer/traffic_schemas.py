"""API shapes of progressive delivery: canaries and shadows (the services are canary.py, shadow.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_STEPS = [5, 25, 50, 100]


class CanaryStart(BaseModel):
    """Move an endpoint's traffic to `to` step by step, judging guardrails at every step."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=63, description="The candidate deployment (behind the endpoint)")
    steps: list[int] = Field(
        default_factory=lambda: list(DEFAULT_STEPS),
        min_length=1,
        max_length=20,
        description="The candidate's weight at each step, in percent: increasing, 1..100, ending at 100",
    )
    hold_seconds: float = Field(default=60.0, ge=0, le=86_400, description="How long each step is held")
    hold_requests: int | None = Field(
        default=None, ge=1, le=10_000_000, description="Also wait for this many candidate requests per step"
    )
    max_error_rate: float = Field(
        default=0.05, ge=0, le=1, description="Most 5xx share of the candidate's answers"
    )
    max_p99_ratio: float | None = Field(
        default=2.0, ge=1, le=1000, description="Candidate p99 over the stable deployment's (null: unchecked)"
    )
    max_p99_added_ms: float | None = Field(
        default=10.0, ge=0, le=600_000, description="Candidate p99 minus stable p99 in ms (null: not checked)"
    )
    min_requests: int = Field(
        default=20, ge=1, le=1_000_000, description="Candidate requests in a step before it is judged"
    )
    reason: str = Field(default="", max_length=2000)


class CanaryAbort(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)


class DeploymentReading(BaseModel):
    requests: int
    errors: int
    error_rate: float | None
    p99_ms: float | None


class CanaryRead(BaseModel):
    id: int
    endpoint: str
    stable: str
    candidate: str
    state: Literal["running", "succeeded", "failed", "aborted"]
    steps: list[int]
    step: int = Field(description="Index of the step held now (-1: not started yet)")
    weight: int = Field(description="The candidate's weight now, in percent")
    hold_seconds: float
    hold_requests: int | None
    max_error_rate: float
    max_p99_ratio: float | None
    max_p99_added_ms: float | None
    min_requests: int
    step_started_at: datetime | None
    stable_reading: DeploymentReading | None = Field(description="This step so far, from its /metrics")
    candidate_reading: DeploymentReading | None
    judged: bool = Field(description="The candidate answered min_requests in this step")
    reading_error: str | None = Field(description="Why the last reading could not be taken, if so")
    reason: str | None
    job_ids: list[int]
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class ShadowStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=63, description="The candidate deployment (behind the endpoint)")
    share: float = Field(gt=0, le=1, description="Share of the endpoint's requests mirrored, 0 < share <= 1")
    kind: Literal["auto", "label", "score", "ranking"] = Field(
        default="auto", description="How predictions are compared; auto: labels if present, else scores"
    )
    top_k: int = Field(default=10, ge=1, le=1000, description="k of the rank overlap@k (ranking)")


class ShadowSummary(BaseModel):
    """The comparisons so far, aggregated in SQL."""

    compared: int = Field(description="Mirrored requests the candidate answered 2xx")
    failed: int = Field(description="Mirrored requests the candidate failed or did not answer in time")
    agreement: float | None = Field(description="Mean share of equal labels")
    max_abs_diff: float | None = Field(description="Largest absolute score difference seen")
    mean_max_abs_diff: float | None
    rank_overlap: float | None = Field(description="Mean rank overlap@k")
    primary_latency_ms: float | None = Field(description="Mean, of the mirrored requests")
    candidate_latency_ms: float | None


class ShadowRead(BaseModel):
    id: int
    endpoint: str
    candidate: str
    share: float
    kind: str
    top_k: int
    state: Literal["active", "stopped"]
    created_by: str
    created_at: datetime
    stopped_by: str | None
    stopped_at: datetime | None
    summary: ShadowSummary
    recent: list[dict[str, Any]] = Field(
        default_factory=list, description="The last comparisons, newest first"
    )
