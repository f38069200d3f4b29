"""A drift spec from a model version's MLflow signature, for monitors created without one.

Every named input column of the signature becomes a spec column with method `auto`:
MLflow's numeric types (`double`, `float`, `long`, `integer`) are `numeric`; `string`,
`boolean` and `binary` are `categorical`; `datetime` columns are left out (a timestamp
drifts by definition). A tensor signature (an unnamed array) has no columns to name, so it
is refused with the way out: list `spec.columns` by hand. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from atoll.errors import InvalidInput
from atoll.monitoring.methods import ColumnKind
from atoll.monitoring.schemas import ColumnSpec, DriftSpec
from atoll.registry.schemas import SignatureField

KIND_OF_TYPE: dict[str, ColumnKind] = {
    "double": "numeric",
    "float": "numeric",
    "long": "numeric",
    "integer": "numeric",
    "string": "categorical",
    "boolean": "categorical",
    "binary": "categorical",
}
SKIPPED_TYPES = frozenset({"datetime"})


def spec_from_signature(inputs: Sequence[SignatureField], what: str) -> DriftSpec:
    """The spec of `inputs` (a version's signature inputs; `what` names the version in errors)."""
    if not inputs:
        raise InvalidInput(
            f"spec: {what} has no MLflow signature to take the columns from; list spec.columns "
            "(or log the model with a signature: mlflow.models.infer_signature)",
            field="spec",
        )
    tensors = [field.name or "(unnamed)" for field in inputs if field.spec or field.type == "tensor"]
    if tensors:
        raise InvalidInput(
            f"spec: {what}'s signature takes tensors ({', '.join(tensors)}), not named columns; "
            "list spec.columns with the features the model server logs",
            field="spec",
        )
    unknown = sorted(
        f"{field.name} ({field.type})"
        for field in inputs
        if field.type not in KIND_OF_TYPE and field.type not in SKIPPED_TYPES
    )
    if unknown:
        raise InvalidInput(
            f"spec: {what}'s signature has columns of types drift checks cannot read: {unknown}; "
            "list spec.columns without them",
            field="spec",
        )
    columns = [
        ColumnSpec(name=field.name, kind=KIND_OF_TYPE[field.type])
        for field in inputs
        if field.type in KIND_OF_TYPE
    ]
    if not columns:
        raise InvalidInput(f"spec: {what}'s signature has no column drift checks can read", field="spec")
    return DriftSpec(columns=tuple(columns))
