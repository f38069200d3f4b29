"""Start and stop an experiment: the endpoint's split changes with it, in one transaction.

draft → running (start) → stopped (stop) → concluded (``conclusion.conclude``). Starting
claims the endpoint's traffic for ``experiment:KEY`` (409 while a canary or another
experiment holds it), remembers the weights and salt it found, and sets the arms' weights
with the experiment's own salt; stopping puts both back and releases the endpoint. Each
is a change in the endpoint's history (kind ``experiment``) plus an audit row; any refusal
raises before the caller commits, so nothing is half-applied.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll import audit
from atoll.abtest import service
from atoll.abtest.models import DRAFT, RUNNING, STOPPED, Experiment
from atoll.auth.policy import Principal
from atoll.db import utcnow
from atoll.deployer import endpoints, states
from atoll.errors import Conflict, InvalidInput

CHANGE_KIND = "experiment"


def _expect(experiment: Experiment, *wanted: str, doing: str) -> None:
    if experiment.state not in wanted:
        raise Conflict(
            f"experiment {experiment.key!r} is {experiment.state}; only a {' or '.join(wanted)} one can be "
            f"{doing}",
            field="state",
            state=experiment.state,
        )


def start(session: Session, *, actor: Principal | None, key: str) -> Experiment:
    experiment = service.get(session, key, lock=True)
    _expect(experiment, DRAFT, doing="started")
    running = session.scalar(
        select(Experiment.key).where(Experiment.endpoint == experiment.endpoint, Experiment.state == RUNNING)
    )
    if running is not None:
        raise Conflict(
            f"experiment {running!r} is already running on endpoint {experiment.endpoint!r}; stop it first "
            f"(atoll ab stop {running})",
            field="endpoint",
            owner=f"experiment:{running}",
        )
    endpoint = endpoints.claim_traffic(session, name=experiment.endpoint, owner=experiment.owner)
    experiment.previous_weights = endpoints.weights(session, endpoint)
    experiment.previous_salt = endpoint.split_salt
    endpoints.set_weights(
        session,
        actor=actor,
        name=experiment.endpoint,
        to=service.arm_weights(experiment),
        reason=f"experiment {key} started",
        kind=CHANGE_KIND,
        owner=experiment.owner,
        salt=experiment.salt,
    )
    now = utcnow()
    experiment.state = RUNNING
    experiment.started_at = now
    experiment.started_by = endpoints.actor_name(actor)
    experiment.reallocated_at = now
    audit.record(
        session,
        actor=actor,
        action="experiment.start",
        target_type="experiment",
        target_id=key,
        summary={"endpoint": experiment.endpoint, "weights": service.arm_weights(experiment)},
    )
    return experiment


def restorable_weights(session: Session, experiment: Experiment) -> tuple[dict[str, int], str]:
    """The weights to put back: the ones found at start, else all to the control.

    The ones found at start may no longer apply (a deployment undeployed or not available
    since); then the control, which served the experiment to the end, takes all traffic.
    """
    endpoint = endpoints.get(session, experiment.endpoint)
    live = {d.name: d for _, d in endpoints.routes(session, endpoint)}
    previous = {d: w for d, w in (experiment.previous_weights or {}).items() if w > 0}
    usable = all(d in live and live[d].state == states.AVAILABLE for d in previous)
    if previous and usable and sum(previous.values()) == endpoints.TOTAL_WEIGHT:
        return previous, "the weights it found at start"
    control = service.control_arm(experiment)
    if control not in live or live[control].state != states.AVAILABLE:
        raise Conflict(
            f"experiment {experiment.key!r}: neither the weights it found at start nor its control "
            f"{control!r} can serve the endpoint now; switch it by hand after `atoll ab stop`",
            field="endpoint",
        )
    return {
        control: endpoints.TOTAL_WEIGHT
    }, f"all to the control {control} (the weights found at start no longer apply)"


def hand_back(
    session: Session, *, actor: Principal | None, experiment: Experiment, to: dict[str, int], reason: str
) -> None:
    """Set the endpoint's weights (and its previous salt) as the experiment's last change, then release it."""
    endpoints.set_weights(
        session,
        actor=actor,
        name=experiment.endpoint,
        to=to,
        reason=reason,
        kind=CHANGE_KIND,
        owner=experiment.owner,
        salt=experiment.previous_salt,
    )
    endpoints.release_traffic(session, name=experiment.endpoint, owner=experiment.owner)


def stop(session: Session, *, actor: Principal | None, key: str, reason: str = "") -> Experiment:
    experiment = service.get(session, key, lock=True)
    _expect(experiment, RUNNING, doing="stopped")
    weights, which = restorable_weights(session, experiment)
    hand_back(
        session,
        actor=actor,
        experiment=experiment,
        to=weights,
        reason=f"experiment {key} stopped: {which}" + (f"; {reason}" if reason else ""),
    )
    experiment.state = STOPPED
    experiment.stopped_at = utcnow()
    experiment.stopped_by = endpoints.actor_name(actor)
    audit.record(
        session,
        actor=actor,
        action="experiment.stop",
        target_type="experiment",
        target_id=key,
        summary={"endpoint": experiment.endpoint, "restored": weights, "reason": reason},
    )
    return experiment


def reweight(session: Session, *, experiment: Experiment, to: dict[str, int], reason: str) -> None:
    """An adaptive re-weighting: the experiment's own split, owner and salt (kind ``allocation``)."""
    if experiment.state != RUNNING:
        raise InvalidInput(f"experiment {experiment.key!r} is {experiment.state}, not running", field="state")
    endpoints.set_weights(
        session,
        actor=None,
        name=experiment.endpoint,
        to=to,
        reason=reason,
        kind="allocation",
        owner=experiment.owner,
        salt=experiment.salt,
    )
