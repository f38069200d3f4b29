"""scikit-learn, LightGBM and XGBoost → ONNX at every precision of the default catalog, held to its thresholds."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from atoll.backends import load_catalog
from atoll.registry.builds import parity
from atoll.registry.builds.convert import (
    BoosterClassifier,
    BoosterRegressor,
    ConversionUnsupported,
    OnnxModel,
    as_estimator,
    at_precision,
    compute_nodes,
    dedupe_opsets,
    drop_noop_casts,
    is_classifier,
    library,
    lightgbm_to_onnx,
    sklearn_to_onnx,
    to_fp16,
    to_int8,
    to_onnx,
    xgboost_to_onnx,
)

CATALOG = load_catalog()


def _fit(kind: str) -> tuple[Any, np.ndarray]:
    if kind == "regressor":
        features, target = make_regression(n_samples=400, n_features=10, noise=5.0, random_state=0)
        return RandomForestRegressor(n_estimators=40, random_state=0).fit(features, target), features
    features, labels = make_classification(n_samples=600, n_features=30, n_informative=12, random_state=0)
    estimator = {
        "logistic": LogisticRegression(max_iter=2000),
        "gbc": GradientBoostingClassifier(n_estimators=60, random_state=0),
        "mlp": MLPClassifier(hidden_layer_sizes=(32,), max_iter=400, random_state=0),
    }[kind]
    return estimator.fit(features, labels), features


def _run(model: OnnxModel, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    session = ort.InferenceSession(model.model.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = dict(zip(model.output_names, session.run(None, {model.input_name: rows}), strict=True))
    if model.proba_output:
        return outputs[model.proba_output], outputs[model.label_output or ""]
    return outputs[model.output_names[0]], None


def _parity(estimator: Any, model: OnnxModel, features: np.ndarray) -> parity.Diff:
    rows = np.vstack([features[:50], parity.sample_around(features[:50])]).astype(np.float32)
    values, labels = _run(model, rows)
    if model.proba_output:
        return parity.compare(
            estimator.predict_proba(rows.astype(np.float64)),
            values,
            reference_labels=estimator.predict(rows.astype(np.float64)),
            candidate_labels=labels,
        )
    return parity.compare(estimator.predict(rows.astype(np.float64)), values)


@pytest.fixture(scope="module", params=["logistic", "gbc", "regressor", "mlp"])
def fitted(request: pytest.FixtureRequest) -> tuple[str, Any, np.ndarray, OnnxModel]:
    estimator, features = _fit(request.param)
    return request.param, estimator, features, sklearn_to_onnx(estimator, features.shape[1])


@pytest.mark.parametrize("backend", ["cpu", "gpu", "asic"])
def test_every_backend_precision_stays_within_the_catalog_thresholds(
    fitted: tuple[str, Any, np.ndarray, OnnxModel], backend: str
) -> None:
    kind, estimator, features, fp32 = fitted
    entry = CATALOG.get(backend)
    built = at_precision(fp32, entry.default_precision)
    diff = _parity(estimator, built, features)
    verdict = parity.judge(
        diff, max_abs_diff=entry.parity.max_abs_diff, min_label_agreement=entry.parity.min_label_agreement
    )
    if kind == "mlp" and backend == "asic":
        # Really quantised (unlike trees and linear models): measured 0.065 max diff on this
        # MLP, over the asic's 0.05. The build must fail with the numbers, not pass quietly.
        assert built.changed_nodes > 0
        assert verdict.passed is (diff.max_scaled_diff <= entry.parity.max_abs_diff)
        if not verdict.passed:
            assert f"max diff {diff.max_scaled_diff:.3g} exceeds 0.05" in verdict.reasons[0]
        assert diff.label_agreement is not None and diff.label_agreement >= 0.98
        return
    assert verdict.passed, f"{kind} on {backend} ({built.precision}): {verdict.reasons} {built.notes}"


def test_fp32_reproduces_scikit_learn_closely(fitted: tuple[str, Any, np.ndarray, OnnxModel]) -> None:
    kind, estimator, features, fp32 = fitted
    diff = _parity(estimator, fp32, features)
    assert diff.max_scaled_diff < 1e-5, kind
    if diff.label_agreement is not None:
        assert diff.label_agreement == 1.0


def test_classifier_outputs_are_arrays_not_zipmaps() -> None:
    estimator, features = _fit("gbc")
    model = sklearn_to_onnx(estimator, 30)
    assert model.output_names == ["label", "probabilities"]
    assert (model.label_output, model.proba_output, model.classes) == ("label", "probabilities", [0, 1])
    assert "ZipMap" not in {n.op_type for n in model.model.graph.node}
    values, labels = _run(model, features[:3].astype(np.float32))
    assert values.shape == (3, 2) and labels is not None and labels.shape == (3,)


def test_regressor_has_no_label_output() -> None:
    estimator, _ = _fit("regressor")
    model = sklearn_to_onnx(estimator, 10)
    assert model.label_output is None and model.proba_output is None and model.classes is None


def test_tree_and_linear_models_keep_fp32_for_fp16_and_say_so() -> None:
    for kind in ("gbc", "logistic", "regressor"):
        estimator, features = _fit(kind)
        fp16 = to_fp16(sklearn_to_onnx(estimator, features.shape[1]))
        assert fp16.precision == "fp32", kind
        assert fp16.changed_nodes == 0
        assert "no operator of this graph has an fp16 kernel" in fp16.notes[-1]


def test_mlp_runs_in_fp16_with_float32_inputs_and_outputs() -> None:
    estimator, features = _fit("mlp")
    fp16 = to_fp16(sklearn_to_onnx(estimator, 30))
    assert fp16.precision == "fp16" and fp16.changed_nodes > 0
    initializers = {i.data_type for i in fp16.model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in initializers
    assert fp16.model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    diff = _parity(estimator, fp16, features)
    assert 0 < diff.max_abs_diff < 1e-2


def test_mlp_int8_quantises_matmuls() -> None:
    estimator, _ = _fit("mlp")
    int8 = to_int8(sklearn_to_onnx(estimator, 30))
    assert int8.precision == "int8" and int8.changed_nodes > 0
    assert "quantised" in int8.notes[-1]


def test_int8_of_tree_models_changes_nothing_and_says_so() -> None:
    estimator, _ = _fit("gbc")
    int8 = to_int8(sklearn_to_onnx(estimator, 30))
    assert int8.precision == "int8" and int8.changed_nodes == 0
    assert "found no MatMul/Gemm" in int8.notes[-1]


def test_dedupe_opsets_keeps_one_per_domain_and_lets_quantisation_run() -> None:
    estimator, _ = _fit("logistic")
    model = sklearn_to_onnx(estimator, 30)
    model.model.opset_import.extend(
        [onnx.helper.make_opsetid("", 15), onnx.helper.make_opsetid("ai.onnx", 22)]
    )
    before = max(o.version for o in model.model.opset_import if o.domain in ("", "ai.onnx"))
    dedupe_opsets(model.model)
    domains = [o.domain for o in model.model.opset_import]
    assert sorted(domains) == ["", "ai.onnx.ml"]
    assert next(o.version for o in model.model.opset_import if o.domain == "") == before
    to_int8(model)  # "Failed to find proper ai.onnx domain" without the dedupe


def test_skl2onnx_duplicate_opset_is_removed_on_conversion() -> None:
    estimator, _ = _fit("logistic")
    model = sklearn_to_onnx(estimator, 30)
    domains = [o.domain for o in model.model.opset_import]
    assert len(domains) == len(set(domains))


def test_drop_noop_casts_rewires_consumers() -> None:
    node_cast = onnx.helper.make_node("Cast", ["x"], ["x_cast"], to=onnx.TensorProto.FLOAT)
    node_relu = onnx.helper.make_node("Relu", ["x_cast"], ["y"])
    graph = onnx.helper.make_graph(
        [node_cast, node_relu],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 2])],
    )
    model = drop_noop_casts(onnx.helper.make_model(graph))
    assert [n.op_type for n in model.graph.node] == ["Relu"]
    assert list(model.graph.node[0].input) == ["x"]


class _Custom(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    def fit(self, x: np.ndarray, y: np.ndarray) -> _Custom:
        self.classes_ = np.unique(y)
        self.n_features_in_ = x.shape[1]
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.full((len(x), 2), 0.5)


def test_an_estimator_without_a_converter_is_unsupported_with_the_reason() -> None:
    estimator = _Custom().fit(np.zeros((4, 3)), np.array([0, 1, 0, 1]))
    with pytest.raises(ConversionUnsupported, match="skl2onnx cannot convert _Custom"):
        sklearn_to_onnx(estimator, 3)


def test_bf16_is_not_implemented() -> None:
    estimator, _ = _fit("logistic")
    with pytest.raises(ConversionUnsupported, match="no bf16 conversion"):
        at_precision(sklearn_to_onnx(estimator, 30), "bf16")


# --- LightGBM (onnxmltools) ---------------------------------------------------------------

XGBOOST_KINDS = [
    "xgb-binary",
    "xgbooster-binary",
    "xgb-multiclass",
    "xgbooster-multiclass",
    "xgbooster-softmax",
    "xgb-regressor",
    "xgbooster-regressor",
]
LIGHTGBM_KINDS = [
    "lgbm-binary",
    "booster-binary",
    "lgbm-multiclass",
    "booster-multiclass",
    "lgbm-regressor",
    "booster-regressor",
]


def _tree_data(task: str) -> tuple[np.ndarray, np.ndarray]:
    """Training data of the tree-ensemble tests: 10 features for a regressor, 20 and 2 or 3
    classes for `binary` or `multiclass`/`softmax`."""
    if task == "regressor":
        return make_regression(n_samples=400, n_features=10, noise=5.0, random_state=0)  # type: ignore[no-any-return]
    classes = 2 if task == "binary" else 3
    return make_classification(  # type: ignore[no-any-return]
        n_samples=600, n_features=20, n_informative=10, n_classes=classes, random_state=0
    )


def _fit_lightgbm(kind: str) -> tuple[Any, np.ndarray]:
    """LightGBM models (50 trees) through the scikit-learn API (`lgbm-`) or `lightgbm.train`."""
    import lightgbm

    api, task = kind.split("-")
    features, target = _tree_data(task)
    if api == "lgbm":
        estimator = lightgbm.LGBMRegressor if task == "regressor" else lightgbm.LGBMClassifier
        return estimator(n_estimators=50, random_state=0, verbose=-1).fit(features, target), features
    objectives: dict[str, dict[str, Any]] = {
        "regressor": {"objective": "regression"},
        "binary": {"objective": "binary"},
        "multiclass": {"objective": "multiclass", "num_class": 3},
    }
    booster = lightgbm.train(
        {**objectives[task], "verbose": -1, "seed": 0}, lightgbm.Dataset(features, target), 50
    )
    return booster, features


def _lightgbm_own(model: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """LightGBM's own outputs (probabilities and labels, or predictions), not through Atoll."""
    data = rows.astype(np.float64)
    if hasattr(model, "predict_proba"):  # LGBMClassifier
        return model.predict_proba(data), model.predict(data)
    if hasattr(model, "classes_") or not hasattr(model, "num_feature"):  # LGBMRegressor
        return model.predict(data), None
    scores = np.asarray(model.predict(data))  # a Booster
    objective = model.params["objective"]
    if objective == "regression":
        return scores, None
    probabilities = np.column_stack([1 - scores, scores]) if objective == "binary" else scores
    return probabilities, np.argmax(probabilities, axis=1)


def _own(model: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The library's own outputs, LightGBM's or XGBoost's."""
    return _xgboost_own(model, rows) if library(model) == "xgboost" else _lightgbm_own(model, rows)


@pytest.fixture(scope="module", params=LIGHTGBM_KINDS + XGBOOST_KINDS)
def trees_fitted(request: pytest.FixtureRequest) -> tuple[str, Any, np.ndarray, OnnxModel]:
    """LightGBM and XGBoost models converted by `to_onnx` (onnxmltools)."""
    fit = _fit_xgboost if request.param in XGBOOST_KINDS else _fit_lightgbm
    model, features = fit(request.param)
    return request.param, model, features, to_onnx(model, features.shape[1])


def _tree_rows(features: np.ndarray) -> np.ndarray:
    return np.vstack([features[:50], parity.sample_around(features[:50])]).astype(np.float32)


def test_trees_fp32_reproduce_their_library(trees_fitted: tuple[str, Any, np.ndarray, OnnxModel]) -> None:
    kind, model, features, fp32 = trees_fitted
    rows = _tree_rows(features)
    want, want_labels = _own(model, rows)
    got, got_labels = _run(fp32, rows)
    diff = parity.compare(want, got, reference_labels=want_labels, candidate_labels=got_labels)
    print(f"\n{kind}: fp32 vs {library(model)} on {diff.rows} rows: {diff.as_dict()}")
    if kind.endswith("regressor"):
        assert fp32.label_output is None and fp32.proba_output is None and fp32.classes is None
        assert diff.max_scaled_diff < 1e-5, kind  # predictions in the hundreds: relative
    else:
        assert diff.max_abs_diff < 1e-5, kind
        assert diff.label_agreement == 1.0, kind
        width = 3 if "multiclass" in kind or "softmax" in kind else 2
        assert fp32.classes == list(range(width)) and got.shape == (len(rows), width)
        assert (fp32.label_output, fp32.proba_output) == ("label", "probabilities")


@pytest.mark.parametrize("backend", ["cpu", "gpu", "asic"])
def test_trees_every_backend_keeps_the_tree_graph_and_its_thresholds(
    trees_fitted: tuple[str, Any, np.ndarray, OnnxModel], backend: str
) -> None:
    kind, model, features, fp32 = trees_fitted
    entry = CATALOG.get(backend)
    built = at_precision(fp32, entry.default_precision)
    trees = [n for n in fp32.model.graph.node if n.op_type.startswith("TreeEnsemble")]
    assert len(trees) == 1 and compute_nodes(fp32.model) == trees, "only the tree ensemble computes"
    assert [n for n in built.model.graph.node if n.op_type.startswith("TreeEnsemble")] == trees
    assert built.changed_nodes == 0
    if entry.default_precision == "fp16":
        assert built.precision == "fp32"
        assert (
            f"no operator of this graph has an fp16 kernel ({trees[0].op_type}); kept fp32" in built.notes[-1]
        )
    if entry.default_precision == "int8":
        assert built.precision == "int8"
        assert f"found no MatMul/Gemm to quantise ({trees[0].op_type} stay fp32)" in built.notes[-1]
    rows = _tree_rows(features)
    want, want_labels = _own(model, rows)
    got, got_labels = _run(built, rows)
    diff = parity.compare(want, got, reference_labels=want_labels, candidate_labels=got_labels)
    verdict = parity.judge(
        diff, max_abs_diff=entry.parity.max_abs_diff, min_label_agreement=entry.parity.min_label_agreement
    )
    assert verdict.passed, f"{kind} on {backend}: {verdict.reasons}"


def test_lightgbm_graph_has_no_zipmap_no_noop_mul_and_any_batch_size() -> None:
    model, features = _fit_lightgbm("lgbm-binary")
    converted = lightgbm_to_onnx(model, 20)
    ops = {n.op_type for n in converted.model.graph.node}
    assert "ZipMap" not in ops and "Mul" not in ops  # onnxmltools' probabilities * 1 is gone
    assert not converted.model.graph.initializer
    for output in converted.model.graph.output:
        assert not output.type.tensor_type.shape.dim[0].HasField("dim_value"), output.name
    values, labels = _run(converted, features[:7].astype(np.float32))
    assert values.shape == (7, 2) and labels is not None and labels.shape == (7,)


@pytest.mark.parametrize("api", ["lgbm", "xgb"])
def test_booster_adapter_predicts_like_the_scikit_learn_api(api: str) -> None:
    fit = _fit_xgboost if api == "xgb" else _fit_lightgbm
    for kind in (f"{api}-binary", f"{api}-multiclass", f"{api}-regressor"):
        estimator, features = fit(kind)
        booster = estimator.get_booster() if api == "xgb" else estimator.booster_
        adapted = as_estimator(booster)
        classifier = is_classifier(estimator)
        assert isinstance(adapted, BoosterClassifier if classifier else BoosterRegressor), kind
        assert adapted.n_features_in_ == features.shape[1] and adapted.feature_names_in_ is None
        assert library(adapted) == library(estimator)
        np.testing.assert_array_equal(adapted.predict(features), estimator.predict(features))
        if classifier:
            assert isinstance(adapted, BoosterClassifier)
            np.testing.assert_allclose(adapted.predict_proba(features), estimator.predict_proba(features))
            np.testing.assert_array_equal(adapted.classes_, estimator.classes_)
        else:
            assert not is_classifier(adapted)
    assert as_estimator(estimator) is estimator  # not a Booster: unchanged


def test_booster_adapter_keeps_the_training_column_names() -> None:
    import lightgbm
    import pandas as pd

    features, labels = make_classification(n_samples=200, n_features=4, random_state=0)
    frame = pd.DataFrame(features, columns=["a", "b", "c", "d"])
    booster = lightgbm.train({"objective": "binary", "verbose": -1}, lightgbm.Dataset(frame, labels), 5)
    assert list(as_estimator(booster).feature_names_in_) == ["a", "b", "c", "d"]


def test_lightgbm_string_labels_come_back_as_strings() -> None:
    import lightgbm

    features, labels = make_classification(n_samples=300, n_features=8, random_state=0)
    named = np.where(labels == 1, "yes", "no")
    estimator = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(features, named)
    converted = to_onnx(estimator, 8)
    assert converted.classes == ["no", "yes"]
    _, got = _run(converted, features.astype(np.float32))
    assert got is not None and list(got) == list(estimator.predict(features))


def test_to_onnx_picks_the_converter_by_model() -> None:
    lgbm, _ = _fit_lightgbm("lgbm-regressor")
    forest, _ = _fit("regressor")
    assert {n.op_type for n in to_onnx(lgbm, 10).model.graph.node} >= {"TreeEnsembleRegressor"}
    assert library(lgbm) == "lightgbm" and library(forest) == "sklearn"
    assert to_onnx(forest, 10).model.graph.node  # skl2onnx, as before


def test_an_unsupported_lightgbm_objective_is_unsupported_with_the_reason() -> None:
    import lightgbm

    features, labels = make_classification(n_samples=200, n_features=5, random_state=0)
    booster = lightgbm.train(
        {"objective": "cross_entropy", "verbose": -1}, lightgbm.Dataset(features, labels.astype(float)), 5
    )
    with pytest.raises(ConversionUnsupported, match="onnxmltools cannot convert Booster: Unsupported"):
        lightgbm_to_onnx(booster, 5)


# --- XGBoost (onnxmltools) ----------------------------------------------------------------

XGBOOST_OBJECTIVES: dict[str, dict[str, Any]] = {
    "binary": {"objective": "binary:logistic"},
    "multiclass": {"objective": "multi:softprob", "num_class": 3},
    "softmax": {"objective": "multi:softmax", "num_class": 3},
    "regressor": {"objective": "reg:squarederror"},
}


def _fit_xgboost(kind: str) -> tuple[Any, np.ndarray]:
    """XGBoost models (50 trees) through the scikit-learn API (`xgb-`) or `xgboost.train`.
    The Boosters are trained on named columns (`c0`...), which onnxmltools would reject."""
    import pandas as pd
    import xgboost

    api, task = kind.split("-")
    features, target = _tree_data(task)
    if api == "xgb":
        estimator = xgboost.XGBRegressor if task == "regressor" else xgboost.XGBClassifier
        return estimator(n_estimators=50, random_state=0).fit(features, target), features
    frame = pd.DataFrame(features, columns=[f"c{i}" for i in range(features.shape[1])])
    booster = xgboost.train(
        {**XGBOOST_OBJECTIVES[task], "seed": 0}, xgboost.DMatrix(frame, label=target), num_boost_round=50
    )
    return booster, features


def _xgboost_own(model: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """XGBoost's own outputs (probabilities and labels, or predictions), not through Atoll."""
    import xgboost

    data = rows.astype(np.float64)
    if hasattr(model, "predict_proba"):  # XGBClassifier
        return model.predict_proba(data), model.predict(data)
    if not isinstance(model, xgboost.Booster):  # XGBRegressor
        return model.predict(data), None
    matrix = xgboost.DMatrix(data, feature_names=model.feature_names)
    objective = json.loads(model.save_config())["learner"]["objective"]["name"]
    if objective == "multi:softmax":  # labels; the probabilities are the softmax of the margins
        margins = model.predict(matrix, output_margin=True)
        exp = np.exp(margins - margins.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True), model.predict(matrix).astype(int)
    scores = np.asarray(model.predict(matrix))
    if objective.startswith("reg:"):
        return scores, None
    probabilities = np.column_stack([1 - scores, scores]) if objective == "binary:logistic" else scores
    return probabilities, np.argmax(probabilities, axis=1)


def test_xgboost_booster_keeps_its_column_names_and_softmax_predicts_its_labels() -> None:
    booster, features = _fit_xgboost("xgbooster-softmax")
    adapted = as_estimator(booster)
    assert list(adapted.feature_names_in_) == [f"c{i}" for i in range(20)]
    assert booster.feature_names is not None  # the conversion worked on a copy
    _, labels = _xgboost_own(booster, features)
    np.testing.assert_array_equal(adapted.predict(features), labels)
    assert adapted.predict_proba(features).shape == (len(features), 3)


@pytest.mark.parametrize(
    ("objective", "target"),
    [
        ("reg:logistic", "binary"),
        ("binary:logitraw", "binary"),
        ("count:poisson", "count"),
        ("rank:pairwise", "binary"),
    ],
)
def test_an_unsupported_xgboost_objective_is_unsupported_with_its_name(objective: str, target: str) -> None:
    import xgboost

    features, labels = make_classification(n_samples=200, n_features=5, random_state=0)
    label = labels.astype(float) if target == "binary" else labels + 1.0
    booster = xgboost.train({"objective": objective}, xgboost.DMatrix(features, label=label), 5)
    with pytest.raises(ConversionUnsupported, match=f"XGBoost objective {objective} "):
        xgboost_to_onnx(booster, 5)
    with pytest.raises(ConversionUnsupported, match=f"XGBoost objective {objective} "):
        as_estimator(booster)


def test_xgboost_graph_is_the_tree_ensemble_with_an_onnx_opset() -> None:
    model, features = _fit_xgboost("xgbooster-binary")
    converted = xgboost_to_onnx(model, 20)
    assert [n.op_type for n in converted.model.graph.node] == ["TreeEnsembleClassifier"]
    assert {o.domain: o.version for o in converted.model.opset_import} == {"ai.onnx.ml": 1, "": 11}
    values, labels = _run(converted, features[:7].astype(np.float32))
    assert values.shape == (7, 2) and labels is not None and labels.shape == (7,)
