"""LightGBM builds: a version logged with `mlflow.lightgbm` (a Booster) gets real ONNX builds on
every backend through a real MLflow server and the worker; LightGBM's scikit-learn API logged
with `mlflow.sklearn` or `mlflow.lightgbm` goes through the same build step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import make_classification, make_regression
from sqlalchemy.orm import Session, sessionmaker

from atoll.backends import load_catalog
from atoll.registry.builds import steps as build_steps
from atoll.registry.builds.manifest import BuildManifest
from atoll.registry.mlflow.model_files import read_local_model
from atoll.settings import Settings

from .conftest import Caller
from .test_builds import _builds, _drain, _register, build_figures

COLUMNS = [f"f{i}" for i in range(12)]
LGBM_TYPES = [  # what skops must trust to load an LGBMClassifier logged with mlflow.sklearn
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
]


def _frame(rows: int = 500, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    features, labels = make_classification(
        n_samples=rows, n_features=len(COLUMNS), n_informative=6, random_state=seed
    )
    return pd.DataFrame(features, columns=COLUMNS), labels


def _log_booster(mlflow_uri: str) -> str:
    """A binary-objective Booster (`lightgbm.train`, 60 trees) on named columns."""
    import lightgbm

    mlflow.set_tracking_uri(mlflow_uri)
    frame, labels = _frame()
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 0}
    booster = lightgbm.train(params, lightgbm.Dataset(frame, labels), num_boost_round=60)
    with mlflow.start_run() as run:
        mlflow.lightgbm.log_model(
            booster, name="model", input_example=frame[:8], pip_requirements=["lightgbm"]
        )
    return str(run.info.run_id)


def assert_tree_builds(built: dict[str, dict[str, Any]], columns: list[str], original: str) -> None:
    """A binary tree-ensemble classifier's builds: ONNX on every backend, the trees fp32, parity
    held, the manifest's columns and classes; prints the figures."""
    assert sorted(built) == ["asic", "cpu", "gpu"]
    report = {}
    for backend, build in built.items():
        assert build["status"] == "succeeded", (backend, build["error"])
        assert build["format"] == "onnx", build["note"]
        assert build["parity"]["passed"] is True
        assert build["parity"]["max_abs_diff"] < 1e-5  # trees stay fp32 on every backend
        assert build["parity"]["label_agreement"] == 1.0
        assert build["parity"]["sets"]["input_example"]["rows"] == 8
        assert build["parity"]["sets"]["sample"]["rows"] == 256
        assert (
            build["latency"]["batch_1"]["p50_ms"] > 0
            and build["latency"]["original"]["batch_64"]["p50_ms"] > 0
        )
        manifest = BuildManifest.load(Path(build["artifact_uri"]))
        assert manifest.format == "onnx" and manifest.input_columns == columns and manifest.n_features == 12
        assert manifest.classes == [0, 1] and manifest.proba_output == "probabilities"
        report[backend] = build_figures(build, original)
    print(f"\n{original} Booster builds: {json.dumps(report, indent=1)}")
    assert built["asic"]["precision"] == "int8" and built["asic"]["emulated"] is True
    assert "found no MatMul/Gemm to quantise (TreeEnsembleClassifier stay fp32)" in built["asic"]["note"]
    assert built["gpu"]["precision"] == "fp32"
    assert "no operator of this graph has an fp16 kernel (TreeEnsembleClassifier)" in built["gpu"]["note"]
    assert built["cpu"]["precision"] == "fp32"


def test_a_lightgbm_booster_gets_onnx_builds_on_every_backend(
    registry_client: TestClient,
    admin: Caller,
    mlflow_uri: str,
    registry_settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    name = _register(registry_client, admin, _log_booster(mlflow_uri))
    assert _drain(session_factory, registry_settings) == 3
    assert_tree_builds(_builds(registry_client, admin, name), COLUMNS, "lightgbm")


def _save_sklearn_api(kind: str, path: Path) -> None:
    """LightGBM's scikit-learn API saved as MLflow saves it: `mlflow.sklearn` (skops) for the
    classifier, `mlflow.lightgbm` for the regressor."""
    import lightgbm

    frame, labels = _frame(rows=400, seed=5)
    if kind == "sklearn-flavor-classifier":
        model = lightgbm.LGBMClassifier(n_estimators=40, verbose=-1).fit(frame, labels)
        mlflow.sklearn.save_model(
            model,
            str(path),
            input_example=frame[:5],
            pip_requirements=["lightgbm"],
            skops_trusted_types=LGBM_TYPES,
        )
        return
    features, target = make_regression(n_samples=400, n_features=len(COLUMNS), noise=3.0, random_state=5)
    frame = pd.DataFrame(features, columns=COLUMNS)
    regressor = lightgbm.LGBMRegressor(n_estimators=40, verbose=-1).fit(frame, target)
    mlflow.lightgbm.save_model(regressor, str(path), input_example=frame[:5], pip_requirements=["lightgbm"])


def assert_sklearn_api_build(outcome: build_steps.Outcome, kind: str, columns: list[str]) -> None:
    """An ONNX build of a scikit-learn-API tree model (classifier or regressor by `kind`)
    within the cpu thresholds; prints the parity figures."""
    assert outcome.format == "onnx" and outcome.failure is None, outcome.notes
    parity: dict[str, Any] = outcome.parity or {}
    print(
        f"\n{kind}: {json.dumps({k: parity[k] for k in ('max_abs_diff', 'max_scaled_diff', 'label_agreement')})}"
    )
    assert parity["passed"] is True and parity["max_scaled_diff"] < 1e-5
    assert outcome.manifest.input_columns == columns
    if kind == "sklearn-flavor-classifier":
        assert parity["label_agreement"] == 1.0 and outcome.manifest.classes == [0, 1]
    else:
        assert parity["label_agreement"] is None and outcome.manifest.classes is None


@pytest.mark.parametrize("kind", ["sklearn-flavor-classifier", "lightgbm-flavor-regressor"])
def test_lightgbm_scikit_learn_api_models_get_onnx_builds(tmp_path: Path, kind: str) -> None:
    _save_sklearn_api(kind, tmp_path / "saved")
    local = read_local_model(tmp_path / "saved")
    assert ("sklearn" in local.flavors) is (kind == "sklearn-flavor-classifier")
    outcome = build_steps.make(local, load_catalog().get("cpu"), "lgbm", 1, tmp_path / "build")
    assert_sklearn_api_build(outcome, kind, COLUMNS)
