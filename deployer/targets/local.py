"""The `local` target: each deployment is an `atoll serve` process on a loopback port.

This object only reads and writes files under `<data_dir>/local-target/` (see
`localfiles.py`), so any process of the platform (the API, a worker) can use it; the
supervisor (`supervisor.py`, inside `atoll up`) runs the processes those files ask for.
Without a live supervisor `check()` says so, and a rollout waits with that reason.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from atoll.deployer import local_server
from atoll.deployer.specs import require_deployment_name
from atoll.deployer.targets.base import (
    AppliedObject,
    ApplyResult,
    DeletedObject,
    InvalidManifest,
    Manifest,
    ObjectDiff,
    PodLog,
    PodState,
    RollbackResult,
    RolloutPhase,
    RolloutStatus,
    TargetEvent,
    TargetHealth,
)
from atoll.deployer.targets.diff import object_diff
from atoll.deployer.targets.localfiles import (
    Layout,
    ServerState,
    is_model_server_of,
    pid_alive,
    read_json,
    write_json,
)
from atoll.deployer.targets.localfiles import tail as read_tail
from atoll.errors import Conflict, NotFound
from atoll.settings import Settings

NO_SUPERVISOR = "NoSupervisor"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


class LocalTarget:
    def __init__(self, data_dir: Path) -> None:
        self.layout = Layout(data_dir)
        self.where = f"the local target ({self.layout.root})"

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalTarget:
        return cls(settings.data_dir)

    def _no_supervisor(self) -> str:
        return (
            f"no local supervisor is running for {self.layout.root}: it runs inside `atoll up` "
            "(start it there, or deploy with --target kubernetes)"
        )

    def check(self) -> TargetHealth:
        try:
            self.layout.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return TargetHealth(False, f"cannot write {self.layout.root}: {exc}")
        if not os.access(self.layout.root, os.W_OK):
            return TargetHealth(False, f"cannot write {self.layout.root}")
        if not self.layout.supervisor_alive():
            return TargetHealth(False, self._no_supervisor())
        return TargetHealth(True)

    # -- desired state ----------------------------------------------------------------------

    def _parse(self, obj: Manifest) -> local_server.LocalServerSpec:
        try:
            return local_server.parse(obj)
        except ValueError as exc:
            raise InvalidManifest(f"{self.where} refused {obj.get('kind')!r}: {exc}") from None

    def _desired(self, name: str) -> dict[str, Any] | None:
        return read_json(self.layout.desired(name))

    def preview(self, objects: list[Manifest]) -> list[ObjectDiff]:
        diffs = []
        for obj in objects:
            spec = self._parse(obj)
            current = self._desired(spec.name)
            diffs.append(object_diff(current["object"] if current else None, obj))
        return diffs

    def apply(self, objects: list[Manifest], *, force_conflicts: bool = False) -> ApplyResult:
        """Record each object as desired; a changed one gets the next generation (a new process).

        Nothing else writes these files, so there are no field conflicts to force.
        """
        specs = [self._parse(obj) for obj in objects]  # all valid before any is written
        applied = []
        for spec, obj in zip(specs, objects, strict=True):
            current = self._desired(spec.name)
            action: Literal["created", "changed", "unchanged"]
            if current is not None and current.get("object") == obj:
                action, generation = "unchanged", int(current["generation"])
            else:
                action = "created" if current is None else "changed"
                generation = int(current["generation"]) + 1 if current else 1
                write_json(
                    self.layout.desired(spec.name),
                    {
                        "generation": generation,
                        "object": obj,
                        "previous": current["object"] if current else None,
                        "applied_at": time.time(),
                    },
                )
            applied.append(AppliedObject(local_server.KIND, spec.name, action, str(generation)))
        return ApplyResult(applied)

    # -- what runs --------------------------------------------------------------------------

    def status(self, name: str) -> RolloutStatus:
        require_deployment_name(name)
        desired = self._desired(name)
        if desired is None:
            raise NotFound(f"deployment {name!r} is not on {self.where}")
        generation = int(desired["generation"])
        state = self.layout.read_state(name)
        supervised = self.layout.supervisor_alive()
        phase, reason, message = self._phase(name, state, generation, supervised)
        current = state is not None and state.generation == generation
        ready = phase == "available"
        pods = []
        if state is not None and state.started_at is not None:  # like a pod, it stays listed between runs
            running = state.pid is not None and pid_alive(state.pid)
            pods.append(
                PodState(
                    name=f"{name} (pid {state.pid})" if running else f"{name} (not running)",
                    phase="Running" if running else "Failed",
                    ready=ready,
                    node=f"127.0.0.1:{state.port}",
                    restarts=state.restarts,
                    reason=state.reason,
                    message=state.message,
                )
            )
        events = [
            TargetEvent(e.type, e.reason, e.message, f"{local_server.KIND}/{name}", e.count, _iso(e.at))
            for e in (state.events if state else [])
        ]
        return RolloutStatus(
            name=name,
            phase=phase,
            reason=reason,
            message=message,
            desired_replicas=1,
            ready_replicas=1 if ready else 0,
            updated_replicas=1 if current and state is not None and state.pid else 0,
            revision=generation,
            events=events,
            pods=pods,
            address=f"http://127.0.0.1:{state.port}" if ready and state is not None else None,
        )

    def _phase(
        self, name: str, state: ServerState | None, generation: int, supervised: bool
    ) -> tuple[RolloutPhase, str | None, str | None]:
        if state is None or state.generation != generation or state.phase == "stopped":
            if not supervised:
                return "progressing", NO_SUPERVISOR, self._no_supervisor()
            return "progressing", None, "waiting for the local supervisor to start the model server"
        if state.phase == "ready":
            if state.pid and pid_alive(state.pid) and is_model_server_of(state.pid, name):
                return "available", None, None
            if not supervised:
                return "progressing", NO_SUPERVISOR, self._no_supervisor()
            return "progressing", "NotRunning", f"the recorded server (pid {state.pid}) is not running"
        if state.phase == "crashloop":
            return "failed", state.reason or "CrashLoopBackOff", state.message
        if state.phase == "failed":
            return "failed", state.reason, state.message
        if not supervised:
            return "progressing", NO_SUPERVISOR, self._no_supervisor()
        return "progressing", state.reason, state.message

    def rollback(self, name: str) -> RollbackResult:
        """Back to the object applied before the current one (the service keeps full history)."""
        require_deployment_name(name)
        desired = self._desired(name)
        if desired is None:
            raise NotFound(f"deployment {name!r} is not on {self.where}")
        if not desired.get("previous"):
            raise Conflict(f"deployment {name!r} has no earlier object to roll back to")
        generation = int(desired["generation"])
        result = self.apply([desired["previous"]])
        return RollbackResult(name, generation, generation - 1, result.objects[0].resource_version)

    def delete(self, name: str) -> list[DeletedObject]:
        """Forget the deployment: the supervisor stops its process and removes its files.

        Without a supervisor (the platform is down) the recorded process is stopped here.
        """
        require_deployment_name(name)
        if not self.layout.desired(name).exists():
            return []
        self.layout.desired(name).unlink(missing_ok=True)
        if not self.layout.supervisor_alive():
            state = self.layout.read_state(name)
            pid = state.pid if state is not None else None
            if pid and pid_alive(pid) and is_model_server_of(pid, name):
                os.kill(pid, signal.SIGTERM)
        return [DeletedObject(local_server.KIND, name)]

    def logs(self, name: str, tail: int = 200) -> list[PodLog]:
        require_deployment_name(name)
        if not self.layout.desired(name).exists():
            raise NotFound(f"deployment {name!r} is not on {self.where}")
        state = self.layout.read_state(name)
        pod = f"{name} (pid {state.pid})" if state and state.pid else name
        path = self.layout.log(name)
        if not path.exists():
            return [PodLog(pod, "", error="the model server has not written a log yet")]
        return [PodLog(pod, read_tail(path, tail))]
