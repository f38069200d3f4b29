"""A preview's diff: the live object against the server-side dry run of the apply. Pure.

Both sides are the apiserver's own view (defaults filled in, the same serialisation), so
the diff shows what the apply changes and nothing of how the manifest was written.
Fields the server alone maintains (managedFields, resourceVersion, uid, status...) are
left out: they change on every write and say nothing about the intent.
"""

from __future__ import annotations

import copy
import difflib
from typing import Any, Literal

import yaml

from atoll.deployer.targets.base import ObjectDiff

_SERVER_METADATA = (
    "managedFields",
    "resourceVersion",
    "uid",
    "generation",
    "creationTimestamp",
    "selfLink",
)
# Annotations the controllers write on the live object, never in a dry run's result of ours.
_CONTROLLER_ANNOTATIONS = ("deployment.kubernetes.io/revision",)


def comparable(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """`obj` without what the server alone maintains."""
    if obj is None:
        return None
    trimmed = copy.deepcopy(obj)
    trimmed.pop("status", None)
    metadata = trimmed.get("metadata", {})
    for key in _SERVER_METADATA:
        metadata.pop(key, None)
    annotations = metadata.get("annotations") or {}
    for key in _CONTROLLER_ANNOTATIONS:
        annotations.pop(key, None)
    if "annotations" in metadata and not annotations:
        del metadata["annotations"]
    return trimmed


def _yaml(obj: dict[str, Any] | None) -> list[str]:
    return [] if obj is None else yaml.safe_dump(obj, sort_keys=True).splitlines(keepends=True)


def object_diff(live: dict[str, Any] | None, would_be: dict[str, Any]) -> ObjectDiff:
    """What applying does to one object: create, change (with a unified diff) or nothing."""
    before, after = comparable(live), comparable(would_be)
    assert after is not None
    kind, name = would_be["kind"], would_be["metadata"]["name"]
    action: Literal["create", "change", "unchanged"]
    if before is None:
        action = "create"
    elif before == after:
        action = "unchanged"
    else:
        action = "change"
    lines = difflib.unified_diff(
        _yaml(before), _yaml(after), fromfile=f"live/{kind}/{name}", tofile=f"applied/{kind}/{name}"
    )
    return ObjectDiff(
        kind=kind, name=name, action=action, diff="".join(lines) if action != "unchanged" else ""
    )
