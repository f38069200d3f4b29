"""End-to-end fixtures: the real platform (`platform`, from tests/conftest.py) driven by real Chromium.

The browser is the system Chromium (Debian's `chromium` package), never one downloaded by
`playwright install`; `ATOLL_TEST_CHROMIUM` points at another executable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from ..conftest import Platform

__all__ = ["Platform"]  # the e2e tests import it from here

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    driver = sync_playwright().start()
    yield driver
    driver.stop()


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    executable = os.environ.get("ATOLL_TEST_CHROMIUM", "/usr/bin/chromium")
    if not Path(executable).exists():
        pytest.fail(
            f"Chromium not found at {executable}: install it with "
            "`sudo apt-get install -y chromium` (or point ATOLL_TEST_CHROMIUM at a Chromium binary)"
        )
    browser = playwright_driver.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A fresh browser context (no cookies) per test; fails the test on an uncaught JS error."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    js_errors: list[str] = []
    page.on("pageerror", lambda error: js_errors.append(str(error)))
    yield page
    context.close()
    assert not js_errors, f"uncaught JavaScript errors: {js_errors}"


def _sign_in(page: Page, username: str, password: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture(scope="module")
def api(platform: Platform) -> Iterator[httpx.Client]:
    """The API with an admin's token, for arranging what a test then does in the browser."""
    login = httpx.post(
        f"{platform.url}/api/v1/auth/token",
        json={"username": platform.admin_username, "password": platform.admin_password, "token_name": "e2e"},
    )
    assert login.status_code == 201, login.text
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    with httpx.Client(base_url=platform.url, headers=headers, timeout=60) as client:
        yield client


def log_run(mlflow_url: str, auc: float) -> str:
    """A small scikit-learn model logged to the platform's MLflow, as a team's training job would."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(mlflow_url)
    features = np.arange(40, dtype=float).reshape(20, 2)
    model = LogisticRegression().fit(features, (features[:, 0] > 20).astype(int))
    with mlflow.start_run() as run:
        mlflow.log_metric("auc", auc)
        mlflow.sklearn.log_model(
            model, name="model", input_example=features[:2], pip_requirements=["scikit-learn"]
        )
    return str(run.info.run_id)


@pytest.fixture
def logged_in_page(page: Page, platform: Platform) -> Page:
    """A page signed in as the first admin through the login form."""
    page.goto("/login")
    _sign_in(page, platform.admin_username, platform.admin_password)
    expect(page.get_by_test_id("whoami")).to_have_text("admin · admin")
    return page
