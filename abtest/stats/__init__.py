"""The A/B statistics engine: pure functions over per-arm summary statistics.

Entry points: :func:`analyze` and :func:`power`. No I/O, no ORM, no HTTP.
"""

from atoll.abtest.stats.analyze import analyze
from atoll.abtest.stats.power import power
from atoll.abtest.stats.schemas import (
    AnalysisRequest,
    AnalysisResult,
    ArmData,
    ArmDecision,
    ArmEstimate,
    ArmSpec,
    Comparison,
    Hypothesis,
    Interval,
    MetricResult,
    MetricSpec,
    PowerRequest,
    PowerResult,
    SRMResult,
)

__all__ = [
    "AnalysisRequest",
    "AnalysisResult",
    "ArmData",
    "ArmDecision",
    "ArmEstimate",
    "ArmSpec",
    "Comparison",
    "Hypothesis",
    "Interval",
    "MetricResult",
    "MetricSpec",
    "PowerRequest",
    "PowerResult",
    "SRMResult",
    "analyze",
    "power",
]
