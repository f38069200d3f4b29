"""Progressive canaries: an endpoint's traffic moves to a candidate step by step, under guardrails.

`start` checks everything before writing (steps, the candidate behind the endpoint and
available, one stable deployment serving it all), records the canary, takes the
endpoint's traffic (`claim_traffic(owner="canary:ID")`: no split, switch or other canary
can change it meanwhile) and queues the `deployer.canary` job. The job sets each step's
weights through `endpoints.set_weights` (history kind "canary"), stores each
deployment's counters at the step's start, and judges the step's deltas
(`guardrails.py`) every tick:

- a breach sets the stable deployment back to 100 %, marks the canary failed with the
  reason (which metric, its value against the threshold), and releases the endpoint, in
  one transaction with the history row;
- a step held long enough (`hold_seconds`, and `hold_requests` candidate requests if set)
  and judged on at least `min_requests` candidate requests moves to the next step; a step
  with too little traffic waits (an unjudged step is not a passed one);
- reaching 100 % succeeds and releases the endpoint. The stable deployment stays warm at 0.

The job runs a slice of ticks (`SLICE_SECONDS`), then queues its own continuation, so it
never holds a worker thread for the whole canary and survives a worker's death (the next
worker resumes from the database). If the job itself fails its last attempt (the database
or the model servers' metrics unreachable for minutes), `on_job_dead` fails the canary and
sets stable back to 100 %: a canary never stays half-way with nobody driving it. Abort is
the breach path by hand. Blue/green stays
`endpoints.switch`: one step.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll import audit
from atoll.auth.policy import Principal
from atoll.db import utcnow
from atoll.deployer import endpoints, guardrails, lifecycle, states
from atoll.deployer.models import Canary, Deployment, Endpoint
from atoll.deployer.traffic_schemas import CanaryRead, CanaryStart, DeploymentReading
from atoll.errors import Conflict, InvalidInput, NotFound
from atoll.jobs import Handler, enqueue

CANARY_JOB = "deployer.canary"
RUNNING, SUCCEEDED, FAILED, ABORTED = "running", "succeeded", "failed", "aborted"
SLICE_SECONDS = 5.0
Scrape = Callable[[str], guardrails.Counters]


def owner_of(canary: Canary) -> str:
    return f"canary:{canary.id}"


def check_steps(steps: list[int]) -> list[int]:
    """Increasing weights in 1..100 that end at 100 (the candidate then serves everything)."""
    shown = ",".join(str(s) for s in steps)
    if not steps:
        raise InvalidInput("steps: give at least one step, e.g. 5,25,50,100", field="steps")
    outside = [s for s in steps if not 1 <= s <= endpoints.TOTAL_WEIGHT]
    if outside:
        raise InvalidInput(
            f"steps: {shown} has {outside[0]}; each step is the candidate's weight, 1 to 100", field="steps"
        )
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise InvalidInput(f"steps: {shown} must increase at every step, e.g. 5,25,50,100", field="steps")
    if steps[-1] != endpoints.TOTAL_WEIGHT:
        raise InvalidInput(
            f"steps: {shown} ends at {steps[-1]}; the last step must be 100 (the candidate serves it all)",
            field="steps",
        )
    return steps


def latest(session: Session, name: str) -> Canary | None:
    endpoint = endpoints.get(session, name)
    return session.scalar(
        select(Canary).where(Canary.endpoint_id == endpoint.id).order_by(Canary.id.desc()).limit(1)
    )


def get_latest(session: Session, name: str) -> Canary:
    found = latest(session, name)
    if found is None:
        raise NotFound(
            f"endpoint {name!r} has had no canary; start one with `atoll canary start {name} --to ...`"
        )
    return found


def _stable(session: Session, name: str, endpoint: Endpoint, candidate: str) -> Deployment:
    routes = endpoints.routes(session, endpoint)
    behind = {d.name: (r, d) for r, d in routes}
    if candidate not in behind:
        listed = ", ".join(sorted(behind)) or "none"
        raise InvalidInput(
            f"to: deployment {candidate!r} is not behind endpoint {name!r} (its deployments: {listed}); "
            f"deploy it with --endpoint {name} --no-switch first",
            field="to",
        )
    deployment = behind[candidate][1]
    if deployment.state != states.AVAILABLE:
        raise Conflict(
            f"to: deployment {candidate!r} is {deployment.state}, not available; start the canary once its "
            "rollout is done",
            field="to",
        )
    serving = [d for r, d in routes if r.weight == endpoints.TOTAL_WEIGHT]
    if not serving:
        split = ", ".join(f"{d.name} {r.weight}%" for r, d in routes)
        raise Conflict(
            f"endpoint {name!r} is split ({split}); a canary starts from one stable deployment "
            "serving 100 %: switch it first",
            field="endpoint",
        )
    if serving[0].name == candidate:
        raise InvalidInput(f"to: {candidate!r} already serves all of endpoint {name!r}", field="to")
    return serving[0]


def start(session: Session, *, actor: Principal | None, name: str, body: CanaryStart) -> Canary:
    steps = check_steps(list(body.steps))
    endpoint = endpoints.get(session, name, lock=True)
    if endpoint.traffic_owner is not None:
        raise Conflict(
            f"endpoint {name!r}'s traffic is controlled by {endpoint.traffic_owner}: one canary or "
            "experiment at a time (atoll canary status / abort)",
            field="endpoint",
            owner=endpoint.traffic_owner,
        )
    stable = _stable(session, name, endpoint, body.to)
    now = utcnow()
    canary = Canary(
        endpoint_id=endpoint.id,
        stable=stable.name,
        candidate=body.to,
        steps=steps,
        hold_seconds=body.hold_seconds,
        hold_requests=body.hold_requests,
        max_error_rate=body.max_error_rate,
        max_p99_ratio=body.max_p99_ratio,
        max_p99_added_ms=body.max_p99_added_ms,
        min_requests=body.min_requests,
        state=RUNNING,
        step_index=-1,
        created_by=endpoints.actor_name(actor),
        created_at=now,
        updated_at=now,
        job_ids=[],
    )
    session.add(canary)
    session.flush()
    endpoints.claim_traffic(session, name=name, owner=owner_of(canary))
    job = _enqueue(session, canary)
    audit.record(
        session,
        actor=actor,
        action="canary.start",
        target_type="endpoint",
        target_id=name,
        summary={
            "canary_id": canary.id,
            "stable": stable.name,
            "candidate": body.to,
            "steps": steps,
            "hold_seconds": body.hold_seconds,
            "hold_requests": body.hold_requests,
            "max_error_rate": body.max_error_rate,
            "max_p99_ratio": body.max_p99_ratio,
            "max_p99_added_ms": body.max_p99_added_ms,
            "min_requests": body.min_requests,
            "job_id": job.id,
            "reason": body.reason,
        },
    )
    session.flush()
    return canary


def _enqueue(session: Session, canary: Canary, *, after: float = 0.0) -> Any:
    job = enqueue(
        session,
        kind=CANARY_JOB,
        payload={"canary_id": canary.id},
        max_attempts=5,
        run_after=utcnow() + timedelta(seconds=after),
    )
    canary.job_ids = [*canary.job_ids, job.id]
    return job


def _finish(
    session: Session,
    canary: Canary,
    *,
    state: str,
    actor: Principal | None,
    reason: str,
    back_to_stable: bool,
) -> None:
    """End the canary: (stable back to 100 %), state, reason, endpoint released; one transaction."""
    endpoint = session.get(Endpoint, canary.endpoint_id)
    assert endpoint is not None
    job_id = canary.job_ids[-1] if canary.job_ids else None
    if back_to_stable:
        try:
            endpoints.set_weights(
                session,
                actor=actor,
                name=endpoint.name,
                to={canary.stable: endpoints.TOTAL_WEIGHT},
                reason=f"canary {canary.id} {state}: {reason}",
                kind="canary",
                job_id=job_id,
                owner=owner_of(canary),
            )
        except Conflict as exc:  # the stable deployment is gone or down: say so, keep the weights
            reason = f"{reason}; the weights were left as they were: {exc.detail}"
    canary.state, canary.reason = state, reason
    canary.finished_at = canary.updated_at = utcnow()
    endpoints.release_traffic(session, name=endpoint.name, owner=owner_of(canary))
    candidate = session.scalar(select(Deployment).where(Deployment.name == canary.candidate))
    if candidate is not None:
        lifecycle.record(
            session,
            candidate,
            f"Canary{state.capitalize()}",
            f"canary {canary.id} on endpoint {endpoint.name}: {reason}",
            warning=state == FAILED,
            actor=endpoints.actor_name(actor),
        )


def abort(session: Session, *, actor: Principal | None, name: str, reason: str) -> Canary:
    canary = latest(session, name)
    if canary is None:
        raise Conflict(f"endpoint {name!r} has no running canary to abort", field="endpoint")
    if canary.state != RUNNING:
        raise Conflict(
            f"canary {canary.id} on endpoint {name!r} is {canary.state}, not running", field="endpoint"
        )
    why = f"aborted by {endpoints.actor_name(actor)}" + (f": {reason}" if reason else "")
    _finish(session, canary, state=ABORTED, actor=actor, reason=why, back_to_stable=True)
    audit.record(
        session,
        actor=actor,
        action="canary.abort",
        target_type="endpoint",
        target_id=name,
        summary={"canary_id": canary.id, "reason": reason, "step": canary.step_index},
    )
    session.flush()
    return canary


# --- the job ---------------------------------------------------------------------------------


def _address(session: Session, deployment_name: str) -> str | None:
    deployment = session.scalar(select(Deployment).where(Deployment.name == deployment_name))
    return deployment.address if deployment is not None else None


def _counters(session: Session, canary: Canary, scrape: Scrape) -> dict[str, guardrails.Counters]:
    """Both deployments' counters now; raises what the scrape raises (the caller records it)."""
    found = {}
    for name in (canary.stable, canary.candidate):
        address = _address(session, name)
        if address is None:
            raise LookupError(f"deployment {name} has no address (not available)")
        found[name] = scrape(address)
    return found


def _enter_step(session: Session, canary: Canary, index: int, scrape: Scrape) -> None:
    weight = canary.steps[index]
    endpoint = session.get(Endpoint, canary.endpoint_id)
    assert endpoint is not None
    try:
        baseline = {name: c.to_json() for name, c in _counters(session, canary, scrape).items()}
    except Exception:  # judged on the absolute counters then (more history, never less)
        baseline = {}
    if weight == endpoints.TOTAL_WEIGHT:
        endpoints.set_weights(
            session,
            actor=None,
            name=endpoint.name,
            to={canary.candidate: weight},
            reason=f"canary {canary.id} succeeded: {canary.candidate} serves 100 %",
            kind="canary",
            job_id=canary.job_ids[-1] if canary.job_ids else None,
            owner=owner_of(canary),
        )
        canary.step_index = index
        passed = len(canary.steps) - 1
        _finish(
            session,
            canary,
            state=SUCCEEDED,
            actor=None,
            reason=f"{passed} step{'s' if passed != 1 else ''} passed the guardrails; "
            f"{canary.candidate} serves 100 %",
            back_to_stable=False,
        )
        return
    endpoints.set_weights(
        session,
        actor=None,
        name=endpoint.name,
        to={canary.candidate: weight, canary.stable: endpoints.TOTAL_WEIGHT - weight},
        reason=f"canary {canary.id}: step {index + 1}/{len(canary.steps)}, {weight} % to {canary.candidate}",
        kind="canary",
        job_id=canary.job_ids[-1] if canary.job_ids else None,
        owner=owner_of(canary),
    )
    canary.step_index, canary.baseline = index, baseline
    canary.step_started_at = canary.updated_at = utcnow()
    canary.reading = {}


def _thresholds(canary: Canary) -> guardrails.Thresholds:
    return guardrails.Thresholds(
        canary.max_error_rate, canary.max_p99_ratio, canary.max_p99_added_ms, canary.min_requests
    )


def tick(session: Session, canary: Canary, scrape: Scrape) -> None:
    """One look at a running canary: start it, judge its step, advance, or roll it back."""
    if canary.step_index < 0:
        _enter_step(session, canary, 0, scrape)
        return
    candidate = session.scalar(select(Deployment).where(Deployment.name == canary.candidate))
    if candidate is None or candidate.state != states.AVAILABLE:
        why = f"the candidate {canary.candidate} is {candidate.state if candidate else 'gone'}"
        _finish(session, canary, state=FAILED, actor=None, reason=why, back_to_stable=True)
        return
    try:
        now = _counters(session, canary, scrape)
    except Exception as exc:
        canary.reading = {**canary.reading, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        return
    base = {name: guardrails.Counters.from_json(data) for name, data in canary.baseline.items()}
    stable = guardrails.Reading.of(guardrails.delta(now[canary.stable], base.get(canary.stable)))
    cand = guardrails.Reading.of(guardrails.delta(now[canary.candidate], base.get(canary.candidate)))
    verdict = guardrails.judge(cand, stable, _thresholds(canary))
    canary.reading = {"stable": stable.to_json(), "candidate": cand.to_json(), "judged": verdict.judged}
    canary.updated_at = utcnow()
    weight = canary.steps[canary.step_index]
    if verdict.breach is not None:
        reason = f"step {canary.step_index + 1} ({weight} % to {canary.candidate}): {verdict.breach}"
        _finish(session, canary, state=FAILED, actor=None, reason=reason, back_to_stable=True)
        return
    started = canary.step_started_at or canary.updated_at
    held = (utcnow() - started).total_seconds() >= canary.hold_seconds
    enough = canary.hold_requests is None or cand.requests >= canary.hold_requests
    if held and enough and verdict.judged:
        _enter_step(session, canary, canary.step_index + 1, scrape)


def poll_seconds(canary: Canary) -> float:
    """Ticks a few times per hold, between 0.25 s and 2 s."""
    return min(max(canary.hold_seconds / 8.0, 0.25), 2.0)


def run_canary(
    session: Session,
    payload: dict[str, Any],
    *,
    scrape: Scrape = guardrails.scrape,
    slice_seconds: float = SLICE_SECONDS,
) -> dict[str, Any]:
    canary_id = int(payload["canary_id"])
    slice_end = time.monotonic() + slice_seconds
    while True:
        canary = session.get(Canary, canary_id, populate_existing=True)
        if canary is None:
            return {"skipped": f"canary {canary_id} no longer exists"}
        if canary.state != RUNNING:
            result = {"canary_id": canary_id, "state": canary.state, "reason": canary.reason}
            session.commit()
            return result
        tick(session, canary, scrape)
        state, step, pause = canary.state, canary.step_index, poll_seconds(canary)
        if state == RUNNING and time.monotonic() + pause > slice_end:
            job = _enqueue(session, canary, after=pause)
            session.commit()
            return {"canary_id": canary_id, "state": state, "step": step, "continued_by": job.id}
        session.commit()  # never hold SQLite's write lock while waiting
        if state != RUNNING:
            continue
        time.sleep(pause)


def handler() -> Handler:
    def run(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        return run_canary(session, payload)

    return run


def on_job_dead(session: Session, payload: dict[str, Any], error: str) -> None:
    """The worker gave up on the canary's job: fail it and send everything back to stable."""
    canary = session.get(Canary, int(payload["canary_id"]))
    if canary is None or canary.state != RUNNING:
        return
    reason = f"its job failed its last attempt ({error}); nobody was left to judge the steps"
    _finish(session, canary, state=FAILED, actor=None, reason=reason, back_to_stable=True)


# --- reading ---------------------------------------------------------------------------------


def _reading(data: Any) -> DeploymentReading | None:
    return DeploymentReading.model_validate(data) if isinstance(data, dict) else None


def read(session: Session, canary: Canary) -> CanaryRead:
    endpoint = session.get(Endpoint, canary.endpoint_id)
    assert endpoint is not None
    weight = canary.steps[canary.step_index] if canary.step_index >= 0 else 0
    if canary.state in (FAILED, ABORTED):
        weight = endpoints.weights(session, endpoint).get(canary.candidate, 0)
    reading = canary.reading or {}
    return CanaryRead.model_validate(
        {
            "id": canary.id,
            "endpoint": endpoint.name,
            "stable": canary.stable,
            "candidate": canary.candidate,
            "state": canary.state,
            "steps": canary.steps,
            "step": canary.step_index,
            "weight": weight,
            "hold_seconds": canary.hold_seconds,
            "hold_requests": canary.hold_requests,
            "max_error_rate": canary.max_error_rate,
            "max_p99_ratio": canary.max_p99_ratio,
            "max_p99_added_ms": canary.max_p99_added_ms,
            "min_requests": canary.min_requests,
            "step_started_at": canary.step_started_at,
            "stable_reading": _reading(reading.get("stable")),
            "candidate_reading": _reading(reading.get("candidate")),
            "judged": bool(reading.get("judged")),
            "reading_error": reading.get("error"),
            "reason": canary.reason,
            "job_ids": canary.job_ids,
            "created_by": canary.created_by,
            "created_at": canary.created_at,
            "updated_at": canary.updated_at,
            "finished_at": canary.finished_at,
        }
    )
