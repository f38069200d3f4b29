"""XGBoost builds: a version logged with `mlflow.xgboost` (a Booster) gets real ONNX builds on
every backend through a real MLflow server and the worker; XGBoost's scikit-learn API logged
with `mlflow.sklearn` or `mlflow.xgboost` goes through the same build step."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import make_regression
from sqlalchemy.orm import Session, sessionmaker

from atoll.backends import load_catalog
from atoll.registry.builds import steps as build_steps
from atoll.registry.mlflow.model_files import read_local_model
from atoll.settings import Settings

from .conftest import Caller
from .test_builds import _builds, _drain, _register
from .test_builds_lightgbm import _frame, assert_sklearn_api_build, assert_tree_builds

# not f0, f1...: onnxmltools' XGBoost converter takes no other names, the build converts a copy
COLUMNS = [f"col_{i}" for i in range(12)]
XGB_TYPES = [  # what skops must trust to load an XGBClassifier logged with mlflow.sklearn
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBClassifier",
]


def _named(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    frame, labels = _frame(rows=rows, seed=seed)
    return frame.set_axis(COLUMNS, axis=1), labels


def _log_booster(mlflow_uri: str) -> str:
    """A binary:logistic Booster (`xgboost.train`, 60 trees) on named columns."""
    import xgboost

    mlflow.set_tracking_uri(mlflow_uri)
    frame, labels = _named(rows=500, seed=3)
    params = {"objective": "binary:logistic", "max_depth": 4, "seed": 0}
    booster = xgboost.train(params, xgboost.DMatrix(frame, label=labels), num_boost_round=60)
    with mlflow.start_run() as run:
        mlflow.xgboost.log_model(booster, name="model", input_example=frame[:8], pip_requirements=["xgboost"])
    return str(run.info.run_id)


def test_an_xgboost_booster_gets_onnx_builds_on_every_backend(
    registry_client: TestClient,
    admin: Caller,
    mlflow_uri: str,
    registry_settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    name = _register(registry_client, admin, _log_booster(mlflow_uri))
    assert _drain(session_factory, registry_settings) == 3
    assert_tree_builds(_builds(registry_client, admin, name), COLUMNS, "xgboost")


def _save_sklearn_api(kind: str, path: Path) -> None:
    """XGBoost's scikit-learn API saved as MLflow saves it: `mlflow.sklearn` (skops) for the
    classifier, `mlflow.xgboost` for the regressor."""
    import xgboost

    frame, labels = _named(rows=400, seed=5)
    if kind == "sklearn-flavor-classifier":
        model = xgboost.XGBClassifier(n_estimators=40, max_depth=4, random_state=0).fit(frame, labels)
        mlflow.sklearn.save_model(
            model,
            str(path),
            input_example=frame[:5],
            pip_requirements=["xgboost"],
            skops_trusted_types=XGB_TYPES,
        )
        return
    features, target = make_regression(n_samples=400, n_features=len(COLUMNS), noise=3.0, random_state=5)
    frame = pd.DataFrame(features, columns=COLUMNS)
    # depth 3: deeper trees on targets in the hundreds measured 1.0e-5 to 1.3e-5 relative at
    # predictions near 0 (float32 sums of large leaves, in XGBoost as in ONNX Runtime), which
    # the cpu threshold fails; see docs/backends.md
    regressor = xgboost.XGBRegressor(n_estimators=40, max_depth=3, random_state=0).fit(frame, target)
    mlflow.xgboost.save_model(regressor, str(path), input_example=frame[:5], pip_requirements=["xgboost"])


@pytest.mark.parametrize("kind", ["sklearn-flavor-classifier", "xgboost-flavor-regressor"])
def test_xgboost_scikit_learn_api_models_get_onnx_builds(tmp_path: Path, kind: str) -> None:
    _save_sklearn_api(kind, tmp_path / "saved")
    local = read_local_model(tmp_path / "saved")
    assert ("sklearn" in local.flavors) is (kind == "sklearn-flavor-classifier")
    outcome = build_steps.make(local, load_catalog().get("cpu"), "xgb", 1, tmp_path / "build")
    assert_sklearn_api_build(outcome, kind, COLUMNS)


def test_an_unsupported_xgboost_objective_gets_a_pyfunc_build_that_names_it(tmp_path: Path) -> None:
    import xgboost

    frame, labels = _named(rows=200, seed=7)
    booster = xgboost.train({"objective": "binary:logitraw"}, xgboost.DMatrix(frame, label=labels), 10)
    mlflow.xgboost.save_model(
        booster, str(tmp_path / "saved"), input_example=frame[:5], pip_requirements=["xgboost"]
    )
    local = read_local_model(tmp_path / "saved")
    outcome = build_steps.make(local, load_catalog().get("cpu"), "xgb", 1, tmp_path / "build")
    assert outcome.format == "pyfunc"
    assert "no ONNX conversion for the XGBoost objective binary:logitraw" in outcome.notes[0]
