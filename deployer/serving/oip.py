"""The Open Inference Protocol v2 codec (`/v2/models/{name}[/versions/{v}]/infer`).

Request: `{"id"?, "parameters"?, "inputs": [{name, shape, datatype, data, parameters?}],
"outputs"?: [{name}]}`; response: `{"model_name", "model_version", "id", "outputs": [{name,
datatype, shape, data}]}`, `data` flat in row-major order. The binary tensor data
extension is read: with an `Inference-Header-Content-Length` header, the JSON header is
followed by raw little-endian tensor bytes (`"parameters": {"binary_data_size": N}` in
place of `data`). Responses are always JSON.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from atoll.deployer.serving.contract import InputError, Signature
from atoll.deployer.serving.payloads import check_row_count, dumps, numbers, show
from atoll.deployer.serving.runtime import LoadedModel


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
            "inputs[0].name", f"unknown input {show(inputs[0]['name'])}; expected {sig.describe()}"
        )
    raise InputError("inputs", f"expected one tensor; {sig.describe()}")


def _oip_shape(tensor: dict[str, Any], field: str) -> list[int]:
    shape = tensor["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InputError(f"{field}.shape", f"expected a list of non-negative integers, got {show(shape)}")
    return shape


def _oip_datatype(tensor: dict[str, Any], sig: Signature, field: str) -> None:
    if tensor["datatype"] != sig.datatype:
        raise InputError(
            f"{field}.datatype", f"got {show(tensor['datatype'])}, expected {sig.datatype}; {sig.describe()}"
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
    array = numbers(data, sig.dtype)
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
    check_row_count(shape[0], max_rows, f"{field}.shape")
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
            check_row_count(count, max_rows, f"{field}.shape")
        elif shape[0] != count:
            raise InputError(f"{field}.shape", f"has {shape[0]} rows, the first input has {count}")
        _oip_datatype(tensor, sig, field)
        columns.append(_oip_values(tensor, sig, field, shape).reshape(-1))
    return np.ascontiguousarray(np.stack(columns, axis=1))


def _flat(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return np.ascontiguousarray(array).reshape(-1)


def render_oip(
    model_name: str,
    model_version: str,
    model: LoadedModel,
    outputs: dict[str, npt.NDArray[Any]],
    payload: Any,
    request_id: str,
) -> bytes:
    """The response body: every output, or those the request's `outputs` names, in its order."""
    wanted = payload.get("outputs")
    names = list(outputs)
    if isinstance(wanted, list) and wanted:
        names = []
        for i, item in enumerate(wanted):
            name = item.get("name") if isinstance(item, dict) else None
            if name not in outputs:
                known = ", ".join(outputs)
                raise InputError(f"outputs[{i}].name", f"unknown output {name!r}; outputs are {known}")
            names.append(name)
    specs = {o.name: o for o in model.outputs}
    return dumps(
        {
            "model_name": model_name,
            "model_version": model_version,
            "id": str(payload.get("id", request_id)),
            "outputs": [
                {
                    "name": name,
                    "datatype": specs[name].datatype,
                    "shape": list(outputs[name].shape),
                    "data": _flat(outputs[name]),
                }
                for name in names
            ],
        }
    )
