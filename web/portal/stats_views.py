"""The portal's A/B calculator: analyse pasted or uploaded summary statistics, and size a test.

Pure computation (the same engine as `POST /api/v1/stats/*` and `atoll ab`), nothing is
stored. The POSTs still go through the CSRF-checked portal writer like every portal form.
Invalid input answers 200 with an error box in the results area, so htmx swaps it in
where the person is looking.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from atoll.abtest import stats
from atoll.abtest.stats import AnalysisRequest, AnalysisResult, PowerRequest
from atoll.abtest.stats.inputs import StatsInputError, describe, load_request
from atoll.web.portal import charts
from atoll.web.portal.render import render
from atoll.web.portal.views import Viewer, Writer

router = APIRouter(include_in_schema=False)
MAX_INPUT_BYTES = 1_000_000

# The prefilled request: a conversion metric and a latency guardrail, as in docs/statistics.md.
EXAMPLE_JSON = """\
{
  "arms": [{"name": "control", "weight": 0.5}, {"name": "candidate", "weight": 0.5}],
  "control": "control",
  "alpha": 0.05,
  "method": "fixed",
  "correction": "holm",
  "metrics": [
    {"name": "conversion", "type": "binary",
     "data": {"control":   {"n": 10000, "sum": 1000, "sum_squares": 1000},
              "candidate": {"n": 10050, "sum": 1100, "sum_squares": 1100}}},
    {"name": "latency_ms", "type": "mean", "guardrail": true, "higher_is_better": false,
     "margin": 0.02, "margin_type": "relative",
     "data": {"control":   {"n": 10000, "sum": 1200000, "sum_squares": 160000000},
              "candidate": {"n": 10050, "sum": 1206000, "sum_squares": 160800000}}}
  ]
}
"""
EXAMPLE: dict[str, Any] = json.loads(EXAMPLE_JSON)
POWER_DEFAULTS = {"metric_type": "binary", "baseline": "0.1", "mde": "0.05", "mde_type": "relative"}


@router.get("/ab-calculator", response_class=HTMLResponse)
def calculator(request: Request, principal: Viewer) -> Response:
    return render(
        request,
        "stats/calculator.html",
        principal=principal,
        example=EXAMPLE_JSON,
        form={**POWER_DEFAULTS},
    )


def _submitted_text(analysis: str, file: UploadFile | None) -> str | bytes:
    """The uploaded file when one was chosen, else the textarea."""
    if file is not None and file.filename:
        content = file.file.read(MAX_INPUT_BYTES + 1)
        if len(content) > MAX_INPUT_BYTES:
            raise StatsInputError(f"file: {file.filename} is larger than {MAX_INPUT_BYTES} bytes")
        if not content.strip():
            raise StatsInputError(f"file: {file.filename} is empty")
        return content
    if not analysis.strip():
        raise StatsInputError("analysis: paste an analysis request (JSON) or choose a .json file")
    if len(analysis) > MAX_INPUT_BYTES:
        raise StatsInputError(f"analysis: the text is larger than {MAX_INPUT_BYTES} characters")
    return analysis


def _margins(body: AnalysisRequest) -> dict[str, tuple[float, bool]]:
    """Per metric, the margin drawn on its chart: (tolerated worsening, is relative)."""
    hypothesis = body.hypothesis
    out = {}
    for m in body.metrics:
        if m.guardrail:
            out[m.name] = (m.margin, m.margin_type == "relative")
        elif hypothesis.type == "non_inferiority":
            out[m.name] = (hypothesis.margin, hypothesis.margin_type == "relative")
    return out


def _charts(body: AnalysisRequest, result: AnalysisResult) -> dict[str, charts.ForestPlot]:
    margins = _margins(body)
    plots = {}
    for m in result.metrics:
        margin, relative = margins.get(m.name, (0.0, True))
        plots[m.name] = charts.metric_forest(m, margin=margin, relative_margin=relative)
    return plots


@router.post("/ab-calculator/analyze", response_class=HTMLResponse)
def analyze(
    request: Request,
    principal: Writer,
    analysis: Annotated[str, Form()] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    try:
        body = load_request(_submitted_text(analysis, file), AnalysisRequest)
    except StatsInputError as exc:
        return render(request, "stats/_error.html", principal=principal, error=str(exc))
    result = stats.analyze(body)
    return render(
        request,
        "stats/_analysis.html",
        principal=principal,
        result=result,
        charts=_charts(body, result),
        labels=charts.VERDICT_LABELS,
        fmt=charts.format_value,
        fmt_p=charts.format_p,
    )


FormText = Annotated[str, Form()]


@router.post("/ab-calculator/power", response_class=HTMLResponse)
def power(
    request: Request,
    principal: Writer,
    metric_type: FormText = "",
    baseline: FormText = "",
    std: FormText = "",
    mde: FormText = "",
    mde_type: FormText = "",
    direction: FormText = "",
    n_per_arm: FormText = "",
    alpha: FormText = "",
    power: FormText = "",
    arms: FormText = "",
    method: FormText = "",
) -> Response:
    given = {
        "metric_type": metric_type,
        "baseline": baseline,
        "std": std,
        "mde": mde,
        "mde_type": mde_type,
        "direction": direction,
        "n_per_arm": n_per_arm,
        "alpha": alpha,
        "power": power,
        "arms": arms,
        "method": method,
    }
    if mde.strip():  # the sign of the MDE is its direction; the select only serves "solve the MDE"
        given["direction"] = ""
    try:  # an empty field means "the default" (or "not given", for std, mde and n_per_arm)
        body = PowerRequest.model_validate({k: v.strip() for k, v in given.items() if v.strip()})
    except ValidationError as exc:
        return render(request, "stats/_error.html", principal=principal, error=describe(exc))
    return render(
        request,
        "stats/_power.html",
        principal=principal,
        result=stats.power(body),
        body=body,
        fmt=charts.format_value,
    )
