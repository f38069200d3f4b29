"""A deployment's lifecycle as a state machine. Pure: no database, no target.

    pending ─► applying ─► progressing ─► available
                  │             │             │
                  └──► failed ◄─┘◄────────────┘   (a target reports a failure)
    any live state ─► undeploying ─► undeployed ─► pending (the name deployed again)

`pending` waits for its rollout job. `applying` means objects are being written to the
target; a deployment found there by a job that did not put it there was left half-applied
by a worker that died, and is applied again (applying is idempotent). A new revision (an
update or a rollback) starts again at `pending` from any live state; the reconcile job
moves `available` back to `progressing` when it had to repair drift, to watch it recover.
"""

from __future__ import annotations

from typing import Literal

from atoll.errors import Conflict

State = Literal["pending", "applying", "progressing", "available", "failed", "undeploying", "undeployed"]
PENDING: State = "pending"
APPLYING: State = "applying"
PROGRESSING: State = "progressing"
AVAILABLE: State = "available"
FAILED: State = "failed"
UNDEPLOYING: State = "undeploying"
UNDEPLOYED: State = "undeployed"

ALL_STATES: tuple[State, ...] = (PENDING, APPLYING, PROGRESSING, AVAILABLE, FAILED, UNDEPLOYING, UNDEPLOYED)
# Desired on the target: the reconcile job keeps these applied.
LIVE_STATES: frozenset[str] = frozenset({APPLYING, PROGRESSING, AVAILABLE, FAILED})
# A rollout job is (or should be) moving the deployment.
ROLLING_STATES: frozenset[str] = frozenset({PENDING, APPLYING, PROGRESSING})

TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({APPLYING, FAILED, UNDEPLOYING}),
    APPLYING: frozenset({PENDING, APPLYING, PROGRESSING, FAILED, UNDEPLOYING}),
    PROGRESSING: frozenset({PENDING, APPLYING, PROGRESSING, AVAILABLE, FAILED, UNDEPLOYING}),
    AVAILABLE: frozenset({PENDING, APPLYING, PROGRESSING, AVAILABLE, FAILED, UNDEPLOYING}),
    FAILED: frozenset({PENDING, APPLYING, PROGRESSING, AVAILABLE, FAILED, UNDEPLOYING}),
    UNDEPLOYING: frozenset({UNDEPLOYING, UNDEPLOYED}),
    UNDEPLOYED: frozenset({PENDING}),
}


def can_move(current: str, wanted: str) -> bool:
    return wanted in TRANSITIONS.get(current, frozenset())


def check_move(name: str, current: str, wanted: str) -> None:
    """Refuse a move the lifecycle does not have (409 naming both states)."""
    if not can_move(current, wanted):
        raise Conflict(
            f"deployment {name!r} is {current}; it cannot become {wanted}",
            state=current,
        )


def is_terminal(state: str) -> bool:
    """A rollout watch stops here: the deployment serves, failed, or is going away."""
    return state in (AVAILABLE, FAILED, UNDEPLOYING, UNDEPLOYED)
