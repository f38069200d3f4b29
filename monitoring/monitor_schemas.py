"""What the monitors API takes and answers (pydantic). The drift spec itself is `schemas.DriftSpec`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictBool, field_validator, model_validator

from atoll.monitoring.quality_schemas import LabelSpec, QualityRead
from atoll.monitoring.schemas import DriftSpec

DNS_1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MonitorName = Annotated[
    str, Field(pattern=DNS_1123_LABEL, min_length=1, max_length=63, examples=["fraud-scoring-drift"])
]
SplitDimension = Literal["deployment", "backend", "arm"]
MIN_SCHEDULE_SECONDS = 60
MAX_SECONDS = 31 * 86400


class UploadedReference(BaseModel):
    """The reference set is uploaded afterwards (`POST /monitors/{name}/reference`, CSV or Parquet)."""

    model_config = ConfigDict(extra="forbid")
    source: Literal["upload"] = "upload"


class WindowReference(BaseModel):
    """A past window of the endpoint's own inference log is the reference."""

    model_config = ConfigDict(extra="forbid")
    source: Literal["window"]
    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a time zone, e.g. 2026-12-01T00:00:00Z")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class TrainingDataVersion(BaseModel):
    """A model version whose training data becomes the reference; both or neither given.
    Neither: the version the endpoint's stable deployment serves now (its largest weight)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, min_length=1, max_length=256, examples=["fraud"])
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.model is None) != (self.version is None):
            raise ValueError("give model and version together, or neither (the endpoint's stable version)")
        return self


class TrainingDataReference(TrainingDataVersion):
    """The training data of a model version, from MLflow (lineage `training_data`, else the
    run's training dataset input)."""

    source: Literal["training_data"]


ReferenceChoice = Annotated[
    UploadedReference | WindowReference | TrainingDataReference, Field(discriminator="source")
]


def _webhook_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


class _MonitorFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("split_by", check_fields=False)
    @classmethod
    def _unique_split(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("each dimension at most once")
        return value

    @field_validator("webhook_url", check_fields=False)
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _webhook_url(value)


class MonitorCreate(_MonitorFields):
    name: MonitorName
    endpoint: str = Field(pattern=DNS_1123_LABEL, max_length=63, description="The endpoint it watches")
    description: str = Field(default="", max_length=2000)
    split_by: list[SplitDimension] = Field(
        default_factory=list,
        description="Also check each deployment / backend / A/B arm on its own",
        json_schema_extra={"uniqueItems": True},
    )
    reference: ReferenceChoice = Field(default_factory=UploadedReference)
    spec: DriftSpec | None = Field(
        default=None,
        description=(
            "The columns to check; default: every named input of the MLflow signature of the version "
            "the reference names (training_data) or the endpoint's stable deployment serves, method auto"
        ),
    )
    labels: LabelSpec | None = Field(
        default=None, description="Ground truth from outcome events: target drift and model quality"
    )
    schedule_seconds: int = Field(default=3600, ge=MIN_SCHEDULE_SECONDS, le=MAX_SECONDS)
    window_seconds: int = Field(default=3600, ge=MIN_SCHEDULE_SECONDS, le=MAX_SECONDS)
    enabled: StrictBool = True
    webhook_url: str | None = Field(
        default=None, max_length=2048, pattern=r"^https?://", description="Slack-compatible receiver"
    )
    webhook_secret: SecretStr | None = Field(
        default=None, min_length=16, max_length=255, description="Signs alerts (HMAC-SHA256); never returned"
    )


class MonitorUpdate(_MonitorFields):
    """Only the fields given change. A new spec re-profiles the stored reference set."""

    description: str | None = Field(default=None, max_length=2000)
    split_by: list[SplitDimension] | None = Field(default=None, json_schema_extra={"uniqueItems": True})
    spec: DriftSpec | None = None
    labels: LabelSpec | None = Field(default=None, description="null removes the label spec")
    schedule_seconds: int | None = Field(default=None, ge=MIN_SCHEDULE_SECONDS, le=MAX_SECONDS)
    window_seconds: int | None = Field(default=None, ge=MIN_SCHEDULE_SECONDS, le=MAX_SECONDS)
    enabled: StrictBool | None = None
    webhook_url: str | None = Field(
        default=None, max_length=2048, pattern=r"^(https?://.*)?$", description="Empty string removes it"
    )
    webhook_secret: SecretStr | None = Field(default=None, min_length=16, max_length=255)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return value if value == "" else _webhook_url(value)


class ReferenceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    source: str
    filename: str | None
    rows: int
    columns: list[str]
    created_by: str
    created_at: datetime


class MonitorRead(BaseModel):
    id: int
    name: str
    endpoint: str
    description: str
    split_by: list[str]
    reference_source: str
    reference_window: dict[str, str] | None
    reference_model: str | None = Field(description="source training_data: the version it came from")
    reference_version: int | None
    reference: ReferenceRead | None
    spec: DriftSpec
    labels: LabelSpec | None = None
    features: list[str]
    schedule_seconds: int
    window_seconds: int
    enabled: bool
    webhook_url: str | None
    has_webhook_secret: bool
    status: str = Field(description="ok | drift | no_data | failed, from the latest run")
    status_changed_at: datetime | None
    last_run_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime


class RunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    job_id: int | None
    trigger: str
    window_start: datetime
    window_end: datetime
    group_key: str
    deployment: str | None
    backend: str | None
    arm: str | None
    state: str = Field(description="queued | running | succeeded | no_data | failed")
    rows: int
    status: str | None = Field(description="ok | drift once succeeded")
    alert_rule: str | None = Field(description="which verdict drives the alert: evidently | corrected")
    evidently_drifted: bool | None
    corrected_drifted: bool | None
    drift_share: float | None
    tested_columns: int | None
    drifted_columns: int | None
    message: str | None
    quality: QualityRead | None = Field(
        default=None, description="model quality, when the monitor has labels"
    )
    has_report: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ColumnResultRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    column: str
    kind: str
    status: str
    method: str | None
    score_type: str | None
    score: float | None
    threshold: float | None
    drifted: bool | None
    adjusted_p_value: float | None
    bh_drifted: bool | None
    reference_nulls: int
    null_count: int
    detail: str | None
    histogram: dict[str, list[float] | list[str]] | None


class RunDetail(RunRead):
    columns: list[ColumnResultRead]


class RunQueued(BaseModel):
    job_id: int
    run_id: int
    window_start: datetime
    window_end: datetime
