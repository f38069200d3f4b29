"""scikit-learn, LightGBM and XGBoost → ONNX, and the precisions the backends run (fp32, fp16, int8).

Pure conversion: models in, models out, no I/O beyond a temporary file that
`quantize_dynamic` needs. Known pitfalls handled here, each measured (docs/backends.md has
the numbers):

- skl2onnx writes the default opset twice for some models (linear ones); `quantize_dynamic`
  then fails with "Failed to find proper ai.onnx domain" → `dedupe_opsets`.
- onnxconverter-common's fp16 pass drops a no-op input `Cast` (float → float, as skl2onnx
  writes for MLPs) and then leaves a float input feeding fp16 weights → `drop_noop_casts`
  before converting.
- ONNX-ML operators (TreeEnsemble*, LinearClassifier, ...) have no fp16 or int8 kernels: the
  fp16 pass leaves them fp32 (it would only round their outputs), `quantize_dynamic` rewrites
  MatMul/Gemm only. The conversion reports how many compute nodes it changed, and fp16 falls
  back to the fp32 graph when it changes none (the gpu backend runs fp32 too).
- onnxmltools (LightGBM) without ZipMap multiplies the probabilities by 1 (the fp16 pass
  would run that `Mul` in fp16, rounding the probabilities for nothing) and declares the
  label output with one row; for XGBoost it declares no `ai.onnx` opset (`quantize_dynamic`
  fails as above) → `_tidy_onnxmltools`.
- onnxmltools' XGBoost converter rejects feature names other than f0, f1... → it converts a
  copy of the Booster without names.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray

from atoll.backends import Precision

ONNX_INPUT = "input"
# Nodes that are not arithmetic: moving them to fp16 changes nothing worth counting.
_PLUMBING = frozenset({"Cast", "Identity", "Reshape", "Concat", "ArgMax", "ArrayFeatureExtractor", "Shape"})
_QUANTISED = frozenset(
    {
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "QGemm",
        "QLinearMatMul",
    }
)


class ConversionUnsupported(Exception):
    """No ONNX converter for this model; the message says why (it becomes the build's note)."""


@dataclass
class OnnxModel:
    """An ONNX graph plus what the model server needs to call it."""

    model: onnx.ModelProto
    precision: Precision
    input_name: str
    n_features: int
    output_names: list[str]
    label_output: str | None = None
    proba_output: str | None = None
    classes: list[int | str] | None = None
    notes: list[str] = field(default_factory=list)
    changed_nodes: int = 0  # compute nodes the precision pass rewrote (0 for fp32)
    compute_nodes: int = 0

    def derive(self, model: onnx.ModelProto, precision: Precision, note: str, changed: int) -> OnnxModel:
        return OnnxModel(
            model=model,
            precision=precision,
            input_name=self.input_name,
            n_features=self.n_features,
            output_names=self.output_names,
            label_output=self.label_output,
            proba_output=self.proba_output,
            classes=self.classes,
            notes=[*self.notes, note] if note else list(self.notes),
            changed_nodes=changed,
            compute_nodes=self.compute_nodes,
        )


def is_classifier(estimator: Any) -> bool:
    return hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_")


def _plain(value: Any) -> int | str:
    item = value.item() if isinstance(value, np.generic) else value
    if isinstance(item, bool | int):
        return int(item)
    return str(item)


def dedupe_opsets(model: onnx.ModelProto) -> onnx.ModelProto:
    """Keep one `opset_import` per domain (the highest version); returns the same model."""
    best: dict[str, int] = {}
    for opset in model.opset_import:
        domain = "" if opset.domain == "ai.onnx" else opset.domain
        best[domain] = max(best.get(domain, 0), opset.version)
    if len(best) != len(model.opset_import):
        del model.opset_import[:]
        model.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in best.items())
    return model


def drop_noop_casts(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove `Cast` nodes that cast a graph input to the type it already has."""
    inputs = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    renamed: dict[str, str] = {}
    kept = []
    for node in model.graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if (
            node.op_type == "Cast"
            and node.input[0] in inputs
            and inputs[node.input[0]] == to
            and node.output[0] not in outputs
        ):
            renamed[node.output[0]] = node.input[0]
        else:
            kept.append(node)
    if renamed:
        for node in kept:
            for i, name in enumerate(node.input):
                node.input[i] = renamed.get(name, name)
        del model.graph.node[:]
        model.graph.node.extend(kept)
    return model


def compute_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type not in _PLUMBING]


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _onnx_model(model: onnx.ModelProto, estimator: Any, n_features: int) -> OnnxModel:
    """The fp32 `OnnxModel` of a converted graph: label + probabilities for classifiers."""
    dedupe_opsets(model)
    outputs = [o.name for o in model.graph.output]
    converted = OnnxModel(
        model=model,
        precision="fp32",
        input_name=ONNX_INPUT,
        n_features=n_features,
        output_names=outputs,
        compute_nodes=len(compute_nodes(model)),
    )
    if is_classifier(estimator):
        converted.label_output = outputs[0]
        converted.proba_output = outputs[1] if len(outputs) > 1 else None
        converted.classes = [_plain(c) for c in np.asarray(estimator.classes_).ravel()]
    return converted


def sklearn_to_onnx(estimator: Any, n_features: int) -> OnnxModel:
    """fp32 ONNX of a fitted scikit-learn estimator with one float input of `n_features`.

    Classifiers get `zipmap: False`, so the outputs are a label tensor and a probability
    matrix (not a list of dicts).
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(estimator): {"zipmap": False}} if is_classifier(estimator) else None
    try:
        model = convert_sklearn(
            estimator,
            initial_types=[(ONNX_INPUT, FloatTensorType([None, n_features]))],
            options=options,
        )
    except Exception as exc:  # skl2onnx raises several unrelated types for "no converter"
        raise ConversionUnsupported(
            f"skl2onnx cannot convert {type(estimator).__name__}: {_reason(exc)}"
        ) from None
    return _onnx_model(model, estimator, n_features)


# --- LightGBM and XGBoost (onnxmltools) ----------------------------------------------------


def library(model: Any) -> str:
    """The top-level module of a model's class, seen through the Booster adapters below
    ("lightgbm", "xgboost", "sklearn", ...)."""
    inner = model.booster if isinstance(model, BoosterRegressor) else model
    return type(inner).__module__.partition(".")[0]


class BoosterRegressor:
    """A LightGBM or XGBoost `Booster` called like their scikit-learn API's regressor.

    The build's parity and latency code call models as scikit-learn estimators (`predict`,
    and `predict_proba` + `classes_` for classifiers, `n_features_in_`,
    `feature_names_in_`): this is that view of a Booster logged with `mlflow.lightgbm` or
    `mlflow.xgboost`.
    """

    def __init__(self, booster: Any) -> None:
        self.booster = booster
        names: list[str] | None
        if library(booster) == "xgboost":
            self.n_features_in_ = int(booster.num_features())
            names = booster.feature_names  # None when it was trained without names
        else:
            self.n_features_in_ = int(booster.num_feature())
            names = [str(n) for n in booster.feature_name()]
            # LightGBM names the columns Column_0... when it was trained without names
            if names == [f"Column_{i}" for i in range(self.n_features_in_)]:
                names = None
        self.feature_names_in_ = None if names is None else np.asarray(names)

    def predict(self, rows: Any) -> NDArray[Any]:
        data = np.asarray(rows, dtype=np.float64)
        if library(self.booster) == "xgboost":
            import xgboost

            # an XGBoost Booster checks the column names it was trained with
            return np.asarray(
                self.booster.predict(xgboost.DMatrix(data, feature_names=self.booster.feature_names))
            )
        return np.asarray(self.booster.predict(data))


class BoosterClassifier(BoosterRegressor):
    """A Booster with a binary or multiclass objective, like `LGBMClassifier` /
    `XGBClassifier`. A Booster keeps no class labels: they are 0..k-1, as onnxmltools
    labels them."""

    def __init__(self, booster: Any, n_classes: int) -> None:
        super().__init__(booster)
        self.classes_ = np.arange(max(n_classes, 2))

    def predict_proba(self, rows: Any) -> NDArray[Any]:
        scores = super().predict(rows)  # binary: P(class 1); multiclass: one column per class
        return np.column_stack([1.0 - scores, scores]) if scores.ndim == 1 else scores

    def predict(self, rows: Any) -> NDArray[Any]:
        return np.asarray(self.classes_[np.argmax(self.predict_proba(rows), axis=1)])


def _xgboost_config(booster: Any) -> tuple[str, int]:
    """An XGBoost Booster's objective and its number of classes (0 for one output)."""
    learner = json.loads(booster.save_config())["learner"]
    return str(learner["objective"]["name"]), int(learner["learner_model_param"].get("num_class", 0))


def _xgboost_classes(booster: Any) -> int | None:
    """How many classes an XGBoost objective predicts (None: a regressor); objectives
    onnxmltools does not reproduce raise `ConversionUnsupported`."""
    objective, classes = _xgboost_config(booster)
    if objective == "binary:logistic":
        return 2
    if objective in ("multi:softprob", "multi:softmax"):
        return classes
    # onnxmltools converts reg:logistic as a plain regression: no sigmoid (measured 8.5 off)
    if objective.startswith("reg:") and objective != "reg:logistic":
        return None
    raise ConversionUnsupported(
        f"no ONNX conversion for the XGBoost objective {objective} (binary:logistic, multi:softprob, "
        f"multi:softmax and reg:* except reg:logistic are converted)"
    )


def _xgboost_probabilities(booster: Any) -> Any:
    """`multi:softmax` predicts labels (and onnxmltools would output raw margins as its
    "probabilities"): a copy under `multi:softprob` predicts the probabilities from the same
    trees, their argmax being those labels. Other boosters are returned as they are."""
    if _xgboost_config(booster)[0] != "multi:softmax":
        return booster
    probabilities = booster.copy()
    probabilities.set_param({"objective": "multi:softprob"})
    return probabilities


def as_estimator(model: Any) -> Any:
    """The model as the build calls it: a LightGBM or XGBoost Booster becomes a
    `BoosterRegressor` or `BoosterClassifier` (by its objective); anything else is returned
    as it is. An XGBoost objective with no conversion raises `ConversionUnsupported`."""
    if type(model).__name__ != "Booster":
        return model
    if library(model) == "xgboost":
        classes = _xgboost_classes(model)
        return (
            BoosterRegressor(model)
            if classes is None
            else BoosterClassifier(_xgboost_probabilities(model), classes)
        )
    if library(model) != "lightgbm":
        return model
    info = model.dump_model(num_iteration=1)
    objective = str(info.get("objective", "")).split(" ", 1)[0]
    if objective == "binary" or objective.startswith("multiclass"):
        return BoosterClassifier(model, int(info.get("num_class", 1)))
    return BoosterRegressor(model)


def _tidy_onnxmltools(model: onnx.ModelProto) -> onnx.ModelProto:
    """`Mul(x, 1)` → `Identity(x)` (drop the unused constant); outputs get an unknown row
    count; an `ai.onnx` opset is declared where there is none.

    onnxmltools writes the first for LightGBM probabilities without ZipMap, declares the
    LightGBM label output with 1 row (ONNX Runtime then warns on every batch), and declares
    only `ai.onnx.ml` for XGBoost (`quantize_dynamic` then fails with "Failed to find proper
    ai.onnx domain"; 11 is the opset it raises older ones to).
    """
    ones = {
        i.name
        for i in model.graph.initializer
        if int(np.prod(i.dims)) == 1 and np.all(onnx.numpy_helper.to_array(i) == 1)
    }
    for node in model.graph.node:
        if node.op_type == "Mul" and node.domain in ("", "ai.onnx") and node.input[1] in ones:
            source = node.input[0]
            node.op_type = "Identity"
            del node.input[:]
            node.input.append(source)
    used = {name for node in model.graph.node for name in node.input}
    kept = [i for i in model.graph.initializer if i.name in used]
    if len(kept) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            dims[0].Clear()
    if not any(o.domain in ("", "ai.onnx") for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("", 11))
    return model


def _onnxmltools_to_onnx(
    convert: Callable[..., onnx.ModelProto], source: Any, estimator: Any, n_features: int, **options: Any
) -> OnnxModel:
    """`convert` (an onnxmltools converter) applied to `source`, one float input of
    `n_features`; a failure is `ConversionUnsupported`."""
    from onnxmltools.convert.common.data_types import FloatTensorType

    try:
        converted = convert(
            source, initial_types=[(ONNX_INPUT, FloatTensorType([None, n_features]))], **options
        )
    except Exception as exc:  # NotImplementedError (objective), ValueError (type), RuntimeError, ...
        raise ConversionUnsupported(
            f"onnxmltools cannot convert {type(source).__name__}: {_reason(exc)}"
        ) from None
    return _onnx_model(_tidy_onnxmltools(converted), estimator, n_features)


def lightgbm_to_onnx(model: Any, n_features: int) -> OnnxModel:
    """fp32 ONNX of a LightGBM model (a Booster, or an LGBMClassifier/LGBMRegressor) with
    onnxmltools, one float input of `n_features`: like `sklearn_to_onnx`, classifiers
    (binary and multiclass objectives for a Booster) output a label and a probability
    matrix (no ZipMap), regressors one column."""
    from onnxmltools import convert_lightgbm

    estimator = as_estimator(model)
    source = estimator.booster if isinstance(estimator, BoosterRegressor) else estimator
    return _onnxmltools_to_onnx(convert_lightgbm, source, estimator, n_features, zipmap=False)


def xgboost_to_onnx(model: Any, n_features: int) -> OnnxModel:
    """fp32 ONNX of an XGBoost model (a Booster, or an XGBClassifier/XGBRegressor) with
    onnxmltools, outputs as `lightgbm_to_onnx`'s. The converter reads the Booster, from a
    copy without feature names (it takes only `f0`, `f1`... names; the input is positional
    anyway) and with `multi:softmax` made `multi:softprob`."""
    from onnxmltools import convert_xgboost

    estimator = as_estimator(model)
    booster = estimator.booster if isinstance(estimator, BoosterRegressor) else estimator.get_booster()
    booster = _xgboost_probabilities(booster)
    _xgboost_classes(booster)  # the objective is one onnxmltools reproduces
    source = booster.copy()
    source.feature_names = None
    return _onnxmltools_to_onnx(convert_xgboost, source, estimator, n_features)


_ONNXMLTOOLS = {"lightgbm": lightgbm_to_onnx, "xgboost": xgboost_to_onnx}


def to_onnx(model: Any, n_features: int) -> OnnxModel:
    """fp32 ONNX of a loaded model: LightGBM and XGBoost with onnxmltools, anything else
    with skl2onnx."""
    return _ONNXMLTOOLS.get(library(model), sklearn_to_onnx)(model, n_features)


def to_fp16(fp32: OnnxModel) -> OnnxModel:
    """fp16 weights and arithmetic where ONNX has fp16 kernels; inputs/outputs stay float32.

    When no compute node can run in fp16 (tree and linear ONNX-ML operators) the fp32
    graph is returned with a note: converting would only round the outputs.
    """
    from onnxconverter_common import float16

    block = set(float16.DEFAULT_OP_BLOCK_LIST)
    convertible = [
        n for n in compute_nodes(fp32.model) if n.domain in ("", "ai.onnx") and n.op_type not in block
    ]
    if not convertible:
        ops = sorted({n.op_type for n in compute_nodes(fp32.model)})
        return fp32.derive(
            fp32.model,
            "fp32",
            f"fp16: no operator of this graph has an fp16 kernel ({', '.join(ops)}); kept fp32",
            0,
        )
    source = drop_noop_casts(onnx.ModelProto.FromString(fp32.model.SerializeToString()))
    model = float16.convert_float_to_float16(source, keep_io_types=True)
    dedupe_opsets(model)
    note = f"fp16: {len(convertible)} of {fp32.compute_nodes} compute nodes run in fp16"
    return fp32.derive(model, "fp16", note, len(convertible))


def to_int8(fp32: OnnxModel) -> OnnxModel:
    """Dynamic int8 quantisation (QInt8 weights, activations quantised at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="atoll-int8-") as work:
        source, target = Path(work) / "fp32.onnx", Path(work) / "int8.onnx"
        onnx.save(dedupe_opsets(onnx.ModelProto.FromString(fp32.model.SerializeToString())), source)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        model = onnx.load(target)
    quantised = sum(n.op_type in _QUANTISED for n in model.graph.node)
    if quantised:
        note = f"int8: {quantised} MatMul/Gemm nodes quantised (QInt8, dynamic)"
    else:
        ops = sorted({n.op_type for n in compute_nodes(fp32.model)})
        note = f"int8: quantize_dynamic found no MatMul/Gemm to quantise ({', '.join(ops)} stay fp32)"
    return fp32.derive(dedupe_opsets(model), "int8", note, quantised)


def at_precision(fp32: OnnxModel, precision: Precision) -> OnnxModel:
    """The model a backend runs at `precision` (one of the catalog's precisions)."""
    if precision == "fp32":
        return fp32
    if precision == "fp16":
        return to_fp16(fp32)
    if precision == "int8":
        return to_int8(fp32)
    raise ConversionUnsupported(f"no {precision} conversion is implemented (fp32, fp16 and int8 are)")
