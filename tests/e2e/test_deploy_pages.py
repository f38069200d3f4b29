"""The one click, in a real browser against `atoll up`: a build row → the deploy form → the
local target's preview → Deploy → the deployment page until the model server is available,
then a real prediction through the endpoint's stable URL on the router `atoll up` runs.

The model is registered through the API the way CI does; `atoll up`'s worker builds it for
every backend (the cpu build is the one deployed here).
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect

from .conftest import Platform, log_run

BUILD_TIMEOUT_S = 420
ROLLOUT_TIMEOUT_MS = 240_000
# `atoll up`'s one worker builds every backend of the version, cpu among them, then the
# rollout starts a model server: minutes on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(900)


def _wait_for_cpu_build(api: httpx.Client, model: str) -> None:
    deadline = time.monotonic() + BUILD_TIMEOUT_S
    status = "none"
    while time.monotonic() < deadline:
        builds = api.get(f"/api/v1/models/{model}/versions/1/builds")
        assert builds.status_code == 200, builds.text
        status = next((b["status"] for b in builds.json() if b["backend"] == "cpu"), "none")
        if status == "succeeded":
            return
        if status == "failed":
            pytest.fail(f"the cpu build of {model} v1 failed: {builds.json()}")
        time.sleep(1)
    pytest.fail(f"the cpu build of {model} v1 is still {status} after {BUILD_TIMEOUT_S} s")


def test_one_click_deploy_from_a_build_row_to_a_prediction(
    logged_in_page: Page, platform: Platform, api: httpx.Client
) -> None:
    suffix = uuid.uuid4().hex[:6]
    model, endpoint = f"e2e-deploy-{suffix}", f"e2e-{suffix}"
    created = api.post(f"/api/v1/models/{model}/versions", json={"run_id": log_run(platform.mlflow_url, 0.9)})
    assert created.status_code == 201, created.text
    started = time.monotonic()
    _wait_for_cpu_build(api, model)
    print(f"\nregistered → cpu build succeeded: {time.monotonic() - started:.0f} s")

    page = logged_in_page
    page.goto(f"/models/{model}/versions/1")
    page.get_by_test_id("builds").get_by_test_id("deploy-cpu").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Deploy {model} v1 on cpu")
    form = page.get_by_test_id("deploy-form")
    expect(form.get_by_test_id("target")).to_have_value("local")
    form.get_by_test_id("endpoint").fill(endpoint)
    form.get_by_test_id("preview-button").click()

    preview = page.get_by_test_id("preview")
    expect(preview).to_contain_text("nothing applied yet")
    expect(preview.get_by_test_id("preview-object").first).to_be_visible()
    deployment = form.get_by_test_id("name").input_value()
    assert api.get(f"/api/v1/deployments/{deployment}").status_code == 404, "a preview must write nothing"

    preview.get_by_test_id("deploy-button").click()
    clicked = time.monotonic()
    page.wait_for_url(f"**/deployments/{deployment}")
    expect(page.get_by_test_id("status").get_by_test_id("state")).to_have_text(
        "available", timeout=ROLLOUT_TIMEOUT_MS
    )
    expect(page.get_by_test_id("events")).to_contain_text("Switched")
    print(f"Deploy clicked → available: {time.monotonic() - clicked:.0f} s")

    rows = {"name": "input", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 2.0, 30.0, 31.0]}
    answer = httpx.post(
        f"{platform.router_url}/endpoints/{endpoint}/v2/models/{model}/infer",
        json={"inputs": [rows]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-atoll-deployment"] == deployment
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert [int(v) for v in outputs["label"]["data"]] == [0, 1]  # the model learnt x0 > 20

    page.goto("/deployments")
    row = page.get_by_test_id("deployments-table").locator("tr", has_text=deployment)
    expect(row).to_contain_text("available")
    expect(row).to_contain_text(endpoint)
