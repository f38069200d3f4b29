"""The registry CLI (`atoll models ...`, `promote`, `history`, `rollback`) against a live
platform with a real MLflow server, the way a CI job runs it."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner, Result

from atoll.auth.policy import Role, Scope
from atoll.cli import app

from .conftest import Caller, MakeCaller

GITHUB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SHA": "9fceb02d0ae598e95dc970b74767f19372d61af8",
    "GITHUB_REPOSITORY": "acme/ranker",
    "GITHUB_RUN_ID": "4242",
    "GITHUB_SERVER_URL": "https://github.example",
    "GITHUB_REF_NAME": "main",
}
CI_VARIABLES = ("GITHUB_", "GITLAB_CI", "CI_", "JENKINS_URL", "GIT_", "BUILD_URL")


def atoll(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def ok_json(*args: str) -> Any:
    result = atoll(*args, "--json")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip(), result.output
    return json.loads(result.stdout)


def flat(text: str) -> str:
    """Output with table borders and line wraps collapsed, for substring checks."""
    return re.sub(r"[\s│┃┏┓┗┛━─╇┡┩┠┨┯┷┳┻╋┼|]+", " ", text)


def _name() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def cli_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ATOLL_* settings or CI variables from the shell; credentials under tmp_path."""
    for key in list(os.environ):
        upper = key.upper()
        if (upper.startswith("ATOLL_") and not upper.startswith("ATOLL_TEST_")) or upper.startswith(
            CI_VARIABLES
        ):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    # The server runs in this process here, and MLflow prints "View run ..." to stdout when
    # an upload's run ends; in production that line lands in the server's log instead.
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


@pytest.fixture
def as_admin(live_registry_url: str, admin: Caller, monkeypatch: pytest.MonkeyPatch) -> Caller:
    monkeypatch.setenv("ATOLL_URL", live_registry_url)
    monkeypatch.setenv("ATOLL_TOKEN", admin.token)
    return admin


def test_register_from_github_actions_records_the_lineage(
    as_admin: Caller, log_model: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in GITHUB.items():
        monkeypatch.setenv(key, value)
    name, run_id = _name(), log_model()
    created = ok_json("models", "register", name, "--run-id", run_id, "--team", "search")
    assert created["version"] == 1 and created["run_id"] == run_id
    assert created["lineage"] == {
        "ci_provider": "github-actions",
        "git_commit": GITHUB["GITHUB_SHA"],
        "git_branch": "main",
        "repository": "acme/ranker",
        "ci_build_url": "https://github.example/acme/ranker/actions/runs/4242",
    }

    listed = ok_json("models", "list", "--q", name)
    assert [(m["name"], m["team"], m["latest_version"]) for m in listed["items"]] == [(name, "search", 1)]
    shown = atoll("models", "show", name)
    assert shown.exit_code == 0, shown.output
    assert name in shown.stdout and GITHUB["GITHUB_SHA"][:12] in shown.stdout


def test_register_a_local_model_folder(as_admin: Caller, tmp_path: Path, mlflow_uri: str) -> None:
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    features = np.arange(40, dtype=float).reshape(20, 2)
    model = LogisticRegression().fit(features, (features[:, 0] > 20).astype(int))
    folder = tmp_path / "my-model"
    mlflow.sklearn.save_model(model, str(folder), pip_requirements=["scikit-learn"])
    name = _name()
    created = ok_json("models", "register", name, "--path", str(folder), "--description", "from a laptop")
    assert created["version"] == 1 and created["source"].startswith("runs:/")
    assert MlflowClient(mlflow_uri).get_model_version(name, "1").description == "from a laptop"

    not_a_model = atoll("models", "register", name, "--path", str(tmp_path))
    assert not_a_model.exit_code == 2 and "MLmodel" in not_a_model.output


def test_promote_gates_history_and_rollback(
    as_admin: Caller, log_model: Callable[..., str], tmp_path: Path, mlflow_uri: str
) -> None:
    name = _name()
    for seed in (0, 1):
        ok_json("models", "register", name, "--run-id", log_model(seed=seed))

    promoted = atoll("promote", name, "1", "--to", "production", "--reason", "first release")
    assert promoted.exit_code == 0, promoted.output
    out = flat(promoted.stdout)
    assert "Promotion gates" in out and "role pass" in out and "approver or above required" in out
    assert f"{name}@production now → v1" in out

    failing = tmp_path / "policy.json"
    failing.write_text(
        json.dumps(
            {"protected": True, "gates": {"metrics": [{"name": "auc", "op": ">=", "threshold": 0.99}]}}
        )
    )
    assert atoll("policy", "set", name, "production", "--file", str(failing)).exit_code == 0
    refused = atoll("promote", name, "2", "--to", "production")
    assert refused.exit_code == 1, refused.output
    out = flat(refused.output)
    assert "metric:auc FAIL auc = 0.9, required >= 0.99" in out
    assert "cannot move to @production" in out
    refused_json = atoll("promote", name, "2", "--to", "production", "--json")
    assert refused_json.exit_code == 1
    problem = json.loads(refused_json.stdout)
    assert problem["status"] == 412
    assert {g["gate"]: g["passed"] for g in problem["gates"]} == {"role": True, "metric:auc": False}
    assert MlflowClient(mlflow_uri).get_registered_model(name).aliases == {"production": "1"}

    passing = tmp_path / "passing.json"
    passing.write_text(json.dumps({"protected": True, "gates": {"required_role": "approver"}}))
    assert atoll("policy", "set", name, "production", "--file", str(passing)).exit_code == 0
    assert atoll("promote", name, "2", "--to", "production", "--reason", "better auc").exit_code == 0

    history = atoll("history", name)
    assert history.exit_code == 0, history.output
    out = flat(history.stdout)
    assert "first release" in out and "better auc" in out and "promote" in out

    back = atoll("rollback", name, "--alias", "production")
    assert back.exit_code == 0, back.output
    assert "rolled back to v1 (was v2)" in flat(back.stdout)
    assert MlflowClient(mlflow_uri).get_registered_model(name).aliases == {"production": "1"}
    moves = ok_json("history", name)
    assert [(m["kind"], m["from_version"], m["to_version"]) for m in moves] == [
        ("rollback", 2, 1),
        ("promote", 1, 2),
        ("promote", None, 1),
    ]


def test_a_register_scoped_token_registers_but_cannot_promote(
    live_registry_url: str,
    make_caller: MakeCaller,
    log_model: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ci = make_caller("ci", Role.engineer, scopes=[Scope.register])
    monkeypatch.setenv("ATOLL_URL", live_registry_url)
    monkeypatch.setenv("ATOLL_TOKEN", ci.token)
    name = _name()
    registered = atoll("models", "register", name, "--run-id", log_model())
    assert registered.exit_code == 0, registered.output
    assert f"registered {name} version 1" in flat(registered.stdout)
    refused = atoll("promote", name, "1", "--to", "staging")
    assert refused.exit_code == 3, refused.output
    assert "deploy" in refused.output


def test_an_unknown_model_exits_4(as_admin: Caller) -> None:
    missing = _name()
    shown = atoll("models", "show", missing)
    assert shown.exit_code == 4, shown.output
    assert missing in shown.output
    assert atoll("promote", missing, "1", "--to", "production").exit_code == 4
    assert atoll("history", missing).exit_code == 4
