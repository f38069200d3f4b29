"""The backend catalog: one list of inference backends that every stage reads.

Defaults live in `backends.toml` beside this module; `ATOLL_BACKENDS_FILE` adds entries or
replaces them by name. The catalog is validated at start-up and any problem names the
entry and the field.
"""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULTS_FILE = Path(__file__).resolve().parent / "backends.toml"
Precision = Literal["fp32", "fp16", "bf16", "int8"]
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
_NAME = re.compile(NAME_PATTERN)
_RESOURCE = re.compile(r"^([a-z0-9.-]+/)?[a-z0-9A-Z._-]+$")


class CatalogError(Exception):
    """The catalog is invalid; the message names the file, entry and field."""


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
