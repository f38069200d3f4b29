"""Sample-ratio mismatch: chi-square goodness of fit of arm counts to intended weights.

A p-value below ``SRM_THRESHOLD`` (0.001, the usual convention, e.g. Fabijan et al. 2019
"Diagnosing Sample Ratio Mismatch in Online Controlled Experiments") marks the whole
analysis invalid: assignment or logging is broken, and no estimate can be trusted.
"""

from __future__ import annotations

from scipy import special

from atoll.abtest.stats.schemas import SRMResult

SRM_THRESHOLD = 0.001


def check(observed: dict[str, int], weights: dict[str, float]) -> SRMResult:
    total = sum(observed.values())
    expected = {a: total * w for a, w in weights.items()}
    df = len(observed) - 1
    if total == 0:
        return SRMResult(
            statistic=None,
            df=df,
            p_value=None,
            threshold=SRM_THRESHOLD,
            mismatch=False,
            observed=observed,
            expected=expected,
            reason="no units yet: SRM not checked",
        )
    stat = sum((observed[a] - e) ** 2 / e for a, e in expected.items())
    p = float(special.chdtrc(df, stat))  # the chi-square survival function, as stats.chi2.sf
    mismatch = p < SRM_THRESHOLD
    reason = (
        f"sample ratio mismatch: chi2={stat:.4g}, df={df}, p={p:.3g} < {SRM_THRESHOLD}; "
        "check assignment and exposure logging"
        if mismatch
        else None
    )
    return SRMResult(
        statistic=float(stat),
        df=df,
        p_value=p,
        threshold=SRM_THRESHOLD,
        mismatch=mismatch,
        observed=observed,
        expected=expected,
        reason=reason,
    )
