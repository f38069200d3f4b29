"""The apiserver's refusals (a `Status` body) as errors a user can act on. Pure: no client here.

Server-side apply answers a field owned by another manager with a 409 whose `details.causes`
name each field (`FieldManagerConflict`), and an invalid object with a 422 whose causes name
each field and what is wrong with it. Both are turned into one readable sentence; the
structured parts travel in the error's `extra` (problem+json members).
"""

from __future__ import annotations

import json
import re
from typing import Any

from atoll.deployer.targets.base import ApplyConflict, FieldConflict, InvalidManifest, TargetUnavailable
from atoll.errors import AtollError, Conflict, NotFound

# "Apply failed with 2 conflicts: conflicts with "kubectl-edit" using apps/v1:\n- .spec.replicas\n- ..."
_CONFLICT_HEAD = re.compile(r'conflicts? with "(?P<manager>[^"]+)"(?: using [^:\s]+)?:(?P<rest>[^\n]*)')
_CONFLICT_MANAGER = re.compile(r'conflicts? with "(?P<manager>[^"]+)"')
# An applied field the schema lacks is a 500 from the apiserver (1.36), with this message:
# "failed to create typed patch object (ns/name; apps/v1, Kind=Deployment): .spec.replica: field not ..."
_TYPED_PATCH = re.compile(r"failed to create typed patch object \([^)]*\): (?P<field>\.\S+): (?P<problem>.+)")


def parse_status(body: str | bytes | None) -> dict[str, Any]:
    """The `Status` object of an error response; `{}` when the body is not one (e.g. a proxy's page)."""
    if not body:
        return {}
    try:
        status = json.loads(body)
    except ValueError:
        return {}
    return status if isinstance(status, dict) else {}


def field_conflicts(status: dict[str, Any]) -> list[FieldConflict]:
    """Who owns which field, from the structured causes or, failing that, the message."""
    causes = status.get("details", {}).get("causes") or []
    found = []
    for cause in causes:
        if cause.get("reason") != "FieldManagerConflict":
            continue
        manager = _CONFLICT_MANAGER.search(cause.get("message", ""))
        found.append(FieldConflict(manager["manager"] if manager else "unknown", cause.get("field", "?")))
    if found:
        return found
    owner: str | None = None
    for line in str(status.get("message", "")).splitlines():
        head = _CONFLICT_HEAD.search(line)
        if head:
            owner = head["manager"]
            if head["rest"].strip():
                found.append(FieldConflict(owner, head["rest"].strip()))
        elif owner and line.strip().startswith("- "):
            found.append(FieldConflict(owner, line.strip()[2:]))
    return found


def _invalid_causes(status: dict[str, Any]) -> list[dict[str, str]]:
    causes = status.get("details", {}).get("causes") or []
    return [
        {"field": c.get("field", ""), "message": c.get("message", c.get("reason", ""))}
        for c in causes
        if c.get("reason") != "FieldManagerConflict"
    ]


def error_for(http_status: int, body: str | bytes | None, obj: str, where: str) -> AtollError:
    """The error to raise for a refused request about `obj` ("Deployment ranker") on `where`."""
    status = parse_status(body)
    message = str(status.get("message") or body or f"HTTP {http_status}")
    if http_status == 409:
        conflicts = field_conflicts(status)
        if not conflicts:
            return Conflict(f"{obj}: {message}")
        owned = "; ".join(f"{c.field} is owned by {c.manager!r}" for c in conflicts)
        return ApplyConflict(
            f"{obj}: Atoll would change fields another field manager set, so nothing was changed: "
            f"{owned}. Someone changed them outside Atoll (e.g. kubectl edit or scale): undo that "
            "change, or re-apply with force to take the fields over.",
            conflicts=conflicts,
        )
    typed_patch = _TYPED_PATCH.search(message)
    if typed_patch:
        cause = {"field": typed_patch["field"], "message": typed_patch["problem"]}
        return InvalidManifest(f"{where} refused {obj}: {cause['field']}: {cause['message']}", causes=[cause])
    if http_status in (400, 422):
        causes = _invalid_causes(status)
        listed = "; ".join(f"{c['field']}: {c['message']}" if c["field"] else c["message"] for c in causes)
        return InvalidManifest(f"{where} refused {obj}: {listed or message}", causes=causes)
    if http_status == 404:
        return NotFound(f"{obj}: {message} (on {where})")
    if http_status in (401, 403):
        return TargetUnavailable(
            f"{where} does not let Atoll work on {obj}: {message}. Check the credentials of the "
            "context and the Role in deploy/ (the verbs the deployer needs)."
        )
    return TargetUnavailable(f"{where} failed on {obj}: {message}")
