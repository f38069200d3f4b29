"""The local target's one object: a model server process for a build directory. Pure.

Shaped like a Kubernetes object (apiVersion, kind, metadata, spec) so the service, the
preview diff and the reconcile job treat both targets alike; the local target runs it as
`atoll serve <buildDir>` on a free loopback port (deployer/targets/local.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from atoll.deployer.specs import DeploymentName

API_VERSION = "atoll.dev/v1"
KIND = "LocalModelServer"
Manifest = dict[str, Any]


class LocalServerSpec(BaseModel):
    """What one local deployment runs."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: DeploymentName
    build_dir: str = Field(alias="buildDir", min_length=1)
    build_id: int = Field(alias="buildId", ge=1)
    model: str = Field(min_length=1)
    version: int = Field(ge=1)
    backend: str = Field(min_length=1)
    endpoint: str | None = None
    drain_seconds: int = Field(default=10, alias="drainSeconds", ge=0, le=3600)
    fault_rate: float = Field(default=0.0, alias="faultRate", ge=0, le=1)  # a test fault (docs/deployment.md)


def render(spec: LocalServerSpec) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": spec.name,
            "labels": {
                "app.kubernetes.io/managed-by": "atoll",
                "atoll.dev/deployment": spec.name,
                "atoll.dev/model-version": str(spec.version),
                "atoll.dev/backend": spec.backend,
                "atoll.dev/build": str(spec.build_id),
            },
        },
        "spec": dump(spec, exclude={"name"}),
    }


def dump(spec: LocalServerSpec, *, exclude: set[str] | None = None) -> dict[str, Any]:
    """The spec as stored and rendered; a zero fault rate is left out, so specs written before
    the flag existed compare equal (no restart of every server after an upgrade)."""
    leave_out = set(exclude or ()) | (set() if spec.fault_rate else {"fault_rate"})
    return spec.model_dump(by_alias=True, exclude=leave_out)


def parse(obj: Manifest) -> LocalServerSpec:
    """The spec of a rendered object; `ValueError` when it is not a LocalModelServer."""
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != KIND:
        raise ValueError(f"the local target runs {API_VERSION} {KIND} objects, not {obj.get('kind')!r}")
    return LocalServerSpec.model_validate({**obj.get("spec", {}), "name": obj["metadata"]["name"]})


def serve_command(python: str, spec: LocalServerSpec, port: int) -> list[str]:
    """The process: the platform's own interpreter running `atoll serve` on loopback."""
    args = [python, "-m", "atoll", "serve", str(Path(spec.build_dir)), "--host", "127.0.0.1"]
    args += ["--port", str(port), "--deployment", spec.name, "--drain-seconds", str(spec.drain_seconds)]
    if spec.endpoint:
        args += ["--endpoint", spec.endpoint]
    if spec.fault_rate:
        args += ["--fault-rate", str(spec.fault_rate)]
    return args
