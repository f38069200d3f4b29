"""Where a rollout stands, from the Deployment, its pods and their events as plain dicts. Pure.

The rules are `kubectl rollout status`'s (observed generation, updated, available
replicas, the Progressing condition's ProgressDeadlineExceeded) plus what a person asks
next: a pod that cannot be scheduled (the scheduler's own sentence) and a container that
crash-loops or cannot pull its image, found on the pods of the current revision.
"""

from __future__ import annotations

from typing import Any

from atoll.deployer.targets.base import PodState, RolloutPhase, RolloutStatus, TargetEvent

# Waiting reasons that do not heal by waiting: the rollout has failed until someone acts.
FAILING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
MAX_EVENTS = 20


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions") or []}


def pod_state(pod: dict[str, Any]) -> PodState:
    status = pod.get("status", {})
    containers = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    reason = message = None
    for container in containers:
        waiting = container.get("state", {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "PodInitializing", "ContainerCreating"):
            reason, message = waiting["reason"], waiting.get("message")
            last = container.get("lastState", {}).get("terminated")
            if last:
                message = f"{container['name']} exited with code {last.get('exitCode')}: " + (
                    last.get("message") or last.get("reason") or message or ""
                )
            break
    scheduled = _conditions(pod).get("PodScheduled", {})
    if reason is None and scheduled.get("status") == "False":
        reason, message = scheduled.get("reason"), scheduled.get("message")
    return PodState(
        name=pod["metadata"]["name"],
        phase=status.get("phase", "Unknown"),
        ready=_conditions(pod).get("Ready", {}).get("status") == "True",
        node=pod.get("spec", {}).get("nodeName"),
        restarts=sum(int(c.get("restartCount", 0)) for c in containers),
        reason=reason,
        message=message,
    )


def target_event(event: dict[str, Any]) -> TargetEvent:
    involved = event.get("involvedObject", {})
    last_seen = (
        event.get("lastTimestamp") or event.get("eventTime") or event["metadata"].get("creationTimestamp")
    )
    return TargetEvent(
        type=event.get("type", "Normal"),
        reason=event.get("reason", ""),
        message=(event.get("message") or "").strip(),
        object=f"{involved.get('kind', '?')}/{involved.get('name', '?')}",
        count=int(event.get("count") or (event.get("series") or {}).get("count") or 1),
        last_seen=str(last_seen) if last_seen else None,
    )


def _latest_scheduling_failure(events: list[TargetEvent]) -> str | None:
    failures = [e for e in events if e.reason == "FailedScheduling"]
    return failures[-1].message if failures else None


def classify(
    deployment: dict[str, Any],
    pods: list[dict[str, Any]],
    events: list[dict[str, Any]],
    current_pod_hash: str | None = None,
) -> RolloutStatus:
    """The rollout status. `current_pod_hash` (the newest ReplicaSet's pod-template-hash) limits
    failure detection to pods of the revision being rolled out; old pods only show in `pods`."""
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    desired = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    states = [pod_state(p) for p in pods]
    current = [
        s
        for s, p in zip(states, pods, strict=True)
        if current_pod_hash is None
        or p["metadata"].get("labels", {}).get("pod-template-hash") == current_pod_hash
    ]
    timeline = sorted((target_event(e) for e in events), key=lambda e: e.last_seen or "")
    revision = deployment["metadata"].get("annotations", {}).get(REVISION_ANNOTATION)

    phase, reason, message = _phase(deployment, desired, updated, available, current, timeline)
    return RolloutStatus(
        name=deployment["metadata"]["name"],
        phase=phase,
        reason=reason,
        message=message,
        desired_replicas=desired,
        ready_replicas=int(status.get("readyReplicas", 0)),
        updated_replicas=updated,
        revision=int(revision) if revision else None,
        events=timeline[-MAX_EVENTS:],
        pods=states,
    )


def _phase(
    deployment: dict[str, Any],
    desired: int,
    updated: int,
    available: int,
    current: list[PodState],
    timeline: list[TargetEvent],
) -> tuple[RolloutPhase, str | None, str | None]:
    progressing = _conditions(deployment).get("Progressing", {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        stuck = next((p for p in current if p.reason), None)
        detail = f" ({stuck.name}: {stuck.reason}: {stuck.message})" if stuck else ""
        return "failed", "ProgressDeadlineExceeded", f"{progressing.get('message', '')}{detail}"
    failing = next((p for p in current if p.reason in FAILING_REASONS), None)
    if failing:
        return "failed", failing.reason, f"{failing.name}: {failing.message or failing.reason}"
    unschedulable = next((p for p in current if p.phase == "Pending" and p.reason == "Unschedulable"), None)
    if unschedulable:
        why = unschedulable.message or _latest_scheduling_failure(timeline) or "no node fits the pod"
        return "progressing", "Pending", f"{unschedulable.name} cannot be scheduled: {why}"
    generation = int(deployment["metadata"].get("generation", 0))
    observed = int(deployment.get("status", {}).get("observedGeneration", 0))
    if observed < generation:
        return "progressing", None, "waiting for the deployment controller to see the new spec"
    if updated < desired:
        return "progressing", None, f"{updated} of {desired} replicas updated"
    total = int(deployment.get("status", {}).get("replicas", 0))
    if total > updated:
        return "progressing", None, f"{total - updated} old replicas are pending termination"
    if available < updated:
        return "progressing", None, f"{available} of {updated} updated replicas are available"
    return "available", None, None
