"""Deployer API shapes: requests, and what a page, the CLI's `--json` or a script reads."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from atoll.deployer.targets.base import ObjectDiff, PodLog, RolloutStatus
from atoll.deployer.targets.select import TargetKind


class DeployRequest(BaseModel):
    """Deploy a version's build for one backend (and put it behind an endpoint)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    version: int | None = Field(
        default=None, ge=1, description="The version; leave it out to serve what `follow` points to"
    )
    backend: str = Field(min_length=1, max_length=32)
    follow: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="Follow an alias (ALIAS or MODEL@ALIAS): the deployment serves the version the alias "
        "points to and rolls when it moves (the endpoint's settings.on_alias_move: switch or canary)",
    )
    endpoint: str | None = Field(
        default=None, description="Endpoint (DNS-1123 label) to serve it; created if new"
    )
    name: str | None = Field(
        default=None,
        description="Deployment name (DNS-1123); default MODEL-vVERSION-BACKEND. An existing "
        "deployment of that name gets a new revision (a rolling update)",
    )
    target: TargetKind | None = Field(default=None, description="Default: the platform's deploy_target")
    replicas: int = Field(default=1, ge=1, le=1000)
    max_replicas: int | None = Field(
        default=None, ge=1, le=1000, description="Kubernetes: autoscale between replicas and this"
    )
    build_id: int | None = Field(default=None, ge=1, description="Default: the newest build of the backend")
    switch: bool = Field(default=True, description="Make the endpoint serve it once it is available")
    dry_run: bool = Field(default=False, description="Only preview: what the target would apply")
    fault_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="TEST FAULT: the model server answers this share of predictions with 500 (for "
        "canary rollback tests; never in production)",
    )
    reason: str = Field(default="", max_length=2000)


class DeploymentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    model_name: str
    version: int
    backend: str
    build_id: int
    target: str
    replicas: int
    endpoint: str | None = None
    weight: int | None = Field(default=None, description="Its share of the endpoint's traffic, in percent")
    follow: str | None = Field(default=None, description="The alias it follows (MODEL@ALIAS), if any")
    state: str
    reason: str | None
    message: str | None
    revision: int
    address: str | None = Field(description="Where the router forwards the endpoint's traffic")
    switch_on_ready: bool
    rollout_job_id: int | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    available_at: datetime | None
    undeployed_at: datetime | None


class PreviewRead(BaseModel):
    """What deploying would do, from the target's own dry run: nothing is written."""

    deployment: str
    target: str
    revision: int = Field(description="The revision this would be")
    build_id: int
    objects: list[ObjectDiff]


class DeploymentStatusRead(BaseModel):
    deployment: DeploymentRead
    rollout: RolloutStatus | None = Field(description="What the target reports now (None: unknown)")
    target_error: str | None = Field(default=None, description="Why the target could not be asked")


class EventRead(BaseModel):
    at: datetime | None
    source: Literal["atoll", "target"]
    type: str
    reason: str
    message: str
    object: str | None = None
    count: int = 1
    revision: int | None = None
    actor: str | None = None


class EventsRead(BaseModel):
    events: list[EventRead]
    target_error: str | None = None


class LogsRead(BaseModel):
    deployment: str
    logs: list[PodLog]


class RevisionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    revision: int
    build_id: int
    version: int
    replicas: int
    cause: str
    created_by: str
    created_at: datetime
    current: bool = False


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)


class TargetHealthRead(BaseModel):
    name: TargetKind
    default: bool
    reachable: bool
    reason: str | None


UNIT_HEADER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$"
UNIT_FIELD_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}(\.[A-Za-z_][A-Za-z0-9_-]{0,63}){0,7}$"
ON_ALIAS_MOVE_PATTERN = r"^(switch|canary)$"


class EndpointSettings(BaseModel):
    """What the router reads from an endpoint's settings; null (or absent) means the default."""

    model_config = ConfigDict(extra="forbid")

    unit_header: str | None = Field(
        default=None,
        pattern=UNIT_HEADER_PATTERN,
        description="The header carrying a request's unit key (default X-Atoll-Unit)",
        examples=["X-Customer-Id"],
    )
    unit_field: str | None = Field(
        default=None,
        pattern=UNIT_FIELD_PATTERN,
        description="A JSON body field holding the unit key, a dotted path (customer.id); in an OIP v2 "
        "body, the input tensor (first value) or request parameter of that name",
        examples=["customer.id"],
    )
    on_alias_move: str | None = Field(
        default=None,
        pattern=ON_ALIAS_MOVE_PATTERN,
        description="How deployments that follow an alias roll when it moves: switch (default) or canary",
        examples=["canary"],
    )


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=63)
    description: str = Field(default="", max_length=2000)
    settings: EndpointSettings = Field(default_factory=EndpointSettings)


class RouteRead(BaseModel):
    deployment: str
    weight: int
    state: str
    model_name: str
    version: int
    backend: str
    target: str


class EndpointRead(BaseModel):
    name: str
    description: str
    settings: dict[str, Any]
    url: str = Field(description="The stable URL callers use")
    active: str | None = Field(description="The deployment serving all traffic, if any")
    routes: list[RouteRead]
    split_salt: str = Field(description="Seeds sticky assignment of units to deployments")
    traffic_owner: str | None = Field(
        description="Who controls the split now (a canary or an experiment); only it may change weights"
    )
    created_by: str
    created_at: datetime
    updated_at: datetime


class SwitchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=63, description="The deployment to serve all traffic")
    reason: str = Field(default="", max_length=2000)


class EndpointChangeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    kind: str
    split_salt: str | None
    from_weights: dict[str, int]
    to_weights: dict[str, int]
    actor: str
    reason: str
    job_id: int | None


class UndeployRead(BaseModel):
    deployment: DeploymentRead
    deleted: list[str] = Field(description="What the target deleted, as kind/name")


class SplitRequest(BaseModel):
    """An endpoint's weights at once, in percent summing to 100; deployments left out get 0."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, Annotated[int, Field(ge=0, le=100)]] = Field(
        min_length=1,
        description="Deployment name → percent of the traffic (integers 0..100 summing to 100)",
        examples=[{"scoring-v1-cpu": 90, "scoring-v2-cpu": 10}],
    )
    reason: str = Field(default="", max_length=2000)


class EndpointUpdate(BaseModel):
    """Change an endpoint's description or settings; a setting given as null goes back to its default."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=2000)
    settings: EndpointSettings | None = Field(
        default=None,
        description="Merged into the endpoint's settings: the keys given change, a null puts one back "
        "to its default, the keys left out stay",
        examples=[{"unit_field": "customer.id"}],
    )
    reason: str = Field(default="", max_length=2000)


class ServedRouteRead(BaseModel):
    deployment: str
    weight: int
    model_name: str | None = Field(description="None when the deployment's record is gone")
    version: int | None
    backend: str | None
    build_id: int | None
    revision: int | None = Field(description="The deployment's revision in force at that time")


class ServedAtRead(BaseModel):
    """What served an endpoint's traffic at one moment, from its history and the deployments' revisions."""

    endpoint: str
    at: datetime
    change_at: datetime | None = Field(description="When the split in force then was set (None: none yet)")
    change_kind: str | None
    split_salt: str | None
    routes: list[ServedRouteRead] = Field(description="Every deployment behind it then, by weight")
