"""The Open Inference Protocol v2 codec against the protocol's own example bodies.

`golden/oip/` holds the request and response examples of the specification (HTTP/REST)
and of its Binary Tensor Data Extension, as published (see its README). The examples are
for a model with two inputs; the server runs one-input models, so each input object of
the examples is also read on its own, by a model whose signature is that input.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from atoll.deployer.serving.contract import InputError, Signature, TensorSpec
from atoll.deployer.serving.oip import parse_oip, render_oip
from atoll.deployer.serving.onnx_runtime import OnnxRuntimeModel
from atoll.deployer.serving.predict import decode
from atoll.registry.builds.manifest import BuildManifest

GOLDEN = Path(__file__).resolve().parent / "golden" / "oip"
MAX_ROWS = 100
# The examples' input0: UINT32, shape [2, 2].
INPUT0 = Signature(input_name="input0", n_features=2, dtype=np.dtype(np.uint32))
# What the examples' answers assume the model returns: output0, a [3, 2] FP32 tensor.
OUTPUT0 = np.array([[1.0, 1.1], [2.0, 2.1], [3.0, 3.1]], dtype=np.float32)
# The bytes the binary example's JSON announces (16 for input0, 3 for input1): the page
# does not print them, so these are chosen: little-endian UINT32, and one byte per BOOL.
INPUT0_BYTES = np.array([[1, 2], [3, 4]], dtype="<u4").tobytes()
INPUT1_BYTES = bytes([1, 0, 1])


def golden(name: str) -> Any:
    return orjson.loads((GOLDEN / name).read_bytes())


def served_model(*outputs: str) -> OnnxRuntimeModel:
    """A loaded model as the codec sees it: its outputs (rendering reads nothing else)."""
    manifest = BuildManifest(
        model_name="mymodel",
        version=1,
        backend="cpu",
        precision="fp32",
        format="onnx",
        runtime_provider="CPUExecutionProvider",
        model_uri="models:/mymodel/1",
        input_name="input0",
        n_features=2,
        output_names=list(outputs),
    )
    return OnnxRuntimeModel(
        manifest=manifest,
        session=None,
        signature=INPUT0,
        outputs=[TensorSpec(name, "FP32", [-1, 2]) for name in outputs],
        provider="CPUExecutionProvider",
        provider_note=None,
        threads=1,
    )


def rendered(request: Any, outputs: dict[str, np.ndarray], request_id: str = "rid-7") -> Any:
    body = render_oip("mymodel", "1", served_model(*outputs), outputs, request, request_id)
    return orjson.loads(body)


def without_data(tensors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in t.items() if k not in ("data", "parameters")} for t in tensors]


class TestRequests:
    def test_an_input_object_of_the_example_is_read_row_major(self) -> None:
        spec = golden("infer_request.json")
        input0 = spec["inputs"][0]
        rows = parse_oip({"id": spec["id"], "inputs": [input0]}, INPUT0, MAX_ROWS)
        assert rows.dtype == np.uint32 and rows.tolist() == [[1, 2], [3, 4]]
        nested = {**input0, "data": [[1, 2], [3, 4]]}  # the protocol allows nested data too
        assert parse_oip({"inputs": [nested]}, INPUT0, MAX_ROWS).tolist() == [[1, 2], [3, 4]]

    def test_the_binary_example_splits_at_the_header_length_and_reads_little_endian(self) -> None:
        header = (GOLDEN / "binary_request.json").read_bytes().strip()  # the JSON object as published
        tensors = INPUT0_BYTES + INPUT1_BYTES
        payload, binary = decode(header + tensors, str(len(header)).encode())
        assert payload == golden("binary_request.json") and binary == tensors
        sizes = [t["parameters"]["binary_data_size"] for t in payload["inputs"]]
        assert sizes == [len(INPUT0_BYTES), len(INPUT1_BYTES)]
        rows = parse_oip({"inputs": [payload["inputs"][0]]}, INPUT0, MAX_ROWS, binary)
        assert rows.dtype == np.uint32 and rows.tolist() == [[1, 2], [3, 4]]

    def test_binary_tensors_follow_the_json_in_input_order(self) -> None:
        """input1's 3 bytes are expected after input0's 16: with only input0's, it is refused."""
        payload = golden("binary_request.json")
        with pytest.raises(InputError) as refused:
            parse_oip(payload, INPUT0, MAX_ROWS, INPUT0_BYTES)
        assert refused.value.field == "inputs[1].parameters.binary_data_size"
        assert "Inference-Header-Content-Length" in refused.value.message

    @pytest.mark.parametrize("example", ["infer_request.json", "binary_request.json"])
    def test_the_two_input_examples_are_refused_with_the_signature(self, example: str) -> None:
        payload = copy.deepcopy(golden(example))
        with pytest.raises(InputError) as refused:
            parse_oip(payload, INPUT0, MAX_ROWS, INPUT0_BYTES + INPUT1_BYTES)
        assert refused.value.status == 422 and refused.value.field == "inputs"
        assert "expected one tensor; input 'input0': UINT32 shape [-1, 2]" in refused.value.message


class TestResponses:
    def test_the_answer_is_the_examples_response_object(self) -> None:
        request, expected = golden("infer_request.json"), golden("infer_response.json")
        body = rendered(request, {"output0": OUTPUT0, "output1": np.zeros((3, 2), np.float32)})
        assert body["id"] == expected["id"] == "42"  # the request's id, echoed
        assert without_data(body["outputs"]) == without_data(expected["outputs"])  # only output0
        answered = np.array(body["outputs"][0]["data"], dtype=np.float32)
        np.testing.assert_array_equal(answered, np.array(expected["outputs"][0]["data"], dtype=np.float32))
        assert body["model_name"] == "mymodel" and body["model_version"] == "1"  # required / optional
        assert set(body) <= {"model_name", "model_version", "id", "parameters", "outputs"}

    def test_without_requested_outputs_every_output_is_returned_in_model_order(self) -> None:
        request = {k: v for k, v in golden("infer_request.json").items() if k != "outputs"}
        body = rendered(request, {"output0": OUTPUT0, "output1": OUTPUT0 * 2})
        assert [o["name"] for o in body["outputs"]] == ["output0", "output1"]
        assert all(o["shape"] == [3, 2] and o["datatype"] == "FP32" for o in body["outputs"])

    def test_a_request_without_an_id_is_answered_with_its_request_id(self) -> None:
        request = {k: v for k, v in golden("infer_request.json").items() if k != "id"}
        assert rendered(request, {"output0": OUTPUT0}, request_id="rid-9")["id"] == "rid-9"

    def test_an_output_the_model_lacks_is_refused_naming_it(self) -> None:
        with pytest.raises(InputError) as refused:
            rendered(golden("infer_request.json"), {"label": OUTPUT0})
        assert refused.value.field == "outputs[0].name" and "'output0'" in refused.value.message

    def test_an_output_asked_for_as_binary_is_answered_in_json(self) -> None:
        """The extension's binary outputs are not implemented: the server answers `data` in
        JSON (its metadata lists no extension), which protocol clients read as well."""
        request, spec = golden("binary_request.json"), golden("binary_response.json")
        body = rendered(request, {"output0": OUTPUT0})
        assert without_data(body["outputs"]) == without_data(spec["outputs"])
        output0 = body["outputs"][0]
        assert "parameters" not in output0
        assert len(output0["data"]) * 4 == spec["outputs"][0]["parameters"]["binary_data_size"]
