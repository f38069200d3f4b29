"""The drift methods Atoll supports, with Evidently's names, defaults and verdict rules.

Everything here is read from Evidently 0.7.23's own source
(``evidently/legacy/calculations/stattests/*.py``), which the 0.7 ``ValueDrift`` metric and
``DataDriftPreset`` call:

- the method names are Evidently's (``ks``, ``wasserstein``, ...), so a monitor's spec
  reads the same as an Evidently report;
- a p-value method flags drift below its threshold, and ``ks`` at it too (``p <= t``,
  where ``chisquare`` and ``z`` use ``p < t``); a distance flags drift at or above its
  threshold (``d >= t``);
- ``auto`` is ``_get_default_stattest`` in ``stattests/registry.py``: it looks at the
  number of *non-null, finite* reference values and the number of distinct non-null values
  of reference and current together (see :func:`auto_method`).

Evidently methods not supported here (their verdicts would not be reproduced by the fast
engine): ``anderson``, ``cramer_von_mises``, ``t_test``, ``energy``, ``empirical_mmd``,
``fisher_exact``, ``g_test``, ``mannw``, ``es``, ``TVD`` and the text-content tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

ColumnKind = Literal["numeric", "categorical"]
MethodName = Literal["ks", "wasserstein", "chisquare", "z", "jensenshannon", "psi", "kl_div", "hellinger"]
MethodChoice = Literal[
    "auto", "ks", "wasserstein", "chisquare", "z", "jensenshannon", "psi", "kl_div", "hellinger"
]
ScoreType = Literal["p_value", "distance"]

#: Evidently's boundary between a "small" and a "large" reference (non-null values).
SMALL_REFERENCE_ROWS = 1000
#: At most this many distinct values (reference and current together) is "binary".
BINARY_DISTINCT_VALUES = 2
#: A numeric column with at most this many distinct values is tested like a categorical one.
FEW_DISTINCT_VALUES = 5


@dataclass(frozen=True)
class MethodInfo:
    name: MethodName
    #: Evidently's display name; a report's metric config shows it for auto-chosen methods.
    display_name: str
    kinds: frozenset[ColumnKind]
    score_type: ScoreType
    default_threshold: float
    #: p-value tests: drift when ``p < t`` (strict) or ``p <= t`` (``ks``).
    strict: bool = True

    def is_drift(self, score: float, threshold: float) -> bool:
        """Evidently's verdict for one column; a NaN score is never drift (as in Evidently)."""
        if self.score_type == "distance":
            return score >= threshold
        return score < threshold if self.strict else score <= threshold


_BOTH: frozenset[ColumnKind] = frozenset(("numeric", "categorical"))
_NUMERIC: frozenset[ColumnKind] = frozenset(("numeric",))
_CATEGORICAL: frozenset[ColumnKind] = frozenset(("categorical",))

METHODS: dict[MethodName, MethodInfo] = {
    info.name: info
    for info in (
        MethodInfo("ks", "K-S p_value", _NUMERIC, "p_value", 0.05, strict=False),
        MethodInfo("wasserstein", "Wasserstein distance (normed)", _NUMERIC, "distance", 0.1),
        MethodInfo("chisquare", "chi-square p_value", _CATEGORICAL, "p_value", 0.05),
        MethodInfo("z", "Z-test p_value", _CATEGORICAL, "p_value", 0.05),
        MethodInfo("jensenshannon", "Jensen-Shannon distance", _BOTH, "distance", 0.1),
        MethodInfo("psi", "PSI", _BOTH, "distance", 0.1),
        MethodInfo("kl_div", "Kullback-Leibler divergence", _BOTH, "distance", 0.1),
        MethodInfo("hellinger", "Hellinger distance", _BOTH, "distance", 0.1),
    )
}
assert set(METHODS) == set(get_args(MethodName))


def auto_method(kind: ColumnKind, reference_values: int, distinct_values: int) -> MethodName:
    """The method Evidently chooses when none is given.

    ``reference_values``: non-null finite values in the reference column (Evidently drops
    NaN, None and +-inf before choosing). ``distinct_values``: distinct non-null values of
    reference and current together.

    =================  ==============================  ============================
    reference values   numeric                         categorical
    =================  ==============================  ============================
    <= 1000            ks; chisquare if 3-5 distinct;  chisquare; z if <= 2
                       z if <= 2 distinct (binary)     distinct (binary)
    > 1000             wasserstein; jensenshannon if   jensenshannon
                       <= 5 distinct
    =================  ==============================  ============================
    """
    binary = distinct_values <= BINARY_DISTINCT_VALUES
    few = distinct_values <= FEW_DISTINCT_VALUES
    if reference_values <= SMALL_REFERENCE_ROWS:
        if kind == "numeric" and not few:
            return "ks"
        return "z" if binary else "chisquare"
    if kind == "numeric" and not few:
        return "wasserstein"
    return "jensenshannon"
