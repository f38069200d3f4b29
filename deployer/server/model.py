"""Load a build directory into an ONNX Runtime session (or, for a pyfunc build, MLflow's
pyfunc: see `pyfunc.py`) and describe its signature."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from atoll.registry.build_manifest import MANIFEST_FILE, ONNX_FILE, BuildManifest

log = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"
_ONNX_TYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(string)": np.dtype(object),
}
_OIP_TYPES = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64", "int32": "INT32"}
_OIP_TYPES |= {"bool": "BOOL", "object": "BYTES"}


class ModelLoadError(Exception):
    """The build cannot be served; the message is the reason shown on readiness."""


def oip_datatype(dtype: np.dtype[Any]) -> str:
    return _OIP_TYPES.get(dtype.name, dtype.name.upper())


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: list[int]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


@dataclass(frozen=True)
class Signature:
    """What a caller must send: one 2-D tensor of `n_features` columns, in `columns` order."""

    input_name: str
    n_features: int
    dtype: np.dtype[Any]
    columns: list[str] | None = None
    column_index: dict[str, int] = field(default_factory=dict)

    @cached_property
    def datatype(self) -> str:  # cached: numpy's dtype.name costs ~5 us, twice per request
        return oip_datatype(self.dtype)

    def describe(self) -> str:
        text = f"input {self.input_name!r}: {self.datatype} shape [-1, {self.n_features}]"
        if self.columns:
            shown = ", ".join(self.columns[:40]) + (", ..." if len(self.columns) > 40 else "")
            text += f", columns [{shown}]"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "input": self.input_name,
            "datatype": self.datatype,
            "shape": [-1, self.n_features],
            "columns": self.columns,
        }


def choose_provider(requested: str, available: list[str]) -> tuple[str, str | None]:
    """The provider to use and, when it is not the requested one, why."""
    if requested in available:
        return requested, None
    return CPU_PROVIDER, f"{requested} is not available here (available: {', '.join(available)})"


def default_threads() -> int:
    """Intra-op threads: leave a core to the event loop (1 thread on 2 cores, half above)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // 2)


@dataclass
class LoadedModel:
    platform: ClassVar[str] = "onnxruntime"

    manifest: BuildManifest
    session: Any  # onnxruntime.InferenceSession (untyped)
    signature: Signature
    outputs: list[TensorSpec]
    provider: str
    provider_note: str | None
    threads: int

    @property
    def label_output(self) -> str:
        names = [o.name for o in self.outputs]
        if self.manifest.label_output in names:
            return self.manifest.label_output
        return names[0]

    def check_rows(self, rows: npt.NDArray[Any]) -> None:
        """Refuse parsed rows the model cannot take (raises `InputError`); ONNX: all fit."""

    def run(self, rows: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
        values = self.session.run(None, {self.signature.input_name: rows})
        return {spec.name: np.asarray(value) for spec, value in zip(self.outputs, values, strict=True)}


def load_manifest(build_dir: Path) -> BuildManifest:
    if not (build_dir / MANIFEST_FILE).is_file():
        raise ModelLoadError(f"{build_dir / MANIFEST_FILE} does not exist; is {build_dir} a build directory?")
    try:
        return BuildManifest.load(build_dir)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        first = str(exc).splitlines()
        raise ModelLoadError(f"{MANIFEST_FILE} is invalid: {' '.join(first[:3])}") from None


def load_model(build_dir: Path, manifest: BuildManifest, *, threads: int | None = None) -> LoadedModel:
    """Open `model.onnx` with the manifest's provider (or the CPU fallback) and check it."""
    if manifest.format == "pyfunc":
        from atoll.deployer.server.pyfunc import load_pyfunc_build

        return load_pyfunc_build(build_dir, manifest)
    import onnxruntime as ort

    path = build_dir / ONNX_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} does not exist")
    provider, note = choose_provider(manifest.runtime_provider, list(ort.get_available_providers()))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=[provider])
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"{ONNX_FILE} could not be loaded by ONNX Runtime: {message[:300]}") from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelLoadError(f"{ONNX_FILE} has {len(inputs)} inputs; the server runs single-tensor models")
    tensor = inputs[0]
    if manifest.input_name and tensor.name != manifest.input_name:
        raise ModelLoadError(
            f"{MANIFEST_FILE} names input {manifest.input_name!r}, the graph has {tensor.name!r}"
        )
    width = tensor.shape[1] if len(tensor.shape) == 2 and isinstance(tensor.shape[1], int) else None
    n_features = manifest.n_features or width or (len(manifest.input_columns or []) or None)
    if n_features is None:
        raise ModelLoadError(f"the input width is unknown: set n_features in {MANIFEST_FILE}")
    if width is not None and width != n_features:
        raise ModelLoadError(f"{MANIFEST_FILE} says {n_features} features, the graph takes {width}")
    columns = manifest.input_columns
    if columns is not None and len(columns) != n_features:
        raise ModelLoadError(f"{MANIFEST_FILE} lists {len(columns)} input_columns for {n_features} features")
    dtype = _ONNX_TYPES.get(tensor.type, np.dtype(manifest.input_dtype))
    signature = Signature(
        input_name=tensor.name,
        n_features=n_features,
        dtype=dtype,
        columns=columns,
        column_index={name: i for i, name in enumerate(columns or [])},
    )
    outputs = [
        TensorSpec(
            o.name,
            oip_datatype(_ONNX_TYPES.get(o.type, np.dtype(object))),
            [d if isinstance(d, int) else -1 for d in o.shape],
        )
        for o in session.get_outputs()
    ]
    model = LoadedModel(manifest, session, signature, outputs, provider, note, options.intra_op_num_threads)
    # One warm-up call: the first run allocates, and a model that cannot run fails here.
    try:
        model.run(np.zeros((1, n_features), dtype=dtype))
    except Exception as exc:
        raise ModelLoadError(
            f"{ONNX_FILE} failed its warm-up run: {str(exc).splitlines()[0][:300]}"
        ) from None
    return model
