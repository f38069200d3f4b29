"""The part of a live object a field manager owns, read from its `managedFields`. Pure.

Server-side apply removes a field from the object when the manager that owns it applies
again without it. To change one part of what Atoll applied (a rollback swaps the pod
template), Atoll therefore applies its whole previous intent with that part replaced; the
intent is the live object projected on Atoll's field set, like client-go's
`ExtractDeployment`. Field set keys (`fieldsV1`): `f:<name>` a field, `k:<json>` the list
item with those key fields, `v:<json>` a set member, `i:<n>` the n-th item, `.` the node.
"""

from __future__ import annotations

import json
from typing import Any


def owned_fieldset(obj: dict[str, Any], manager: str) -> dict[str, Any]:
    """The union of the field sets `manager` holds through apply operations."""
    merged: dict[str, Any] = {}
    for entry in obj.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            _merge(merged, entry.get("fieldsV1") or {})
    return merged


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, sub in other.items():
        _merge(into.setdefault(key, {}), sub)


def extract(obj: dict[str, Any], manager: str) -> dict[str, Any]:
    """`obj` reduced to what `manager` applied (plus apiVersion, kind, name and namespace)."""
    owned = _project_map(obj, owned_fieldset(obj, manager))
    metadata = {k: obj["metadata"][k] for k in ("name", "namespace") if k in obj["metadata"]}
    owned["metadata"] = {**owned.get("metadata", {}), **metadata}
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], **owned}


def _children(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k != "."}


def _project(value: Any, fields: dict[str, Any]) -> Any:
    children = _children(fields)
    if not children:  # a leaf, or an atomic map or list: owned as a whole
        return value
    if isinstance(value, dict):
        return _project_map(value, children)
    if isinstance(value, list):
        return _project_list(value, children)
    return value


def _project_map(value: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    projected = {}
    for key, sub in _children(fields).items():
        if key.startswith("f:") and key[2:] in value:
            projected[key[2:]] = _project(value[key[2:]], sub)
    return projected


def _project_list(items: list[Any], fields: dict[str, Any]) -> list[Any]:
    keyed = [(json.loads(k[2:]), sub) for k, sub in fields.items() if k.startswith("k:")]
    members = [json.loads(k[2:]) for k in fields if k.startswith("v:")]
    indexed = {int(k[2:]): sub for k, sub in fields.items() if k.startswith("i:")}
    projected = []
    for index, item in enumerate(items):  # the live order, which the apply keeps
        if item in members:
            projected.append(item)
        elif index in indexed:
            projected.append(_project(item, indexed[index]))
        elif isinstance(item, dict):
            for key, sub in keyed:
                if all(item.get(name) == wanted for name, wanted in key.items()):
                    projected.append({**key, **_project_map(item, sub)})
                    break
    return projected
