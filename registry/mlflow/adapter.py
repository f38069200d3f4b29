"""The MLflow tracking server, as Atoll sees it: plain dataclasses in, plain dataclasses out.

MLflow errors become Atoll errors: a missing model is `NotFound` naming it, an unreachable
server is `Unavailable` naming the URI, so no caller needs to know MLflow's exceptions.
"""

from __future__ import annotations

import json
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from atoll.errors import Conflict, InvalidInput, NotFound, Unavailable
from atoll.registry.mlflow.model_files import LocalModel, read_local_model
from atoll.registry.schemas import SignatureField, VersionDetails

T = TypeVar("T")
UPLOAD_EXPERIMENT = "atoll-uploads"


@dataclass(frozen=True)
class MlflowModel:
    name: str
    description: str
    tags: dict[str, str]
    aliases: dict[str, str]  # alias -> version
    created_ms: int
    updated_ms: int


@dataclass(frozen=True)
class LoggedDataset:
    """A dataset input of a run (`mlflow.log_input`): its source as MLflow stored it."""

    name: str
    context: str | None  # the `mlflow.data.context` input tag: training, eval, ...
    source_type: str  # local, s3, http, code, ...
    source: str  # JSON, e.g. {"uri": "s3://bucket/train.parquet"}


@dataclass(frozen=True)
class MlflowVersion:
    name: str
    version: str
    source: str
    run_id: str | None
    status: str
    description: str
    tags: dict[str, str]
    aliases: list[str]
    created_ms: int
    updated_ms: int


def _signature_fields(raw: object) -> list[SignatureField]:
    """One part (`inputs`, `outputs`) of MLflow's signature dict: a JSON list of column or
    tensor specs. Anything else reads as no fields rather than an error: the page that
    shows it must not fail on a signature written by another MLflow version."""
    try:
        specs = json.loads(raw) if isinstance(raw, str) else []
    except json.JSONDecodeError:
        return []
    if not isinstance(specs, list):
        return []
    return [
        SignatureField(
            name=str(spec.get("name", "—")),
            type=str(spec.get("type", "")),
            spec=json.dumps(spec["tensor-spec"]) if "tensor-spec" in spec else "",
        )
        for spec in specs
        if isinstance(spec, dict)
    ]


def _model(m: Any) -> MlflowModel:
    return MlflowModel(
        name=m.name,
        description=m.description or "",
        tags=dict(m.tags or {}),
        aliases={alias: str(v) for alias, v in (m.aliases or {}).items()},
        created_ms=int(m.creation_timestamp or 0),
        updated_ms=int(m.last_updated_timestamp or 0),
    )


def _version(v: Any) -> MlflowVersion:
    return MlflowVersion(
        name=v.name,
        version=str(v.version),
        source=v.source or "",
        run_id=v.run_id or None,
        status=str(v.status or "READY"),
        description=v.description or "",
        tags=dict(v.tags or {}),
        aliases=list(v.aliases or []),
        created_ms=int(v.creation_timestamp or 0),
        updated_ms=int(v.last_updated_timestamp or 0),
    )


def _too_large(uri: str, size: int, max_bytes: int) -> str:
    return (
        f"{uri} is {size:,} bytes; at most {max_bytes:,} are read: log a sample of it (e.g. 100,000 "
        "rows) as its own artifact and point at that"
    )


_NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "ENDPOINT_NOT_FOUND"})
_CONFLICT = frozenset({"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS", "RESOURCE_CONFLICT", "ABORTED"})
_INVALID = frozenset({"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE", "MALFORMED_REQUEST"})


class MlflowRegistry:
    """A thin, typed facade over `MlflowClient` for one tracking server."""

    def __init__(self, tracking_uri: str) -> None:
        from mlflow import MlflowClient

        self.uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """MLflow's errors by whose fault they are: the caller's (4xx, naming what was asked)
        or MLflow's own and its reachability (503)."""
        from mlflow.exceptions import MlflowException

        try:
            return fn()
        except MlflowException as exc:
            code = exc.error_code
            message = str(exc).split(": ", 1)[-1][:500]
            if code in _NOT_FOUND:
                raise NotFound(f"{what}: {message}") from None
            if code in _CONFLICT:
                raise Conflict(f"{what}: {message}") from None
            if code in _INVALID:
                raise InvalidInput(f"{what}: {message}") from None
            raise Unavailable(f"MLflow at {self.uri} failed {what}: {message}") from None
        except OSError as exc:
            raise Unavailable(f"MLflow at {self.uri} is unreachable ({type(exc).__name__})") from None

    # --- models ----------------------------------------------------------------------

    def get_model(self, name: str) -> MlflowModel:
        return _model(self._call(f"get model {name!r}", lambda: self._client.get_registered_model(name)))

    def ensure_model(self, name: str, *, tags: dict[str, str], description: str = "") -> MlflowModel:
        try:
            return self.get_model(name)
        except NotFound:
            created = self._call(
                f"create model {name!r}",
                lambda: self._client.create_registered_model(name, tags=tags, description=description),
            )
            return _model(created)

    def iter_models(self, page_size: int = 1000) -> Iterator[MlflowModel]:
        token: str | None = None
        while True:
            page = self._call(
                "search models",
                lambda token=token: self._client.search_registered_models(  # type: ignore[misc]
                    max_results=page_size, page_token=token
                ),
            )
            yield from (_model(m) for m in page)
            token = page.token
            if not token:
                return

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self._call(f"tag model {name!r}", lambda: self._client.set_registered_model_tag(name, key, value))

    def set_model_description(self, name: str, description: str) -> None:
        self._call(
            f"describe model {name!r}",
            lambda: self._client.update_registered_model(name, description=description),
        )

    # --- versions --------------------------------------------------------------------

    def iter_versions(self, name: str | None = None, page_size: int = 10_000) -> Iterator[MlflowVersion]:
        filter_string = f"name = '{name}'" if name else None
        token: str | None = None
        while True:
            page = self._call(
                "search versions",
                lambda token=token: self._client.search_model_versions(  # type: ignore[misc]
                    filter_string=filter_string, max_results=page_size, page_token=token
                ),
            )
            yield from (_version(v) for v in page)
            token = page.token
            if not token:
                return

    def get_version(self, name: str, version: str) -> MlflowVersion:
        return _version(
            self._call(f"get {name} v{version}", lambda: self._client.get_model_version(name, version))
        )

    def create_version(
        self, name: str, *, source: str, run_id: str | None, tags: dict[str, str], description: str
    ) -> MlflowVersion:
        created = self._call(
            f"register a version of {name!r}",
            lambda: self._client.create_model_version(
                name, source=source, run_id=run_id, tags=tags, description=description or None
            ),
        )
        return _version(created)

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._call(
            f"tag {name} v{version}", lambda: self._client.set_model_version_tag(name, version, key, value)
        )

    def set_version_description(self, name: str, version: str, description: str) -> None:
        self._call(
            f"describe {name} v{version}",
            lambda: self._client.update_model_version(name, version, description=description),
        )

    def resolve_source(self, model_uri: str) -> tuple[str, str | None]:
        """A model URI (`runs:/…`, `models:/…`, a path) as MLflow would register it."""
        if model_uri.startswith("runs:/"):
            run_id = model_uri.removeprefix("runs:/").split("/", 1)[0]
            self._call(f"find run {run_id}", lambda: self._client.get_run(run_id))
            return model_uri, run_id
        return model_uri, None

    def upload_model(self, model_dir: Path) -> tuple[str, str]:
        """Log a local MLflow model directory as artifacts of a new run; returns (source, run_id)."""
        if not (model_dir / "MLmodel").is_file():
            raise InvalidInput("the upload is not an MLflow model: it has no MLmodel file at its root")

        def log() -> tuple[str, str]:
            experiment = self._client.get_experiment_by_name(UPLOAD_EXPERIMENT)
            experiment_id = (
                experiment.experiment_id if experiment else self._client.create_experiment(UPLOAD_EXPERIMENT)
            )
            run = self._client.create_run(experiment_id, tags={"atoll.upload": "true"})
            try:
                self._client.log_artifacts(run.info.run_id, str(model_dir), artifact_path="model")
            except BaseException:
                self._client.set_terminated(run.info.run_id, status="FAILED")
                raise
            self._client.set_terminated(run.info.run_id)
            return f"runs:/{run.info.run_id}/model", run.info.run_id

        return self._call("upload a model", log)

    def details(self, name: str, version: str) -> VersionDetails:
        """Flavors and signature from the version's MLmodel file (only that file is fetched)."""
        import tempfile

        from mlflow.artifacts import download_artifacts
        from mlflow.models import Model

        uri = self._call(f"find the model files of {name} v{version}", lambda: self._files_uri(name, version))
        with tempfile.TemporaryDirectory(prefix="atoll-mlmodel-") as work:
            path = self._call(
                f"read the MLmodel of {name} v{version}",
                lambda: download_artifacts(
                    artifact_uri=f"{uri.rstrip('/')}/MLmodel",
                    dst_path=work,
                    tracking_uri=self.uri,
                    registry_uri=self.uri,
                ),
            )
            info = Model.load(path)
        signature = info.signature.to_dict() if info.signature is not None else {}
        return VersionDetails(
            flavors=sorted(info.flavors),
            has_signature=info.signature is not None,
            inputs=_signature_fields(signature.get("inputs")),
            outputs=_signature_fields(signature.get("outputs")),
        )

    # --- builds -----------------------------------------------------------------------

    def download_model(self, name: str, version: str, into: Path) -> LocalModel:
        """Download a version's model files and read its MLmodel (flavors, example, signature)."""
        from mlflow.artifacts import download_artifacts

        into.mkdir(parents=True, exist_ok=True)
        uri = self._call(f"find the model files of {name} v{version}", lambda: self._files_uri(name, version))
        local = Path(
            self._call(
                f"download {name} v{version} ({uri})",
                lambda: download_artifacts(
                    artifact_uri=uri, dst_path=str(into), tracking_uri=self.uri, registry_uri=self.uri
                ),
            )
        )
        try:
            return read_local_model(local)
        except InvalidInput as exc:
            raise InvalidInput(f"{name} v{version}: {exc}") from None

    def _files_uri(self, name: str, version: str) -> str:
        """The storage URI of a version's files (not `models:/name/v`, which MLflow resolves
        against the process-wide registry URI, not this server's).

        MLflow 3 logs models as LoggedModels, so a version registered from
        `runs:/<run>/<name>` may have no files under the run's own artifacts: resolve it the
        way `mlflow.register_model` does (the run's newest logged model of that name). An
        uploaded model (files under the run) uses the version's download URI.
        """
        found = self._client.get_model_version(name, version)
        model_id = getattr(found, "model_id", None)
        source = str(found.source or "")
        if not model_id and source.startswith("runs:/"):
            run_id, _, artifact_path = source.removeprefix("runs:/").partition("/")
            run = self._client.get_run(run_id)
            logged = [
                m
                for m in self._client.search_logged_models(
                    experiment_ids=[run.info.experiment_id],
                    filter_string=f"name = '{artifact_path}'",
                    max_results=100,
                )
                if m.source_run_id == run_id
            ]
            if logged:
                model_id = max(logged, key=lambda m: int(m.creation_timestamp or 0)).model_id
        if model_id:
            return str(self._client.get_logged_model(model_id).artifact_location)
        return str(self._client.get_model_version_download_uri(name, version))

    def log_build(self, run_id: str, directory: Path, artifact_path: str) -> str:
        """Log a build directory as artifacts of the version's run; returns their URI."""
        self._call(
            f"log build artifacts to run {run_id}",
            lambda: self._client.log_artifacts(run_id, str(directory), artifact_path=artifact_path),
        )
        return f"runs:/{run_id}/{artifact_path}"

    def download_build(self, artifact_uri: str, into: Path) -> Path:
        """A build's files logged at `artifact_uri` (`runs:/<run>/atoll-builds/<backend>`), placed
        directly in `into` (what a pod's init container does; see deployer/manifests.py)."""
        from mlflow.artifacts import download_artifacts

        if not artifact_uri.startswith("runs:/") or artifact_uri.count("/") < 3:
            raise InvalidInput(
                f"{artifact_uri!r} is not a build's artifact URI (runs:/<run>/atoll-builds/<backend>)"
            )
        into.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=into) as scratch:
            local = Path(
                self._call(
                    f"download {artifact_uri}",
                    lambda: download_artifacts(
                        artifact_uri=artifact_uri, dst_path=scratch, tracking_uri=self.uri
                    ),
                )
            )
            if not local.is_dir() or not any(local.iterdir()):
                raise NotFound(f"{artifact_uri}: no files there")
            for entry in local.iterdir():
                target = into / entry.name
                if target.is_dir():
                    shutil.rmtree(target)
                entry.replace(target)
        return into

    def list_artifacts(self, run_id: str, path: str) -> list[str]:
        found = self._call(
            f"list artifacts of run {run_id}", lambda: self._client.list_artifacts(run_id, path)
        )
        return [f.path for f in found]

    def run_datasets(self, run_id: str) -> list[LoggedDataset]:
        """The dataset inputs a run logged, in MLflow's order."""
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        run = self._call(f"read run {run_id}", lambda: self._client.get_run(run_id))
        inputs = run.inputs.dataset_inputs if run.inputs is not None else []
        return [
            LoggedDataset(
                name=str(found.dataset.name),
                context=next((t.value for t in found.tags if t.key == MLFLOW_DATASET_CONTEXT), None),
                source_type=str(found.dataset.source_type),
                source=str(found.dataset.source),
            )
            for found in inputs
        ]

    def fetch_file(self, artifact_uri: str, *, max_bytes: int) -> bytes:
        """One artifact file's bytes (`runs:/…`, `models:/…`, `mlflow-artifacts:/…`, `s3://…`).

        Refuses a folder or a file over `max_bytes` with `InvalidInput`: the size is checked in
        the parent's listing before downloading where MLflow can list it, and again on disk
        after, so a large artifact never reaches memory.
        """
        from mlflow.artifacts import download_artifacts

        self._check_listed_size(artifact_uri, max_bytes)
        with tempfile.TemporaryDirectory(prefix="atoll-fetch-") as work:
            try:
                local = Path(
                    self._call(
                        f"download {artifact_uri}",
                        lambda: download_artifacts(
                            artifact_uri=artifact_uri,
                            dst_path=work,
                            tracking_uri=self.uri,
                            registry_uri=self.uri,
                        ),
                    )
                )
            except ImportError as exc:  # e.g. s3:// without boto3 on this server
                raise Unavailable(f"cannot fetch {artifact_uri} here: {exc}") from None
            if local.is_dir():
                names = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
                raise InvalidInput(
                    f"{artifact_uri} is a folder ({', '.join(names[:10]) or 'empty'}); name one CSV or "
                    "Parquet file in it"
                )
            size = local.stat().st_size
            if size > max_bytes:
                raise InvalidInput(_too_large(artifact_uri, size, max_bytes))
            return local.read_bytes()

    def _check_listed_size(self, artifact_uri: str, max_bytes: int) -> None:
        """Before downloading: refuse a folder, a missing file or one over `max_bytes`, when the
        parent can be listed (`models:/` URIs resolve against the registry and are checked
        after the download instead)."""
        from mlflow.artifacts import list_artifacts

        if artifact_uri.startswith("models:/"):
            return
        if artifact_uri.startswith("runs:/"):  # MLflow cannot list `runs:/<run>` itself: by run id
            run_id, _, path = artifact_uri.removeprefix("runs:/").partition("/")
            parent, name = posixpath.split(path.strip("/"))
            if not name:
                raise InvalidInput(f"{artifact_uri} names a whole run; name one CSV or Parquet file in it")
            where = f"runs:/{run_id}/{parent}".rstrip("/")
            listed = self._call(f"list {where}", lambda: self._client.list_artifacts(run_id, parent or None))
        else:
            where, _, name = artifact_uri.rstrip("/").rpartition("/")
            try:
                listed = self._call(
                    f"list {where}", lambda: list_artifacts(artifact_uri=where, tracking_uri=self.uri)
                )
            except (InvalidInput, Unavailable, ImportError):
                return  # a store MLflow cannot list from here: the download decides
        entry = next((f for f in listed if PurePosixPath(f.path).name == name), None)
        if entry is None:
            held = ", ".join(sorted(PurePosixPath(f.path).name for f in listed)[:10]) or "nothing"
            raise NotFound(f"no artifact {name!r} at {where} (it holds: {held})")
        if entry.is_dir:
            raise InvalidInput(f"{artifact_uri} is a folder; name one CSV or Parquet file in it")
        if entry.file_size is not None and entry.file_size > max_bytes:
            raise InvalidInput(_too_large(artifact_uri, int(entry.file_size), max_bytes))

    def run_metrics(self, run_id: str) -> dict[str, float]:
        run = self._call(f"read run {run_id}", lambda: self._client.get_run(run_id))
        return {k: float(v) for k, v in run.data.metrics.items()}

    # --- aliases ---------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._call(
            f"set {name}@{alias}", lambda: self._client.set_registered_model_alias(name, alias, version)
        )

    def delete_alias(self, name: str, alias: str) -> None:
        self._call(f"delete {name}@{alias}", lambda: self._client.delete_registered_model_alias(name, alias))

    def ping(self) -> None:
        self._call("search", lambda: self._client.search_registered_models(max_results=1))
