"""Build API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class BuildRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    model_name: str
    version: int
    backend: str
    status: str
    format: str | None
    precision: str | None
    provider: str | None
    emulated: bool
    note: str
    artifact_uri: str | None = Field(description="Local build directory (model.onnx + build.json)")
    mlflow_artifact_uri: str | None = Field(description="The same files on the version's MLflow run")
    parity: dict[str, Any] | None
    latency: dict[str, Any] | None
    error: str | None
    job_id: int | None
    requested_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class BuildsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backends: list[str] | None = Field(default=None, description="Backends to (re)build; default: all")
