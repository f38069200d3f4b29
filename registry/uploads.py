"""Registering an uploaded model: an archive of an MLflow model folder, plus its metadata.

The archive is fully received, size-checked and unpacked into a temporary folder before
anything reaches MLflow, so an interrupted or broken upload registers nothing.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError
from sqlalchemy.orm import Session

from atoll.auth.policy import Principal
from atoll.backends import Catalog
from atoll.errors import InvalidInput
from atoll.registry import service
from atoll.registry.mlflow.adapter import MlflowRegistry
from atoll.registry.schemas import RegisterVersion, VersionRead

MAX_UPLOAD_BYTES = 2 * 1024**3
_CHUNK_BYTES = 1024 * 1024


def parse_metadata(text: str) -> RegisterVersion:
    """The upload's `metadata` field: `RegisterVersion` fields as JSON, without a source."""
    try:
        fields = json.loads(text)
        if not isinstance(fields, dict):
            raise InvalidInput("metadata: must be a JSON object")
        return RegisterVersion.model_validate({**fields, "model_uri": "upload"})
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"metadata: not valid JSON ({exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"metadata.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def unpack(archive: Path, into: Path) -> Path:
    """Unpack a .zip or .tar.gz MLflow model; refuses paths that escape the folder.

    Returns the model folder: the archive's one top-level folder, or `into` itself when the
    files were archived without one.
    """
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                for member in bundle.namelist():
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise InvalidInput(f"file: archive member {member!r} escapes the model folder")
                bundle.extractall(into)  # noqa: S202 - members checked above
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as bundle:
                bundle.extractall(into, filter="data")
        else:
            raise InvalidInput("file: upload a .zip or .tar.gz of an MLflow model folder")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise InvalidInput(f"file: the archive is damaged or incomplete ({exc})") from None
    entries = [p for p in into.iterdir() if p.name != "__MACOSX"]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else into


def register_upload(
    session: Session,
    registry: MlflowRegistry,
    *,
    actor: Principal,
    name: str,
    archive: BinaryIO,
    body: RegisterVersion,
    catalog: Catalog,
) -> VersionRead:
    """Receive `archive` into a temporary folder, unpack it and register the model in it."""
    with tempfile.TemporaryDirectory(prefix="atoll-upload-") as work:
        received = Path(work) / "upload"
        with received.open("wb") as target:
            shutil.copyfileobj(archive, target, length=_CHUNK_BYTES)
        if received.stat().st_size > MAX_UPLOAD_BYTES:
            raise InvalidInput("file: larger than 2 GiB; register it from a run or object storage instead")
        model_dir = unpack(received, Path(work) / "model")
        return service.register_model_dir(
            session, registry, actor=actor, name=name, model_dir=model_dir, body=body, catalog=catalog
        )
