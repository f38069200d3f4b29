"""`atoll serve` over a pyfunc build: an MLflow model with no ONNX converter, built by the
real build step and served by a real subprocess through the same routes as ONNX builds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from atoll.backends import load_catalog
from atoll.registry.builds import steps as build_steps
from atoll.registry.builds.manifest import PYFUNC_DIR, BuildManifest
from atoll.registry.mlflow.model_files import read_local_model

from .test_model_server import Served, assert_problem, start_server, stop_server

SCORER = """
import mlflow
from mlflow.pyfunc import PythonModel


class Scorer(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input["x"] * 2 + model_input["n"]


mlflow.models.set_model(Scorer())
"""

TAGGER = """
import mlflow
from mlflow.pyfunc import PythonModel


class Tagger(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input["city"].str.upper()


mlflow.models.set_model(Tagger())
"""


def _pyfunc_build(tmp_path: Path, code: str, example: pd.DataFrame) -> Path:
    """Save a models-from-code pyfunc model and run the real build step over it (cpu backend)."""
    import mlflow

    source = tmp_path / "model_code.py"
    source.write_text(code)
    saved = tmp_path / "saved"
    mlflow.pyfunc.save_model(
        str(saved), python_model=str(source), input_example=example, pip_requirements=["pandas"]
    )
    local = read_local_model(saved)
    out = tmp_path / "build"
    outcome = build_steps.make(local, load_catalog().get("cpu"), "scores", 2, out)
    assert outcome.failure is None and outcome.format == "pyfunc"
    outcome.manifest.save(out)
    return out


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for served in started:
        stop_server(served)


def _settled_readiness(served: Served, timeout: float = 60) -> httpx.Response:
    """Readiness once loading is over (a pyfunc build imports MLflow first: seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        ready = httpx.get(f"{served.url}/v2/health/ready")
        if ready.status_code == 200 or ready.json().get("state") != "loading" or time.monotonic() > deadline:
            return ready
        time.sleep(0.2)


def test_a_pyfunc_build_is_served_through_oip_and_mlflow_scoring(
    tmp_path: Path, database_url: str, servers: list[Served]
) -> None:
    example = pd.DataFrame({"x": [1.5, 2.0], "n": [1, 2]})
    build = _pyfunc_build(tmp_path, SCORER, example)
    assert (build / PYFUNC_DIR / "MLmodel").is_file()  # self-contained: no MLflow server needed
    manifest = BuildManifest.load(build)
    assert manifest.format == "pyfunc" and manifest.input_columns == ["x", "n"] and manifest.n_features == 2

    served = start_server(build, database_url, tmp_path / "serve.log")
    servers.append(served)
    metadata = httpx.get(f"{served.url}/v2/models/scores").json()
    assert metadata["platform"] == "mlflow_pyfunc"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 2]}]
    assert metadata["outputs"] == [{"name": "predictions", "datatype": "FP64", "shape": [-1]}]
    assert metadata["parameters"]["input_columns"] == ["x", "n"]

    split = {"dataframe_split": {"columns": ["n", "x"], "data": [[1, 1.5], [3, 2.0]]}}
    scored = httpx.post(f"{served.url}/invocations", json=split)
    assert scored.status_code == 200, scored.text
    assert scored.json() == {"predictions": [4.0, 7.0]}
    records = httpx.post(f"{served.url}/invocations", json={"dataframe_records": [{"x": 0.25, "n": 10}]})
    assert records.json() == {"predictions": [10.5]}

    tensor = {"inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP64", "data": [1.0, 1, 2.5, 4]}]}
    inferred = httpx.post(f"{served.url}/v2/models/scores/infer", json=tensor)
    assert inferred.status_code == 200, inferred.text
    assert inferred.json()["outputs"][0]["data"] == [3.0, 9.0]

    fractional = assert_problem(
        httpx.post(f"{served.url}/invocations", json={"dataframe_records": [{"x": 1.0, "n": 1.5}]}), 422
    )
    assert fractional["field"] == "n" and "whole numbers" in fractional["detail"]
    missing = assert_problem(
        httpx.post(f"{served.url}/invocations", json={"dataframe_records": [{"x": 1.0}]}), 422
    )
    assert "n" in missing["detail"] and missing["expected"]["columns"] == ["x", "n"]


def test_a_pyfunc_model_with_text_inputs_keeps_readiness_false_with_the_reason(
    tmp_path: Path, database_url: str, servers: list[Served]
) -> None:
    build = _pyfunc_build(tmp_path, TAGGER, pd.DataFrame({"city": ["oslo", "lima"]}))
    served = start_server(build, database_url, tmp_path / "serve.log", wait_ready=False)
    servers.append(served)
    ready = _settled_readiness(served)
    assert ready.status_code == 503
    assert "column city (string)" in ready.json()["reason"]
    assert "mlflow models serve" in ready.json()["reason"]
    body = assert_problem(httpx.post(f"{served.url}/invocations", json={"instances": [["oslo"]]}), 503)
    assert "city" in body["detail"]


def test_a_pyfunc_build_without_its_model_copy_asks_for_a_rebuild(
    tmp_path: Path, database_url: str, servers: list[Served]
) -> None:
    build = tmp_path / "old-build"
    BuildManifest(
        model_name="old",
        version=1,
        backend="cpu",
        precision="fp32",
        format="pyfunc",
        runtime_provider="CPUExecutionProvider",
        model_uri="models:/old/1",
    ).save(build)
    served = start_server(build, database_url, tmp_path / "serve.log", wait_ready=False)
    servers.append(served)
    ready = _settled_readiness(served)
    assert ready.status_code == 503 and "rebuild this version" in ready.json()["reason"]
    metadata: dict[str, Any] = httpx.get(f"{served.url}/v2/models/old").json()
    assert metadata["platform"] == "mlflow_pyfunc" and metadata["parameters"]["ready"] is False
