"""The API contract tier: schemathesis fuzzes the running platform from its own OpenAPI document.

`atoll up` (with its embedded MLflow) runs in a subprocess; schemathesis generates requests
from `/openapi.json` for every operation, with every check on (`--checks all`: no 5xx, every
status code, content type and header declared, schema-valid requests accepted, invalid ones
rejected, responses valid against their schemas, 405 with `Allow`, auth enforced...) and all
four phases (examples, coverage, fuzzing, stateful), once as an admin and once with a
read-only token. The seed is fixed so a failure reproduces: run the command this test prints.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ..conftest import Platform

pytestmark = pytest.mark.timeout(1800)  # a fuzzing run takes minutes on a loaded 2-core machine

CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
SEED = int(os.environ.get("ATOLL_CONTRACT_SEED", "20261201"))
EXAMPLES_PER_OPERATION = int(os.environ.get("ATOLL_CONTRACT_EXAMPLES", "40"))
MIN_GENERATED = 1000
READER = ("contract-reader", "contract-reader-password-93c1")


def _schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which(
        "schemathesis"
    )
    if found is None:
        pytest.fail("schemathesis is not installed: run `uv sync` (it is a dev dependency)")
    return found


@pytest.fixture(scope="module")
def reader(platform: Platform) -> tuple[str, str]:
    with httpx.Client(base_url=platform.url, timeout=30) as client:
        login = {"username": platform.admin_username, "password": platform.admin_password}
        token = client.post("/api/v1/auth/token", json=login).raise_for_status().json()["token"]
        created = client.post(
            "/api/v1/users",
            json={"username": READER[0], "password": READER[1], "role": "viewer"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code in (201, 409), created.text
    return READER


def _fuzz(platform: Platform, username: str, password: str, tmp_path: Path) -> tuple[int, str]:
    command = [
        _schemathesis(),
        "--config-file",
        str(CONFIG),
        "run",
        f"{platform.url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--seed",
        str(SEED),
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--workers",
        "2",
        "--no-color",
        "--request-timeout",
        "60",
        "--generation-database",
        "none",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    env = {**os.environ, "ATOLL_FUZZ_USERNAME": username, "ATOLL_FUZZ_PASSWORD": password}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200, check=False)
    output = run.stdout + run.stderr
    print(output[-20000:])
    print("reproduce with:", " ".join(command))
    return run.returncode, output


def _generated(output: str) -> int:
    match = re.search(r"(\d+) generated", output)
    assert match, "schemathesis printed no summary"
    return int(match.group(1))


def test_admin_token_finds_no_contract_failure(platform: Platform, tmp_path: Path) -> None:
    returncode, output = _fuzz(platform, platform.admin_username, platform.admin_password, tmp_path)
    assert returncode == 0, "schemathesis found contract failures as an admin (output above)"
    assert _generated(output) >= MIN_GENERATED


def test_read_only_token_finds_no_contract_failure(
    platform: Platform, reader: tuple[str, str], tmp_path: Path
) -> None:
    returncode, output = _fuzz(platform, *reader, tmp_path)
    assert returncode == 0, "schemathesis found contract failures with a read-only token (output above)"
    assert _generated(output) >= MIN_GENERATED
