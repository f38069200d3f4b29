"""The portal's A/B calculator in a real browser against `atoll up`."""

from __future__ import annotations

import copy
import json

from playwright.sync_api import Page, expect

from atoll.abtest.stats import AnalysisRequest, PowerRequest, analyze, power
from atoll.web.portal.charts import VERDICT_LABELS
from atoll.web.portal.stats_views import EXAMPLE

SCREENSHOT = "/tmp/atoll-ab-calculator.png"
POWER_SCREENSHOT = "/tmp/atoll-ab-calculator-power.png"
ERROR_SCREENSHOT = "/tmp/atoll-ab-calculator-error.png"


def open_calculator(page: Page) -> None:
    page.goto("/")
    page.locator("header nav").get_by_role("link", name="A/B calculator", exact=True).click()
    expect(page).to_have_url(f"{page.url.split('/ab-calculator')[0].rstrip('/')}/ab-calculator")
    expect(page.get_by_role("heading", level=1)).to_have_text("A/B calculator")
    page.evaluate("window.__e2eMark = true")


def assert_same_document(page: Page) -> None:
    assert page.evaluate("window.__e2eMark === true"), "the page reloaded instead of swapping"


def test_the_prefilled_example_is_analysed_in_place(logged_in_page: Page) -> None:
    page = logged_in_page
    open_calculator(page)
    expected = analyze(AnalysisRequest.model_validate(EXAMPLE))

    page.get_by_test_id("analyze-form").get_by_role("button", name="Analyse").click()

    metrics = page.get_by_test_id("metric")
    expect(metrics).to_have_count(len(EXAMPLE["metrics"]))
    for i, metric in enumerate(expected.metrics):
        section = metrics.nth(i)
        expect(section.get_by_role("heading", level=3)).to_contain_text(metric.name)
        expect(section.locator("svg.forest")).to_have_count(1)
        expect(section.locator("svg.forest circle.point")).to_have_count(len(metric.comparisons))
        verdict = VERDICT_LABELS[metric.comparisons[0].verdict]
        expect(section.locator("table .verdict")).to_have_text([verdict])
    expect(page.get_by_test_id("srm")).to_contain_text("Sample ratio OK")
    decision = expected.decisions[0]
    expect(page.get_by_test_id("decision")).to_contain_text(f"{decision.arm} vs control")
    expect(page.get_by_test_id("verdict")).to_have_text(VERDICT_LABELS[decision.verdict])
    assert_same_document(page)
    page.screenshot(path=SCREENSHOT, full_page=True)


def test_invalid_input_names_the_field(logged_in_page: Page) -> None:
    page = logged_in_page
    open_calculator(page)
    body = copy.deepcopy(EXAMPLE)
    body["metrics"][0]["data"]["candidate"]["n"] = -3
    page.get_by_label("Analysis request").fill(json.dumps(body, indent=2))
    page.get_by_role("button", name="Analyse").click()
    error = page.get_by_test_id("ab-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("metrics.0.data.candidate.n")
    expect(page.get_by_test_id("metric")).to_have_count(0)
    error.screenshot(path=ERROR_SCREENSHOT)

    page.get_by_label("Analysis request").fill('{"arms": [')
    page.get_by_role("button", name="Analyse").click()
    expect(error).to_contain_text("invalid JSON at line 1")
    assert_same_document(page)


def test_an_uploaded_file_is_analysed(logged_in_page: Page) -> None:
    page = logged_in_page
    open_calculator(page)
    body = copy.deepcopy(EXAMPLE)
    body["metrics"] = body["metrics"][:1]
    page.get_by_label("Analysis request").fill("")  # the file is used, not the text
    page.get_by_label("Or upload a .json file").set_input_files(
        {"name": "one-metric.json", "mimeType": "application/json", "buffer": json.dumps(body).encode()}
    )
    page.get_by_role("button", name="Analyse").click()
    expect(page.get_by_test_id("metric")).to_have_count(1)
    expect(page.get_by_test_id("metric").locator("svg.forest")).to_have_count(1)
    assert_same_document(page)


def test_the_sample_size_matches_the_engine(logged_in_page: Page) -> None:
    page = logged_in_page
    open_calculator(page)
    form = page.get_by_test_id("power-form")
    form.get_by_label("Metric type").select_option("mean")
    form.get_by_label("Baseline").fill("5")
    form.get_by_label("Std").fill("12")
    form.get_by_label("MDE", exact=True).fill("0.05")
    form.get_by_label("Arms").fill("3")
    form.get_by_label("Method", exact=True).select_option("sequential")
    form.get_by_role("button", name="Calculate").click()

    expected = power(
        PowerRequest(metric_type="mean", baseline=5, std=12, mde=0.05, arms=3, method="sequential")
    )
    assert expected.n_per_arm is not None and expected.n_total is not None
    expect(page.get_by_test_id("n-per-arm")).to_have_text(f"{expected.n_per_arm:,}")
    expect(page.get_by_test_id("n-total")).to_have_text(f"{expected.n_total:,}")
    expect(page.get_by_test_id("power-result")).to_contain_text("Sequential inflation")
    page.get_by_test_id("power-results").screenshot(path=POWER_SCREENSHOT)

    form.get_by_label("Std").fill("")
    form.get_by_role("button", name="Calculate").click()
    expect(page.get_by_test_id("power-results").get_by_test_id("ab-error")).to_contain_text("std")
    assert_same_document(page)


def _arm(n: int, mean: float, std: float) -> dict[str, float]:
    total = n * mean
    return {"n": n, "sum": total, "sum_squares": (n - 1) * std**2 + total * total / n}


def test_a_negative_control_mean_reads_up(logged_in_page: Page) -> None:
    """Issue 11: control mean -5.2, treatment 1.2 higher: +23% and Ship in every method."""
    page = logged_in_page
    open_calculator(page)
    for method in ("fixed", "sequential", "bayesian"):
        body = {
            "arms": [{"name": "control", "weight": 0.5}, {"name": "candidate", "weight": 0.5}],
            "control": "control",
            "method": method,
            "metrics": [
                {
                    "name": "net_margin",
                    "type": "mean",
                    "data": {"control": _arm(3000, -5.2, 10), "candidate": _arm(3000, -4.0, 10)},
                }
            ],
        }
        expected = analyze(AnalysisRequest.model_validate(body)).metrics[0].comparisons[0]
        assert expected.relative_lift is not None and expected.relative_ci is not None
        page.get_by_label("Analysis request").fill(json.dumps(body))
        page.get_by_role("button", name="Analyse").click()
        section = page.locator('[data-testid="metric"][data-metric="net_margin"]')
        expect(section.locator("table")).to_contain_text("+23.08%")
        expect(section.locator("table")).to_contain_text(f"{expected.relative_ci.lower * 100:+.2f}%")
        expect(section).to_contain_text("control mean is negative")
        expect(page.locator("[data-testid=analysis]")).to_contain_text(f"Method {method}")
        expect(page.get_by_test_id("verdict")).to_have_text(VERDICT_LABELS["ship"])
        point = float(section.locator("svg.forest circle.point").get_attribute("cx") or "nan")
        zero = float(section.locator("svg.forest line.zero").get_attribute("x1") or "nan")
        assert point > zero, (method, point, zero)  # drawn on the better side of zero
    assert_same_document(page)


def test_a_drop_is_sized_and_its_mde_solved(logged_in_page: Page) -> None:
    page = logged_in_page
    open_calculator(page)
    form = page.get_by_test_id("power-form")
    form.get_by_label("Metric type").select_option("binary")
    form.get_by_label("Baseline").fill("0.1")
    form.get_by_label("MDE", exact=True).fill("-0.1")
    form.get_by_role("button", name="Calculate").click()
    drop = power(PowerRequest(metric_type="binary", baseline=0.1, mde=-0.1))
    rise = power(PowerRequest(metric_type="binary", baseline=0.1, mde=0.1))
    assert drop.n_per_arm is not None and rise.n_per_arm is not None and drop.n_per_arm != rise.n_per_arm
    expect(page.get_by_test_id("n-per-arm")).to_have_text(f"{drop.n_per_arm:,}")
    expect(page.get_by_test_id("mde-relative")).to_have_text("-10.00%")
    expect(page.get_by_test_id("power-result")).to_contain_text(
        "sized for a drop of the rate from 0.1 to 0.09"
    )

    form.get_by_label("MDE", exact=True).fill("")
    form.get_by_label("Units per arm").fill("10000")
    form.get_by_label("Solve the MDE of").select_option("decrease")
    form.get_by_role("button", name="Calculate").click()
    mde = power(PowerRequest(metric_type="binary", baseline=0.1, n_per_arm=10000, direction="decrease"))
    assert mde.mde_relative is not None and mde.mde_relative < 0
    expect(page.get_by_test_id("mde-relative")).to_have_text(f"{mde.mde_relative * 100:+.2f}%")
    assert_same_document(page)
