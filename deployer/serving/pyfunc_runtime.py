"""The pyfunc runtime: the MLflow model itself, for flavors with no ONNX converter.

The build carries a copy of the model (`mlflow_model/`), loaded through the registry's MLflow
adapter (`atoll.registry.mlflow.model_files`, the one package that imports MLflow). It is
served on the CPU through the same
routes, payload parsing, micro-batching and event log as an ONNX build: the parsed rows
become a DataFrame in the signature's column order and types (or a tensor, for a
tensor-based signature), and whatever `predict` returns becomes the `predictions` output.

What the server can parse is numeric: a model whose signature has string, binary or
datetime columns keeps readiness false with that reason (serve it with `mlflow models
serve`). A model with no signature is served when its input example is a numeric table.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from atoll.deployer.serving.contract import InputError, Signature, TensorSpec, oip_datatype
from atoll.deployer.serving.runtime import LoadedModel, ModelLoadError
from atoll.errors import AtollError
from atoll.registry.builds.manifest import PYFUNC_DIR, BuildManifest
from atoll.registry.mlflow.model_files import LocalModel, load_pyfunc, read_local_model

# MLflow column types the server can fill from numbers, and the dtype each column gets.
COLUMN_DTYPES: dict[str, np.dtype[Any]] = {
    "double": np.dtype(np.float64),
    "float": np.dtype(np.float32),
    "long": np.dtype(np.int64),
    "integer": np.dtype(np.int32),
    "boolean": np.dtype(np.bool_),
}
PREDICTIONS = "predictions"


@dataclass
class PyfuncModel(LoadedModel):
    """A loaded pyfunc build; `session` is the `mlflow.pyfunc.PyFuncModel`."""

    platform: ClassVar[str] = "mlflow_pyfunc"
    column_dtypes: list[np.dtype[Any]] | None = None  # None: a tensor input, passed as is
    integral: list[int] = field(default_factory=list)  # column positions that take whole numbers
    # One predict at a time: an ONNX session is thread-safe, a user's PythonModel need not be
    # (the batcher may run a full batch inline while another runs in its worker thread).
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check_rows(self, rows: npt.NDArray[Any]) -> None:
        """Integer and boolean columns take whole numbers: 1.5 is refused, not truncated."""
        if not self.integral:
            return
        part = rows[:, self.integral]
        bad = ~np.isfinite(part) | (part != np.round(part))
        if bad.any():
            row, column = (int(i) for i in np.argwhere(bad)[0])
            name = (self.signature.columns or [])[self.integral[column]]
            raise InputError(
                name,
                f"takes whole numbers ({self.column_dtypes and self.column_dtypes[self.integral[column]]}); "
                f"row {row} has {part[row, column]!r}",
            )

    def run(self, rows: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
        data: Any = rows
        if self.column_dtypes is not None:
            import pandas as pd

            columns = self.signature.columns or []
            data = pd.DataFrame(
                {
                    name: rows[:, i].astype(dtype)
                    for i, (name, dtype) in enumerate(zip(columns, self.column_dtypes, strict=True))
                }
            )
        with self._lock:
            predictions = _as_array(self.session.predict(data))
        if predictions.ndim == 0 or predictions.shape[0] != rows.shape[0]:
            raise ValueError(f"predict returned {predictions.shape[:1]} rows for {rows.shape[0]}")
        return {PREDICTIONS: predictions}


def _as_array(result: Any) -> npt.NDArray[Any]:
    """A prediction (ndarray, Series, DataFrame, list) as an array; one-column frames flattened."""
    to_numpy = getattr(result, "to_numpy", None)
    array = np.asarray(to_numpy() if to_numpy is not None else result)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array.reshape(-1)
    return array


def _columns(local: LocalModel) -> tuple[list[str], list[np.dtype[Any]]]:
    """Column names and dtypes from the signature, else from a numeric input example."""
    if local.input_columns is not None and local.input_types is not None:
        unsupported = [
            f"{name} ({kind})"
            for name, kind in zip(local.input_columns, local.input_types, strict=True)
            if kind not in COLUMN_DTYPES
        ]
        if unsupported:
            raise ModelLoadError(
                f"atoll serve parses numeric inputs; column {unsupported[0]} is not "
                f"({len(unsupported)} such columns): serve this model with `mlflow models serve`"
            )
        dtypes: list[np.dtype[Any]] = [COLUMN_DTYPES[k] for k in local.input_types]
        return list(local.input_columns), dtypes
    example = local.input_example
    found = getattr(example, "dtypes", None)
    if example is not None and found is not None and all(np.dtype(d).kind in "fiub" for d in found):
        return [str(c) for c in example.columns], [np.dtype(d) for d in found]
    raise ModelLoadError(
        "the model has no column signature and no numeric input example, so its inputs are "
        "unknown: log it with a signature (mlflow infers one from input_example)"
    )


def load_pyfunc_build(build_dir: Path, manifest: BuildManifest) -> PyfuncModel:
    path = build_dir / PYFUNC_DIR
    if not (path / "MLmodel").is_file():
        raise ModelLoadError(
            f"{path} holds no MLflow model; rebuild this version (pyfunc builds made before "
            "the server ran them did not carry a copy)"
        )
    try:
        local = read_local_model(path)
        predictor = load_pyfunc(local)
    except AtollError as exc:
        raise ModelLoadError(str(exc)) from None

    column_dtypes: list[np.dtype[Any]] | None
    if local.tensor_input is not None:
        shape, dtype = local.tensor_input.shape, np.dtype(local.tensor_input.dtype)
        if len(shape) != 2 or shape[1] < 1 or dtype.kind not in "fiu":
            raise ModelLoadError(
                f"atoll serve takes one numeric 2-D input; this model's tensor is {dtype} {shape}"
            )
        columns, column_dtypes, n_features, parse_dtype = None, None, shape[1], dtype
    else:
        names, column_dtypes = _columns(local)
        columns, n_features = names, len(names)
        floats = [d for d in column_dtypes if d.kind == "f"]
        parse_dtype = np.dtype(np.float64) if floats or not column_dtypes else np.dtype(np.int64)
    signature = Signature(
        input_name=manifest.input_name or "input",
        n_features=n_features,
        dtype=parse_dtype,
        columns=columns,
        column_index={name: i for i, name in enumerate(columns or [])},
    )
    integral = [i for i, d in enumerate(column_dtypes or []) if d.kind in "iub"]
    model = PyfuncModel(
        manifest=manifest,
        session=predictor,
        signature=signature,
        outputs=[],
        provider="mlflow.pyfunc",
        provider_note=None,
        threads=1,
        column_dtypes=column_dtypes,
        integral=integral if parse_dtype.kind == "f" else [],
    )
    # The warm-up call: a model that cannot run on its own signature fails here, and the
    # output's datatype and width are read from what it returns.
    try:
        warm = model.run(np.zeros((1, n_features), dtype=parse_dtype))[PREDICTIONS]
    except Exception as exc:
        raise ModelLoadError(
            f"the pyfunc model failed its warm-up run: {str(exc).splitlines()[0][:300]}"
        ) from None
    datatype = "BYTES" if warm.dtype.kind in "OSU" else oip_datatype(warm.dtype)
    model.outputs = [TensorSpec(PREDICTIONS, datatype, [-1, *warm.shape[1:]])]
    return model
