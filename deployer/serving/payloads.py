"""What both codecs share: JSON values to the input matrix, and numpy arrays to JSON.

A value that is not a number raises `InputError` naming its place in the body (row and
column, and the column's name when the signature has names).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from atoll.deployer.serving.contract import InputError, Signature


def check_row_count(count: int, max_rows: int, field: str) -> None:
    if count > max_rows:
        raise InputError(field, f"{count} rows is more than this server takes ({max_rows})", status=413)
    if count == 0:
        raise InputError(field, "no rows given")


def bad_cell(rows: Sequence[Any], sig: Signature, field: str) -> InputError:
    """Find the first value that is not a number, to name it in the error."""
    for r, row in enumerate(rows):
        if not isinstance(row, list | tuple):
            return InputError(f"{field}[{r}]", f"expected a row of {sig.n_features} numbers, got {show(row)}")
        if len(row) != sig.n_features:
            return InputError(f"{field}[{r}]", f"row has {len(row)} values; {sig.describe()}")
        for c, value in enumerate(row):
            if not is_number(value):
                column = f" (column {sig.columns[c]!r})" if sig.columns else ""
                return InputError(
                    f"{field}[{r}][{c}]",
                    f"expected a number ({sig.datatype}){column}, got {show(value)}",
                )
    return InputError(field, f"values do not fit {sig.describe()}")


def is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)) or value is None


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def numbers(values: Sequence[Any], dtype: np.dtype[Any]) -> npt.NDArray[Any] | None:
    """`values` as an array of `dtype`, or None when a value is not a number (nulls become NaN)."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):  # ragged rows
        return None
    if array.dtype.kind == "O":  # nulls mixed with numbers, or something else
        if not all(is_number(v) for v in array.reshape(-1)):
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
    array = numbers(rows, sig.dtype)
    if array is None or array.ndim != 2 or array.shape[1] != sig.n_features:
        raise bad_cell(rows, sig, field)
    return np.ascontiguousarray(array)


def _to_list(value: Any) -> Any:
    if isinstance(value, np.ndarray):  # dtypes orjson does not serialise natively
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(content: Any) -> bytes:
    """JSON with numpy arrays written by orjson directly (no Python list in between)."""
    return orjson.dumps(content, default=_to_list, option=orjson.OPT_SERIALIZE_NUMPY)
