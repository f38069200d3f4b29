"""What a local MLflow model directory holds, and loading it: the MLmodel file (flavors,
signature, input example) and the model itself as its flavor or as `mlflow.pyfunc` serves it.

No tracking server is involved: builds read the files `MlflowRegistry.download_model`
fetched, and the model server's pyfunc runtime reads the copy a pyfunc build carries. With
`adapter.py` this is the one place that imports MLflow (lazily: `import mlflow` alone costs
about 2 s).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atoll.errors import InvalidInput

# MLflow flavors of gradient-boosted trees that builds convert with onnxmltools (flavor: library)
TREE_FLAVORS = {"lightgbm": "LightGBM", "xgboost": "XGBoost"}


@dataclass(frozen=True)
class TensorInput:
    """A tensor-based signature's one input: numpy dtype name and shape (-1 = any)."""

    dtype: str
    shape: list[int]


@dataclass(frozen=True)
class LocalModel:
    """A version's MLflow model on local disk: where it is and what its MLmodel says."""

    path: Path
    flavors: list[str]
    input_example: Any | None  # numpy array, DataFrame, dict... as MLflow saved it; None if none
    input_columns: list[str] | None  # a column-based signature's names, in order
    integer_columns: list[bool] | None  # per input column: the signature says integer/long
    input_types: list[str] | None = None  # per input column: MLflow's type name (double, long...)
    tensor_input: TensorInput | None = None  # a tensor-based signature with one input


@contextmanager
def _deserialization_allowed() -> Iterator[None]:
    """MLflow 3.17 refuses to unpickle (or un-skops) a model unless this is set.

    Builds load the versions people registered through Atoll (registrar scope) or straight
    into MLflow: the platform trusts its registry. Only build jobs, and the model server
    running a pyfunc build those jobs made, load models.
    """
    key = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
    before = os.environ.get(key)
    os.environ[key] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def read_local_model(path: Path) -> LocalModel:
    """What a local MLflow model directory's MLmodel says (flavors, example, signature)."""
    from mlflow.models import Model

    try:
        info = Model.load(str(path))
        example = info.load_input_example(str(path)) if info.saved_input_example_info else None
    except Exception as exc:
        raise InvalidInput(f"cannot read its MLmodel or input example ({exc})") from None
    columns: list[str] | None = None
    types: list[str] | None = None
    tensor: TensorInput | None = None
    inputs = info.signature.inputs if info.signature is not None else None
    if inputs is not None and not inputs.is_tensor_spec():
        names = inputs.input_names()
        if all(isinstance(n, str) for n in names):
            columns = [str(n) for n in names]
            types = [str(getattr(t, "name", t)) for t in inputs.input_types()]
    elif inputs is not None and len(inputs.inputs) == 1:
        spec = inputs.inputs[0]
        tensor = TensorInput(dtype=str(spec.type), shape=[int(d) for d in spec.shape])
    return LocalModel(
        path=path,
        flavors=sorted(info.flavors),
        input_example=example,
        input_columns=columns,
        integer_columns=[t in {"integer", "long"} for t in types] if types is not None else None,
        input_types=types,
        tensor_input=tensor,
    )


def load_sklearn(model: LocalModel) -> Any:
    """The fitted scikit-learn estimator. skops-saved models are loaded with the trusted
    types their MLmodel lists (`skops_trusted_types`, given when the model was logged)."""
    import mlflow.sklearn

    try:
        with _deserialization_allowed():
            return mlflow.sklearn.load_model(str(model.path))
    except Exception as exc:
        raise InvalidInput(f"cannot load the scikit-learn model: {str(exc)[:400]}") from None


def load_trees(model: LocalModel, flavor: str) -> Any:
    """The model of a `lightgbm` or `xgboost` flavor (`TREE_FLAVORS`): a `Booster`, or a
    scikit-learn-API model (LGBMClassifier, XGBRegressor, ...) as it was logged."""
    loader = importlib.import_module(f"mlflow.{flavor}")
    try:
        with _deserialization_allowed():
            return loader.load_model(str(model.path))
    except Exception as exc:
        raise InvalidInput(f"cannot load the {TREE_FLAVORS[flavor]} model: {str(exc)[:400]}") from None


def load_pyfunc(model: LocalModel) -> Any:
    """The model as `mlflow.pyfunc` serves it (any flavor with a python_function entry)."""
    import mlflow.pyfunc

    try:
        with _deserialization_allowed():
            return mlflow.pyfunc.load_model(str(model.path))
    except Exception as exc:
        raise InvalidInput(f"cannot load the model with mlflow.pyfunc: {str(exc)[:400]}") from None
