"""The registry pages in a real browser against `atoll up` and its embedded MLflow.

A model is logged to the embedded MLflow with the plain MLflow client and registered
through the API with a token, the way CI does; the rest happens in Chromium.
"""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect

from .conftest import Platform, log_run

SCREENSHOTS = ("/tmp/atoll-model-page.png", "/tmp/atoll-version-page.png", "/tmp/atoll-models-list.png")


@pytest.fixture(scope="module")
def models(platform: Platform, api: httpx.Client) -> tuple[str, str]:
    """Two freshly registered models: (the ranker with CI lineage, another one)."""
    suffix = uuid.uuid4().hex[:8]
    ranker, other = f"e2e-ranker-{suffix}", f"e2e-scorer-{suffix}"
    lineage = {
        "ci_provider": "github-actions",
        "git_commit": "9fceb02d0ae598e95dc970b74767f19372d61af8",
        "git_branch": "main",
        "repository": "acme/ranker",
        "ci_build_url": "https://github.example/acme/ranker/actions/runs/4242",
    }
    for name, body in (
        (ranker, {"team": "search", "description": "homepage ranker", "lineage": lineage}),
        (other, {"team": "fraud"}),
    ):
        created = api.post(
            f"/api/v1/models/{name}/versions", json={"run_id": log_run(platform.mlflow_url, 0.9), **body}
        )
        assert created.status_code == 201, created.text
    return ranker, other


def test_list_search_model_page_and_promotion(
    logged_in_page: Page, models: tuple[str, str], api: httpx.Client
) -> None:
    page = logged_in_page
    ranker, other = models
    page.goto("/models")
    table = page.get_by_test_id("models-table")
    expect(table.get_by_role("link", name=ranker)).to_be_visible()
    expect(table.get_by_role("link", name=other)).to_be_visible()

    page.get_by_label("Search").fill(ranker)
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("models-table").get_by_role("link", name=other)).to_have_count(0)
    expect(page).to_have_url(re.compile(rf"/models\?q={ranker}"))
    row = page.get_by_test_id("models-table").locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("search")
    page.screenshot(path=SCREENSHOTS[2], full_page=True)

    row.get_by_role("link", name=ranker).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(ranker)
    versions = page.get_by_test_id("versions")
    expect(versions).to_contain_text("9fceb02d")
    versions.get_by_role("link", name="v1").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(f"{ranker} v1")
    expect(page.get_by_test_id("lineage")).to_contain_text("acme/ranker")
    expect(page.get_by_test_id("signature")).to_contain_text("Signature and flavors")
    # one build per backend is queued at registration; the worker may not have run them yet
    expect(page.get_by_test_id("builds")).to_contain_text(re.compile(r"No builds yet|gpu"))

    form = page.get_by_test_id("promote-form")
    form.get_by_label("Alias").fill("staging")
    form.get_by_label("Reason").fill("e2e: first staging")
    form.get_by_role("button", name="Promote v1").click()
    expect(page.get_by_test_id("promoted")).to_contain_text(f"{ranker}@staging → v1")
    expect(page.get_by_test_id("gate-table")).to_contain_text("role")

    policy = {"protected": True, "gates": {"metrics": [{"name": "auc", "op": ">=", "threshold": 0.99}]}}
    assert api.put(f"/api/v1/models/{ranker}/policies/production", json=policy).status_code == 200
    form.get_by_label("Alias").fill("production")
    form.get_by_role("button", name="Promote v1").click()
    refused = page.get_by_test_id("not-promoted")
    expect(refused).to_contain_text("Not promoted")
    expect(page.get_by_test_id("gate-table")).to_contain_text("auc = 0.9, required >= 0.99")
    page.screenshot(path=SCREENSHOTS[1], full_page=True)

    page.get_by_role("link", name=ranker).click()
    timeline = page.get_by_test_id("timeline")
    expect(timeline).to_contain_text("staging")
    expect(timeline).to_contain_text("e2e: first staging")
    expect(page.get_by_test_id("model-aliases")).to_contain_text("v1")
    expect(page.get_by_test_id("policies")).to_contain_text("auc >= 0.99")
    page.screenshot(path=SCREENSHOTS[0], full_page=True)


def test_the_version_page_shows_flavors_and_signature(logged_in_page: Page, models: tuple[str, str]) -> None:
    page = logged_in_page
    page.goto(f"/models/{models[0]}/versions/1")
    expect(page.get_by_test_id("signature")).to_contain_text("sklearn", timeout=3000)
    expect(page.get_by_test_id("signature")).to_contain_text("float64")
