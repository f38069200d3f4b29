"""A drift spec from an MLflow signature: which types become which kinds, what is refused."""

from __future__ import annotations

import pytest

from atoll.errors import InvalidInput
from atoll.monitoring.signature_spec import KIND_OF_TYPE, spec_from_signature
from atoll.registry.schemas import SignatureField


def field(name: str, type_: str, spec: str = "") -> SignatureField:
    return SignatureField(name=name, type=type_, spec=spec)


@pytest.mark.parametrize(("mlflow_type", "kind"), sorted(KIND_OF_TYPE.items()))
def test_each_column_type_has_its_kind_and_method_auto(mlflow_type: str, kind: str) -> None:
    spec = spec_from_signature([field("amount", mlflow_type)], "fraud v3")
    [column] = spec.columns
    assert (column.name, column.kind, column.method, column.threshold) == ("amount", kind, "auto", None)


def test_columns_keep_the_signatures_order_and_datetimes_are_left_out() -> None:
    inputs = [field("b", "double"), field("when", "datetime"), field("a", "string"), field("n", "long")]
    spec = spec_from_signature(inputs, "fraud v3")
    assert spec.names == ["b", "a", "n"]
    assert spec.drift_share == 0.5


@pytest.mark.parametrize(
    ("inputs", "said"),
    [
        ([], "fraud v3 has no MLflow signature"),
        ([field("—", "tensor", '{"dtype": "float32", "shape": [-1, 4]}')], "takes tensors"),
        ([field("emb", "array")], "emb (array)"),
        ([field("when", "datetime")], "no column drift checks can read"),
    ],
)
def test_what_cannot_be_a_spec_is_a_422_on_spec_saying_why(inputs: list[SignatureField], said: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        spec_from_signature(inputs, "fraud v3")
    assert said in refused.value.detail
    assert refused.value.extra == {"field": "spec"}
