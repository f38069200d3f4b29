"""The ONNX runtime: `model.onnx` in an ONNX Runtime session, on the providers the backend's
catalog entry picks for this machine (`Backend.providers`, the rule builds follow too)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from atoll.backends import Backend
from atoll.deployer.serving.contract import Signature, TensorSpec, oip_datatype
from atoll.deployer.serving.runtime import LoadedModel, ModelLoadError
from atoll.registry.builds.manifest import MANIFEST_FILE, ONNX_FILE, BuildManifest

_ONNX_TYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(string)": np.dtype(object),
}


def default_threads() -> int:
    """Intra-op threads: leave a core to the event loop (1 thread on 2 cores, half above)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // 2)


@dataclass
class OnnxRuntimeModel(LoadedModel):
    """A loaded ONNX build; `session` is the `onnxruntime.InferenceSession` (thread-safe)."""

    platform: ClassVar[str] = "onnxruntime"

    def run(self, rows: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
        values = self.session.run(None, {self.signature.input_name: rows})
        return {spec.name: np.asarray(value) for spec, value in zip(self.outputs, values, strict=True)}


def load_onnx_build(
    build_dir: Path, manifest: BuildManifest, *, backend: Backend | None, threads: int | None = None
) -> OnnxRuntimeModel:
    """Open `model.onnx` on the backend's providers and check it against the manifest.

    `backend` is the manifest's entry of the server's catalog; a build for a backend the
    catalog does not know cannot be given providers and is refused with that reason.
    """
    import onnxruntime as ort

    path = build_dir / ONNX_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} does not exist")
    if backend is None:
        raise ModelLoadError(
            f"backend {manifest.backend!r} of this build is not in the backend catalog: serve it with "
            "the catalog it was built with (ATOLL_BACKENDS_FILE)"
        )
    choice = backend.providers(list(ort.get_available_providers()))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=choice.providers)
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"{ONNX_FILE} could not be loaded by ONNX Runtime: {message[:300]}") from None
    provider = session.get_providers()[0]
    notes = [choice.note] if choice.note else []
    if provider != choice.providers[0]:
        notes.append(f"ONNX Runtime could not start {choice.providers[0]} and runs on {provider}")
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
    model = OnnxRuntimeModel(
        manifest=manifest,
        session=session,
        signature=signature,
        outputs=outputs,
        provider=provider,
        provider_note="; ".join(notes) or None,
        threads=options.intra_op_num_threads,
    )
    # One warm-up call: the first run allocates, and a model that cannot run fails here.
    try:
        model.run(np.zeros((1, n_features), dtype=dtype))
    except Exception as exc:
        raise ModelLoadError(
            f"{ONNX_FILE} failed its warm-up run: {str(exc).splitlines()[0][:300]}"
        ) from None
    return model
