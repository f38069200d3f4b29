"""Registry API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ModelSummary(BaseModel):
    name: str
    description: str
    team: str | None
    tags: dict[str, str]
    aliases: dict[str, int]
    latest_version: int
    version_count: int
    updated_at: datetime


class VersionRead(BaseModel):
    model_name: str
    version: int
    source: str
    run_id: str | None
    status: str
    description: str
    tags: dict[str, str]
    aliases: list[str]
    lineage: dict[str, str]
    created_at: datetime


class RegisterVersion(BaseModel):
    """Register a version from a run (`run_id`) or any model URI MLflow accepts."""

    model_config = ConfigDict(extra="forbid")

    model_uri: str | None = Field(default=None, examples=["runs:/4f1c.../model"])
    run_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    artifact_path: str = Field(default="model", description="With run_id: the model's path in the run")
    description: str = Field(default="", max_length=5000)
    tags: dict[str, str] = Field(default_factory=dict)
    team: str | None = Field(default=None, description="Owning team, set on a new model")
    lineage: dict[str, str] = Field(
        default_factory=dict,
        description="git_commit, git_branch, repository, ci_build_url, ci_provider, training_data",
    )

    @model_validator(mode="after")
    def _one_source(self) -> RegisterVersion:
        if (self.model_uri is None) == (self.run_id is None):
            raise ValueError("give exactly one of model_uri or run_id")
        return self

    @property
    def source_uri(self) -> str:
        return self.model_uri or f"runs:/{self.run_id}/{self.artifact_path.strip('/')}"


class TagsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    set: dict[str, str] = Field(default_factory=dict)
    description: str | None = Field(default=None, max_length=5000)


class AliasSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)


class EvidenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["ab_verdict", "drift", "approval", "evaluation"]
    status: str = Field(
        min_length=1,
        max_length=32,
        description="ab_verdict: won|non_inferior|lost|inconclusive; drift: ok|alert; "
        "approval: approved; evaluation: passed|failed",
    )
    summary: dict[str, Any] = Field(default_factory=dict)
    source: str | None = Field(default=None, max_length=255, examples=["experiment:homepage-ranker"])


class EvidenceRead(EvidenceIn):
    model_config = ConfigDict(from_attributes=True)

    id: int
    model_name: str
    version: int
    recorded_by: str
    at: datetime


class GateResult(BaseModel):
    gate: str
    passed: bool
    reason: str


class Gates(BaseModel):
    """What a promotion to one alias of one model requires. Every field is optional."""

    model_config = ConfigDict(extra="forbid")

    required_role: Literal["engineer", "approver", "admin"] | None = Field(
        default=None,
        description="Unset: the alias's built-in role (approver for production, else engineer)",
    )
    builds: list[str] = Field(default_factory=list, description="Backends that need a successful build")
    metrics: list[MetricGate] = Field(default_factory=list)
    ab_evidence: bool = Field(default=False, description="A concluded A/B where it won or was non-inferior")
    no_drift_alert: bool = False
    second_approver: bool = False


class MetricGate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    op: Literal[">=", ">", "<=", "<"] = ">="
    threshold: float


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protected: bool = False
    gates: Gates = Field(default_factory=Gates)


class PolicyRead(PolicyIn):
    model_name: str
    alias: str
    source: Literal["model", "default", "built-in"]


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    reason: str = Field(default="", max_length=2000)
    force: bool = Field(default=False, description="Admin only: move despite failed gates (audited)")


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)
    force: bool = False


class PromotionResult(BaseModel):
    model_name: str
    alias: str
    from_version: int | None
    to_version: int
    promoted: bool
    forced: bool
    gates: list[GateResult]


class AliasMoveRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    model_name: str
    alias: str
    from_version: int | None
    to_version: int | None
    kind: str
    forced: bool
    actor: str
    reason: str
    gates: list[dict[str, Any]]
    at: datetime


class SyncResult(BaseModel):
    models: int
    versions: int
    removed_models: int
    builds_queued: int = Field(description="Versions found first by this sync whose builds it queued")
    seconds: float


class SignatureField(BaseModel):
    """One input or output of a version's MLflow signature: a column, or a tensor (`spec`)."""

    name: str
    type: str
    spec: str = Field(default="", description="A tensor's dtype and shape as JSON; empty for a column")


class VersionDetails(BaseModel):
    """What a version's MLmodel file says: its flavors and its signature."""

    flavors: list[str]
    has_signature: bool
    inputs: list[SignatureField]
    outputs: list[SignatureField]


Gates.model_rebuild()
