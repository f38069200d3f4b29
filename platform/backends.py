"""The backend catalog: one list of inference backends that every stage reads.

Defaults live in `backends.toml` beside this module; `ATOLL_BACKENDS_FILE` adds entries or
replaces them by name. The catalog is validated at start-up and any problem names the
entry and the field.

A backend's entry also decides which ONNX Runtime providers run it on a given machine
(`Backend.providers`): builds measure parity and latency with that choice, and the model
server opens its session with it, so the two never disagree.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULTS_FILE = Path(__file__).resolve().parent / "backends.toml"
Precision = Literal["fp32", "fp16", "bf16", "int8"]
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_RESOURCE = re.compile(r"^([a-z0-9.-]+/)?[a-z0-9A-Z._-]+$")
CPU_PROVIDER = "CPUExecutionProvider"
# The catalog names local executors (`local_fallback`); these are the providers they stand for.
EXECUTOR_PROVIDERS = {"onnxruntime-cpu": CPU_PROVIDER, "onnxruntime-cuda": "CUDAExecutionProvider"}


class CatalogError(Exception):
    """The catalog is invalid; the message names the file, entry and field."""


@dataclass(frozen=True)
class ProviderChoice:
    """The ONNX Runtime providers to ask for, in order, and what that means for the backend."""

    providers: list[str]
    emulated: bool  # no device and no fallback executor: the graph runs on the plain CPU provider
    note: str  # empty when the backend's own provider runs it


class Toleration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class ParityThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_abs_diff: float = Field(gt=0)
    min_label_agreement: float = Field(ge=0, le=1)


class Backend(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    accelerator: str
    resource: str | None = Field(default=None, description="Kubernetes extended resource")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    precisions: list[Precision] = Field(min_length=1)
    default_precision: Precision
    runtime_provider: str
    local_executor: str
    local_fallback: str | None = None
    max_batch: int = Field(default=32, ge=1, le=4096)
    max_wait_ms: float = Field(default=1.0, ge=0, le=1000)
    parity: ParityThresholds

    @model_validator(mode="after")
    def _consistent(self) -> Backend:
        if not _NAME.match(self.name):
            raise ValueError("name: use lowercase letters, digits and '-', starting with a letter")
        if self.default_precision not in self.precisions:
            raise ValueError(
                f"default_precision: {self.default_precision!r} is not in precisions {self.precisions}"
            )
        if self.resource is not None and not _RESOURCE.match(self.resource):
            raise ValueError(f"resource: {self.resource!r} is not a Kubernetes resource name")
        return self

    def providers(self, available: Sequence[str]) -> ProviderChoice:
        """The backend's own provider where `available` has it (the CPU provider behind it,
        for the operators the device lacks); else its `local_fallback` executor; else the
        device is emulated on the CPU provider. `available` is
        `onnxruntime.get_available_providers()` on the machine that runs the model."""
        wanted = self.runtime_provider
        if wanted in available:
            chain = [wanted] if wanted == CPU_PROVIDER else [wanted, CPU_PROVIDER]
            return ProviderChoice(chain, emulated=False, note="")
        if self.local_fallback:
            fallback = EXECUTOR_PROVIDERS.get(self.local_fallback, CPU_PROVIDER)
            if fallback in available:
                return ProviderChoice(
                    [fallback],
                    emulated=False,
                    note=(
                        f"{wanted} is not available on this machine: the {self.default_precision} graph "
                        f"runs on {fallback} (catalog local_fallback {self.local_fallback!r}); "
                        f"{wanted} runs it where the device exists"
                    ),
                )
        return ProviderChoice(
            [CPU_PROVIDER],
            emulated=True,
            note=(
                f"no {self.accelerator} device here ({wanted} is not available): emulated on the CPU "
                f"({self.local_executor}: plain ONNX Runtime {CPU_PROVIDER} running the "
                f"{self.default_precision} graph); runtime_provider {wanted!r} is the plug-in point "
                f"for the real device"
            ),
        )


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True)

    backends: dict[str, Backend]

    def get(self, name: str) -> Backend:
        from atoll.errors import NotFound

        try:
            return self.backends[name]
        except KeyError:
            known = ", ".join(self.backends)
            raise NotFound(f"backend {name!r} is not in the catalog (known: {known})") from None

    def names(self) -> list[str]:
        return list(self.backends)


def _read(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CatalogError(f"backend catalog {path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"backend catalog {path}: not valid TOML ({exc})") from None
    unknown = set(data) - {"backends"}
    if unknown:
        raise CatalogError(f"backend catalog {path}: unknown top-level key {sorted(unknown)[0]!r}")
    entries = data.get("backends", {})
    if not isinstance(entries, dict):
        raise CatalogError(f"backend catalog {path}: [backends] must be a table of entries")
    return entries


def _validate(name: str, fields: dict[str, object], source: Path) -> Backend:
    try:
        return Backend.model_validate({**fields, "name": name})
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        field = ".".join(str(p) for p in first["loc"])
        if not field:  # a model-level check: its message starts with "field: ..."
            field, _, message = message.partition(": ")
        raise CatalogError(f"backend catalog {source}: entry {name!r}, field {field}: {message}") from None


def load_catalog(extra_file: Path | None = None) -> Catalog:
    entries = {name: (fields, DEFAULTS_FILE) for name, fields in _read(DEFAULTS_FILE).items()}
    if extra_file is not None:
        entries.update({name: (fields, extra_file) for name, fields in _read(extra_file).items()})
    return Catalog(backends={name: _validate(name, f, src) for name, (f, src) in entries.items()})


@lru_cache(maxsize=4)
def cached_catalog(extra_file: Path | None) -> Catalog:
    return load_catalog(extra_file)
