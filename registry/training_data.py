"""A model version's training data: where its lineage or its run says it is, fetched as bytes.

Looked for in this order:

1. the version's lineage `training_data` (tag `atoll.lineage.training_data`): an MLflow
   artifact URI (`runs:/<run>/data/train.parquet`, `models:/…`, `mlflow-artifacts:/…`), a
   path relative to the version's own run (`data/train.parquet`), or object storage
   (`s3://…`);
2. else the dataset inputs its run logged with `mlflow.log_input(..., context="training")`
   whose source is a file MLflow can download (`s3://…`, or a local path, see below).

Only what the platform may read is fetched: MLflow's artifacts, object storage (with the
server's own credentials, as MLflow's artifact repositories use them) and local files under
a folder the operator listed in `training_data_roots`. Any other local path would let a
caller read the server's own files, and `http(s)://` would let one make the server call
inside the network, so both are refused, naming why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlparse

from atoll.errors import InvalidInput, NotFound, Unavailable
from atoll.registry.lineage import LINEAGE_TAG_PREFIX, lineage_from_tags
from atoll.registry.mlflow.adapter import LoggedDataset, MlflowRegistry

TRAINING_DATA_KEY = "training_data"
TRAINING_CONTEXT = "training"
MLFLOW_SCHEMES = frozenset({"runs", "models", "mlflow-artifacts"})
OBJECT_STORE_SCHEMES = frozenset({"s3", "gs", "wasbs", "abfss", "hdfs"})
HOW_TO_SET = (
    "register the version with `atoll models register ... --training-data runs:/<run>/data/train.parquet` "
    "(or a path in its run, e.g. data/train.parquet); on an existing version set the tag "
    f"`{LINEAGE_TAG_PREFIX}{TRAINING_DATA_KEY}` (PATCH /api/v1/models/<name>/versions/<n>, or in MLflow); "
    "or log the data in the training run with "
    f'`mlflow.log_input(mlflow.data.from_pandas(df, source="s3://…"), context="{TRAINING_CONTEXT}")`'
)


@dataclass(frozen=True)
class Location:
    """Where training data can be fetched: an URI for MLflow, or a checked local file."""

    uri: str
    local_path: Path | None = None


@dataclass(frozen=True)
class TrainingData:
    model_name: str
    version: int
    uri: str
    found_in: Literal["lineage", "dataset_input"]
    content: bytes


@dataclass(frozen=True)
class TrainingDataAccess:
    """What fetching needs: the MLflow registry (None: not configured) and the local folders
    the operator allows (`training_data_roots`)."""

    registry: MlflowRegistry | None
    local_roots: tuple[Path, ...] = ()


def _local(path: str, local_roots: Sequence[Path]) -> Location:
    resolved = Path(path).resolve()  # follows symlinks, so a link cannot lead out of a root
    if not any(resolved.is_relative_to(root.resolve()) for root in local_roots):
        allowed = ", ".join(str(r) for r in local_roots) or "none are set"
        raise InvalidInput(
            f"{path} is a path on the server's disk outside the folders it may read training data "
            f"from (ATOLL_TRAINING_DATA_ROOTS: {allowed}); log the file as an artifact of the run instead"
        )
    return Location(uri=str(resolved), local_path=resolved)


def resolve(
    value: str, *, run_id: str | None, local_roots: Sequence[Path], relative_to_run: bool
) -> Location:
    """Where `value` can be fetched from. Pure apart from resolving a local path's symlinks.

    A relative path means a path in the version's run (`relative_to_run`, lineage) or a path
    on the training machine's disk (a dataset source), which the server cannot see.
    """
    value = value.strip()
    parsed = urlparse(value)
    scheme = parsed.scheme.lower()
    if scheme in MLFLOW_SCHEMES or scheme in OBJECT_STORE_SCHEMES:
        return Location(uri=value)
    if scheme == "file":
        return _local(unquote(parsed.path), local_roots)
    if scheme:
        raise InvalidInput(
            f"{value}: {scheme}:// is not fetched (it could reach anything the server can); use an MLflow "
            f"artifact URI (runs:/, models:/, mlflow-artifacts:/) or object storage (s3://, gs://, …)"
        )
    if value.startswith("/"):
        return _local(value, local_roots)
    if not relative_to_run:
        raise InvalidInput(f"{value!r} is a relative path on the training machine; the server cannot read it")
    parts = PurePosixPath(value).parts  # drops '.' segments
    if not parts or ".." in parts:
        raise InvalidInput(f"{value!r}: name a file in the version's run, e.g. data/train.parquet (no '..')")
    if run_id is None:
        raise InvalidInput(f"{value} is a path in the version's run, but the version has no run")
    return Location(uri=f"runs:/{run_id}/{'/'.join(parts)}")


def _dataset_uri(dataset: LoggedDataset) -> str | None:
    """The file a dataset source names (`uri` of file-system sources, `url` of HTTP ones)."""
    try:
        source = json.loads(dataset.source)
    except json.JSONDecodeError:
        return None
    if not isinstance(source, dict):
        return None
    found = source.get("uri") or source.get("url")
    return found if isinstance(found, str) and found else None


def pick_dataset(
    datasets: Sequence[LoggedDataset], *, local_roots: Sequence[Path]
) -> tuple[Location | None, list[str]]:
    """The one training dataset input that can be fetched, and why each other one was not.

    Several fetchable ones (different files) are ambiguous: refused, naming them, so the
    lineage key can settle it.
    """
    skipped: list[str] = []
    found: dict[str, Location] = {}
    for dataset in datasets:
        if dataset.context != TRAINING_CONTEXT:
            continue
        uri = _dataset_uri(dataset)
        if uri is None:
            skipped.append(f"{dataset.name!r} ({dataset.source_type} source: no file)")
            continue
        try:
            location = resolve(uri, run_id=None, local_roots=local_roots, relative_to_run=False)
        except InvalidInput as exc:
            skipped.append(f"{dataset.name!r} ({exc.detail})")
            continue
        found.setdefault(location.uri, location)
    if len(found) > 1:
        raise InvalidInput(
            f"the run logged several training datasets ({', '.join(sorted(found))}); say which with the "
            f"version's lineage `{TRAINING_DATA_KEY}`"
        )
    return next(iter(found.values()), None), skipped


def _read_local(path: Path, max_bytes: int) -> bytes:
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file on the server")
    size = path.stat().st_size
    if size > max_bytes:
        raise InvalidInput(
            f"{path} is {size:,} bytes; at most {max_bytes:,} are read: point at a sample of it"
        )
    return path.read_bytes()


def fetch(access: TrainingDataAccess, *, model_name: str, version: int, max_bytes: int) -> TrainingData:
    """Find and fetch the training data of `model_name` v`version` (at most `max_bytes`).

    Raises InvalidInput naming what was looked for when there is none or it cannot be read,
    Unavailable when MLflow is not configured or does not answer.
    """
    registry = access.registry
    if registry is None:
        raise Unavailable("MLflow is not configured: set ATOLL_MLFLOW_TRACKING_URI to read training data")
    try:
        found = registry.get_version(model_name, str(version))
    except NotFound:
        raise InvalidInput(f"model {model_name!r} has no version {version} in MLflow") from None
    what = f"{model_name} v{version}"
    declared = lineage_from_tags(found.tags).get(TRAINING_DATA_KEY)
    found_in: Literal["lineage", "dataset_input"]
    if declared:
        try:
            location = resolve(
                declared, run_id=found.run_id, local_roots=access.local_roots, relative_to_run=True
            )
        except InvalidInput as exc:
            raise InvalidInput(f"{what}: lineage {TRAINING_DATA_KEY} = {declared!r}: {exc.detail}") from None
        found_in = "lineage"
    else:
        try:
            datasets = registry.run_datasets(found.run_id) if found.run_id else []
        except NotFound:
            raise InvalidInput(f"{what}: its run {found.run_id} is no longer in MLflow") from None
        picked, skipped = pick_dataset(datasets, local_roots=access.local_roots)
        if picked is None:
            run = f"its run {found.run_id}" if found.run_id else "it has no run, so"
            why = f" (not usable: {'; '.join(skipped)})" if skipped else ""
            raise InvalidInput(
                f"{what} names no training data: its lineage has no `{TRAINING_DATA_KEY}` and {run} "
                f"logged no dataset input with context '{TRAINING_CONTEXT}' that can be fetched{why}. "
                f"To set it: {HOW_TO_SET}"
            )
        location, found_in = picked, "dataset_input"
    try:
        if location.local_path is not None:
            content = _read_local(location.local_path, max_bytes)
        else:
            content = registry.fetch_file(location.uri, max_bytes=max_bytes)
    except NotFound as exc:
        raise InvalidInput(f"{what}: training data {location.uri}: {exc.detail}") from None
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: training data: {exc.detail}") from None
    return TrainingData(model_name, version, location.uri, found_in, content)
