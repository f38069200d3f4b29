"""Request bodies to input tensors: Open Inference Protocol v2 and MLflow scoring formats.

Every problem raises `InputError` naming the field (a JSON path into the body) and the
expected signature, so a caller can fix the request without reading server logs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from atoll.deployer.server.model import Signature

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


class InputError(Exception):
    """The request does not match the model's signature (422) or is too large (413)."""

    def __init__(self, field: str, message: str, *, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


def _check_rows(count: int, max_rows: int, field: str) -> None:
    if count > max_rows:
        raise InputError(field, f"{count} rows is more than this server takes ({max_rows})", status=413)
    if count == 0:
        raise InputError(field, "no rows given")


def _bad_cell(rows: Sequence[Any], sig: Signature, field: str) -> InputError:
    """Find the first value that is not a number, to name it in the error."""
    for r, row in enumerate(rows):
        if not isinstance(row, list | tuple):
            return InputError(
                f"{field}[{r}]", f"expected a row of {sig.n_features} numbers, got {_show(row)}"
            )
        if len(row) != sig.n_features:
            return InputError(f"{field}[{r}]", f"row has {len(row)} values; {sig.describe()}")
        for c, value in enumerate(row):
            if not _is_number(value):
                column = f" (column {sig.columns[c]!r})" if sig.columns else ""
                return InputError(
                    f"{field}[{r}][{c}]",
                    f"expected a number ({sig.datatype}){column}, got {_show(value)}",
                )
    return InputError(field, f"values do not fit {sig.describe()}")


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)) or value is None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _numbers(values: Sequence[Any], dtype: np.dtype[Any]) -> npt.NDArray[Any] | None:
    """`values` as an array of `dtype`, or None when a value is not a number (nulls become NaN)."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):  # ragged rows
        return None
    if array.dtype.kind == "O":  # nulls mixed with numbers, or something else
        if not all(_is_number(v) for v in array.reshape(-1)):
            return None
        if dtype.kind != "f":
            return None
    elif array.dtype.kind not in "fiu":
        return None
    try:
        return array.astype(dtype, copy=False)
    except (ValueError, TypeError):
        return None


def to_matrix(rows: Sequence[Any], sig: Signature, field: str) -> npt.NDArray[Any]:
    """A list of equal-length rows of numbers to a contiguous [n, n_features] array."""
    array = _numbers(rows, sig.dtype)
    if array is None or array.ndim != 2 or array.shape[1] != sig.n_features:
        raise _bad_cell(rows, sig, field)
    return np.ascontiguousarray(array)


# --- Open Inference Protocol v2 ---------------------------------------------------------------


def parse_oip(body: Any, sig: Signature, max_rows: int, binary: bytes | None = None) -> npt.NDArray[Any]:
    """`{"inputs": [{name, shape, datatype, data}]}` to the input tensor.

    One tensor named like the graph's input with shape [n, n_features]; or one tensor per
    column (shape [n] or [n, 1]) named like the signature's columns. With the binary tensor
    data extension (`Inference-Header-Content-Length`), a tensor may carry
    `"parameters": {"binary_data_size": N}` instead of `data`: its raw little-endian bytes
    follow the JSON header, in input order.
    """
    if not isinstance(body, dict):
        raise InputError("body", "expected a JSON object with `inputs`")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InputError("inputs", f"expected a non-empty list of tensors; {sig.describe()}")
    offset = 0
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise InputError(f"inputs[{i}]", "expected an object with name, shape, datatype and data")
        parameters = tensor.get("parameters")
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is not None and "data" not in tensor:
            if binary is None or not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InputError(
                    f"inputs[{i}].parameters.binary_data_size",
                    "no binary data of that size follows the JSON header (Inference-Header-Content-Length)",
                )
            tensor["data"] = memoryview(binary)[offset : offset + size]
            offset += size
        for key in ("name", "shape", "datatype", "data"):
            if key not in tensor:
                raise InputError(f"inputs[{i}].{key}", f"missing; {sig.describe()}")
    if len(inputs) == 1 and inputs[0]["name"] == sig.input_name:
        return _oip_tensor(inputs[0], sig, max_rows)
    if sig.columns and all(t["name"] in sig.column_index for t in inputs):
        return _oip_columns(inputs, sig, max_rows)
    if len(inputs) == 1:
        raise InputError(
            "inputs[0].name", f"unknown input {_show(inputs[0]['name'])}; expected {sig.describe()}"
        )
    raise InputError("inputs", f"expected one tensor; {sig.describe()}")


def _oip_shape(tensor: dict[str, Any], field: str) -> list[int]:
    shape = tensor["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InputError(f"{field}.shape", f"expected a list of non-negative integers, got {_show(shape)}")
    return shape


def _oip_datatype(tensor: dict[str, Any], sig: Signature, field: str) -> None:
    if tensor["datatype"] != sig.datatype:
        raise InputError(
            f"{field}.datatype", f"got {_show(tensor['datatype'])}, expected {sig.datatype}; {sig.describe()}"
        )


def _oip_values(tensor: dict[str, Any], sig: Signature, field: str, shape: list[int]) -> npt.NDArray[Any]:
    data = tensor["data"]
    if isinstance(data, memoryview):  # binary tensor data
        need = math.prod(shape) * sig.dtype.itemsize
        if len(data) != need:
            raise InputError(
                f"{field}.parameters.binary_data_size", f"is {len(data)} bytes, shape {shape} needs {need}"
            )
        return np.frombuffer(data, dtype=sig.dtype.newbyteorder("<")).astype(sig.dtype).reshape(shape)
    if not isinstance(data, list):
        raise InputError(f"{field}.data", "expected a list of numbers (flat, row-major, or nested)")
    array = _numbers(data, sig.dtype)
    if array is None:
        raise InputError(f"{field}.data", f"expected numbers of datatype {sig.datatype}")
    if array.size != math.prod(shape):
        raise InputError(f"{field}.data", f"has {array.size} values, shape {shape} needs {math.prod(shape)}")
    return array.reshape(shape)


def _oip_tensor(tensor: dict[str, Any], sig: Signature, max_rows: int) -> npt.NDArray[Any]:
    field = "inputs[0]"
    shape = _oip_shape(tensor, field)
    if len(shape) != 2 or shape[1] != sig.n_features:
        raise InputError(f"{field}.shape", f"got {shape}, expected [-1, {sig.n_features}]; {sig.describe()}")
    _oip_datatype(tensor, sig, field)
    _check_rows(shape[0], max_rows, f"{field}.shape")
    return _oip_values(tensor, sig, field, shape)


def _oip_columns(inputs: list[dict[str, Any]], sig: Signature, max_rows: int) -> npt.NDArray[Any]:
    assert sig.columns is not None
    by_name = {t["name"]: (i, t) for i, t in enumerate(inputs)}
    missing = [c for c in sig.columns if c not in by_name]
    if missing:
        raise InputError("inputs", f"missing input {missing[0]!r} ({len(missing)} missing); {sig.describe()}")
    columns: list[npt.NDArray[Any]] = []
    count: int | None = None
    for name in sig.columns:
        i, tensor = by_name[name]
        field = f"inputs[{i}]"
        shape = _oip_shape(tensor, field)
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise InputError(f"{field}.shape", f"got {shape}, a column input takes [-1] or [-1, 1]")
        if count is None:
            count = shape[0]
            _check_rows(count, max_rows, f"{field}.shape")
        elif shape[0] != count:
            raise InputError(f"{field}.shape", f"has {shape[0]} rows, the first input has {count}")
        _oip_datatype(tensor, sig, field)
        columns.append(_oip_values(tensor, sig, field, shape).reshape(-1))
    return np.ascontiguousarray(np.stack(columns, axis=1))


# --- MLflow scoring (/invocations) -----------------------------------------------------------


def parse_mlflow(body: Any, sig: Signature, max_rows: int, binary: bytes | None = None) -> npt.NDArray[Any]:
    """MLflow's four JSON formats to the input tensor, columns in the signature's order."""
    if not isinstance(body, dict):
        raise InputError("body", f"expected a JSON object with one of {', '.join(MLFLOW_FORMATS)}")
    given = [key for key in MLFLOW_FORMATS if key in body]
    if len(given) != 1:
        what = "none" if not given else ", ".join(given)
        raise InputError("body", f"expected exactly one of {', '.join(MLFLOW_FORMATS)} (got {what})")
    key = given[0]
    value = body[key]
    if key == "dataframe_split":
        return _dataframe_split(value, sig, max_rows)
    if key == "dataframe_records":
        return _records(value, sig, max_rows, key)
    return _instances(value, sig, max_rows, key)


def _dataframe_split(value: Any, sig: Signature, max_rows: int) -> npt.NDArray[Any]:
    field = "dataframe_split"
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise InputError(f"{field}.data", 'expected {"columns": [...], "data": [[...], ...]}')
    data: list[Any] = value["data"]
    _check_rows(len(data), max_rows, f"{field}.data")
    columns = value.get("columns")
    if columns is None or sig.columns is None or columns == sig.columns:
        if columns is not None and len(columns) != sig.n_features:
            raise InputError(f"{field}.columns", f"got {len(columns)} columns; {sig.describe()}")
        return to_matrix(data, sig, f"{field}.data")
    if not isinstance(columns, list):
        raise InputError(f"{field}.columns", "expected a list of column names")
    position = {name: i for i, name in enumerate(columns)}
    missing = [c for c in sig.columns if c not in position]
    if missing:
        raise InputError(
            f"{field}.columns",
            f"missing column {missing[0]!r}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f"; {sig.describe()}",
        )
    order = [position[c] for c in sig.columns]
    width = len(columns)
    for r, row in enumerate(data):
        if not isinstance(row, list) or len(row) != width:
            raise InputError(f"{field}.data[{r}]", f"expected a row of {width} values, one per column")
    return to_matrix([[row[i] for i in order] for row in data], sig, f"{field}.data")


def _records(value: Any, sig: Signature, max_rows: int, field: str) -> npt.NDArray[Any]:
    if not isinstance(value, list):
        raise InputError(field, "expected a list of {column: value} objects")
    _check_rows(len(value), max_rows, field)
    if sig.columns is None:
        raise InputError(field, f"this model has no column names; send rows as lists. {sig.describe()}")
    rows: list[list[Any]] = []
    for r, record in enumerate(value):
        if not isinstance(record, dict):
            raise InputError(f"{field}[{r}]", "expected a {column: value} object")
        try:
            rows.append([record[c] for c in sig.columns])
        except KeyError as exc:
            raise InputError(f"{field}[{r}].{exc.args[0]}", f"missing column; {sig.describe()}") from None
    return to_matrix(rows, sig, field)


def _instances(value: Any, sig: Signature, max_rows: int, field: str) -> npt.NDArray[Any]:
    if isinstance(value, dict):  # {"column": [values...]}
        if sig.columns is None:
            raise InputError(field, f"this model has no column names; send rows as lists. {sig.describe()}")
        missing = [c for c in sig.columns if c not in value]
        if missing:
            raise InputError(f"{field}.{missing[0]}", f"missing column; {sig.describe()}")
        lengths = {len(v) if isinstance(v, list) else -1 for v in (value[c] for c in sig.columns)}
        if len(lengths) != 1 or -1 in lengths:
            raise InputError(field, "expected every column to be a list of the same length")
        _check_rows(lengths.pop(), max_rows, field)
        return to_matrix(list(zip(*(value[c] for c in sig.columns), strict=True)), sig, field)
    if not isinstance(value, list):
        raise InputError(field, "expected a list of rows")
    _check_rows(len(value), max_rows, field)
    if value and isinstance(value[0], dict):
        return _records(value, sig, max_rows, field)
    return to_matrix(value, sig, field)
