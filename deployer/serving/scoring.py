"""The MLflow scoring codec (`/invocations`): MLflow's four JSON request formats in,
`{"predictions": [...]}` out, as `mlflow models serve` answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from atoll.deployer.serving.contract import InputError, Signature
from atoll.deployer.serving.payloads import check_row_count, dumps, to_matrix
from atoll.deployer.serving.runtime import LoadedModel

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


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
    check_row_count(len(data), max_rows, f"{field}.data")
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
    check_row_count(len(value), max_rows, field)
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
        check_row_count(lengths.pop(), max_rows, field)
        return to_matrix(list(zip(*(value[c] for c in sig.columns), strict=True)), sig, field)
    if not isinstance(value, list):
        raise InputError(field, "expected a list of rows")
    check_row_count(len(value), max_rows, field)
    if value and isinstance(value[0], dict):
        return _records(value, sig, max_rows, field)
    return to_matrix(value, sig, field)


def render_mlflow(
    model_name: str,
    model_version: str,
    model: LoadedModel,
    outputs: dict[str, npt.NDArray[Any]],
    payload: Any,
    request_id: str,
) -> bytes:
    """The label output as `predictions` (a one-column output flattened)."""
    labels = outputs[model.label_output]
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.reshape(-1)
    return dumps({"predictions": np.ascontiguousarray(labels)})
