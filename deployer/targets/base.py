"""The deployment target interface: what the deployment service asks of `kubernetes` and `local`.

Plain types only (no kubernetes import): objects are the dicts `atoll.deployer.manifests`
renders, results are frozen dataclasses a web page or `--json` prints as they are.
Errors are `atoll.errors` types, so the web layer turns them into problem+json unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from atoll.errors import Conflict, InvalidInput, Unavailable

Manifest = dict[str, Any]
RolloutPhase = Literal["progressing", "available", "failed"]


class TargetUnavailable(Unavailable):
    """The target cannot be reached or refuses us (503); the detail names the context or server."""


class InvalidManifest(InvalidInput):
    """The target refused an object as invalid (422); `causes` lists each field and what is wrong."""


@dataclass(frozen=True)
class FieldConflict:
    manager: str  # the field manager that owns the field, e.g. "kubectl-edit"
    field: str  # the field's path, e.g. ".spec.replicas"


class ApplyConflict(Conflict):
    """Another field manager owns fields Atoll would change (409); `conflicts` says which."""

    def __init__(self, detail: str, *, conflicts: list[FieldConflict], **extra: Any) -> None:
        super().__init__(detail, conflicts=[f"{c.field} (owned by {c.manager})" for c in conflicts], **extra)
        self.conflicts = conflicts


@dataclass(frozen=True)
class TargetHealth:
    reachable: bool
    reason: str | None = None  # why not, naming the context or server


@dataclass(frozen=True)
class ObjectDiff:
    """What applying one object would do, from a server-side dry run against what is live."""

    kind: str
    name: str
    action: Literal["create", "change", "unchanged"]
    diff: str  # unified diff of the live object (or nothing) against the would-be one, as YAML


@dataclass(frozen=True)
class AppliedObject:
    kind: str
    name: str
    action: Literal["created", "changed", "unchanged"]
    resource_version: str


@dataclass(frozen=True)
class ApplyResult:
    objects: list[AppliedObject]

    @property
    def changed(self) -> bool:
        return any(o.action != "unchanged" for o in self.objects)


@dataclass(frozen=True)
class PodState:
    name: str
    phase: str  # Pending, Running, Succeeded, Failed, Unknown
    ready: bool
    node: str | None
    restarts: int
    reason: str | None = None  # e.g. CrashLoopBackOff, Unschedulable
    message: str | None = None


@dataclass(frozen=True)
class TargetEvent:
    type: str  # Normal or Warning
    reason: str
    message: str
    object: str  # kind/name
    count: int
    last_seen: str | None  # RFC 3339, as the target reported it


@dataclass(frozen=True)
class RolloutStatus:
    """Where a rollout stands; `reason`/`message` say why it is not available yet, or failed."""

    name: str
    phase: RolloutPhase
    reason: str | None
    message: str | None
    desired_replicas: int
    ready_replicas: int
    updated_replicas: int
    revision: int | None
    events: list[TargetEvent] = field(default_factory=list)
    pods: list[PodState] = field(default_factory=list)
    # Where the model server answers, when the target knows it better than the spec does
    # (local: `http://127.0.0.1:<port>` of the running process). None: the service derives
    # it from the spec (kubernetes: the Service's cluster DNS name).
    address: str | None = None


@dataclass(frozen=True)
class RollbackResult:
    name: str
    from_revision: int
    to_revision: int  # the revision rolled back to; the controller records it as a new one
    resource_version: str


@dataclass(frozen=True)
class DeletedObject:
    kind: str
    name: str


@dataclass(frozen=True)
class PodLog:
    pod: str
    text: str
    error: str | None = None  # why this pod's log could not be read (the others still are)


class DeploymentTarget(Protocol):
    """Where deployments run. Every method may raise `TargetUnavailable`."""

    def check(self) -> TargetHealth:
        """Whether the target answers and lets us work; never raises."""
        ...

    def preview(self, objects: list[Manifest]) -> list[ObjectDiff]:
        """What `apply` would do, computed by the target itself without persisting anything."""
        ...

    def apply(self, objects: list[Manifest], *, force_conflicts: bool = False) -> ApplyResult:
        """Make the objects so; applying the same objects twice changes nothing.

        `force_conflicts` takes back fields someone else changed (the reconcile job's repair
        of drift); without it such a change is an `ApplyConflict` naming who made it.
        """
        ...

    def status(self, name: str) -> RolloutStatus:
        """The rollout of deployment `name` (`atoll.errors.NotFound` when there is none)."""
        ...

    def rollback(self, name: str) -> RollbackResult:
        """Back to the previous revision's pod template (`Conflict` when there is none)."""
        ...

    def delete(self, name: str) -> list[DeletedObject]:
        """Delete everything applied for deployment `name`, and nothing else."""
        ...

    def logs(self, name: str, tail: int = 200) -> list[PodLog]:
        """The last `tail` lines of each pod's model server."""
        ...
