"""The request contract of a served model: what a caller must send, and what it is told
when it does not.

A `Signature` is one 2-D input tensor of `n_features` columns (named, in order, when the
build knows the names); a `TensorSpec` describes an output. Every problem with a request
raises `InputError` naming the field (a JSON path into the body) so a caller can fix the
request without reading server logs; the answer also carries the signature (`as_dict`).
Both runtimes (ONNX, pyfunc) and both codecs (Open Inference Protocol v2, MLflow scoring)
speak these types and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

_OIP_TYPES = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64", "int32": "INT32"}
_OIP_TYPES |= {"bool": "BOOL", "object": "BYTES"}


class InputError(Exception):
    """The request does not match the model's signature (422) or is too large (413)."""

    def __init__(self, field: str, message: str, *, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


def oip_datatype(dtype: np.dtype[Any]) -> str:
    """The Open Inference Protocol datatype name of a numpy dtype (FP32, INT64, BYTES...)."""
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
