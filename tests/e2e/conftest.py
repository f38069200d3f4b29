"""End-to-end fixtures: the real platform (`atoll up` in a subprocess) driven by real Chromium.

The browser is the system Chromium (Debian's `chromium` package), never one downloaded by
`playwright install`; `ATOLL_TEST_CHROMIUM` points at another executable.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "e2e-admin-password-4f7c1a"  # a throwaway instance's first admin
START_TIMEOUT_S = 120.0  # `atoll up` starts its embedded MLflow first (about 30 s)
STOP_TIMEOUT_S = 10.0
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


@dataclass(frozen=True)
class Platform:
    url: str
    admin_username: str
    admin_password: str
    data_dir: Path
    mlflow_url: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _atoll_command() -> list[str]:
    if importlib.util.find_spec("atoll.__main__") is not None:
        return [sys.executable, "-m", "atoll"]
    script = Path(sys.executable).parent / "atoll"
    if not script.exists():
        pytest.fail(f"neither `python -m atoll` nor {script} exists; run `uv sync`")
    return [str(script)]


def _child_env(data_dir: Path, mlflow_port: int, router_port: int) -> dict[str, str]:
    """The parent's environment without its ATOLL_ settings (an unknown one stops start-up)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ATOLL_") or key.startswith("ATOLL_TEST_")
    }
    env.update(
        ATOLL_DATA_DIR=str(data_dir),
        ATOLL_ADMIN_PASSWORD=ADMIN_PASSWORD,
        ATOLL_LOG_FORMAT="text",
        ATOLL_EMBEDDED_MLFLOW_PORT=str(mlflow_port),
        ATOLL_ROUTER_PORT=str(router_port),
        PYTHONUNBUFFERED="1",
    )
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """`atoll up` on a free loopback port, in a fresh working and data directory."""
    workdir = tmp_path_factory.mktemp("atoll-up")
    data_dir = workdir / "data"
    port, mlflow_port, router_port = _free_port(), _free_port(), _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "atoll-up.log"
    command = [*_atoll_command(), "up", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=_child_env(data_dir, mlflow_port, router_port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def output() -> str:
        return log_path.read_text(errors="replace")[-8000:]

    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"`atoll up` exited with {process.returncode} before serving:\n{output()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"`atoll up` did not answer /healthz in {START_TIMEOUT_S:.0f} s:\n{output()}")
            time.sleep(0.1)
        yield Platform(url, ADMIN_USERNAME, ADMIN_PASSWORD, data_dir, f"http://127.0.0.1:{mlflow_port}")
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def base_url(platform: Platform) -> str:
    return platform.url


@pytest.fixture(scope="session")
def admin_password(platform: Platform) -> str:
    return platform.admin_password


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


@pytest.fixture
def logged_in_page(page: Page, platform: Platform) -> Page:
    """A page signed in as the first admin through the login form."""
    page.goto("/login")
    _sign_in(page, platform.admin_username, platform.admin_password)
    expect(page.get_by_test_id("whoami")).to_have_text("admin · admin")
    return page
