"""The deployer on the local target, end to end, with real model servers and the real router.

One platform per module (tests/integration/deploying.py): a real MLflow, two versions of a
model built for the cpu backend by the build job, the supervisor running `atoll serve`
processes, `atoll router` as a process, and a worker thread running the rollout jobs.
Predictions go through the endpoint's stable URL, `/endpoints/{name}/v2/models/{m}/infer`.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from atoll.audit import AuditEvent
from atoll.cli import app
from atoll.db import unit_of_work, utcnow
from atoll.deployer.assignment import assign
from atoll.deployer.lifecycle import DeployerContext
from atoll.deployer.models import Deployment
from atoll.deployer.reconcile import reconcile
from atoll.deployer.routing.process import RouterProcess
from atoll.deployer.targets.localfiles import Layout
from atoll.events import ExposureEvent, InferenceEvent
from atoll.registry.models import Build

from .conftest import free_port, sign_in
from .deploying import (
    Platform,
    SplitPair,
    infer_body,
    load_loop,
    platform,
    server_pid,
    split_pair,
    train,
)

__all__ = ["platform", "split_pair"]

ROWS = [[0.5, -0.2, 0.1, 0.3], [-1.0, 0.4, 0.0, 2.0], [2.0, 1.0, -0.5, 0.0]]


def labels_of(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    return [int(v) for v in outputs["label"]["data"]]


def expected_labels(seed: int) -> list[int]:
    model, _ = train(seed)
    return [int(v) for v in model.predict(np.asarray(ROWS))]


def audit_actions(platform: Platform, target_id: str) -> list[str]:
    with unit_of_work(platform.factory) as session:
        return list(
            session.scalars(
                select(AuditEvent.action).where(AuditEvent.target_id == target_id).order_by(AuditEvent.id)
            )
        )


def test_deploy_a_real_build_and_predict_through_the_endpoints_stable_url(platform: Platform) -> None:
    started = time.monotonic()
    created = platform.deploy(1, endpoint="scoring")
    assert created["name"] == f"{platform.model}-v1-cpu"
    assert created["state"] == "pending" and created["endpoint"] == "scoring" and created["weight"] == 0
    available = platform.wait_state(created["name"], "available", "failed")
    seconds = time.monotonic() - started
    assert available["state"] == "available", available
    assert available["address"].startswith("http://127.0.0.1:")
    print(f"\nclick → available through the API and a job: {seconds:.1f} s")

    answer = platform.infer("scoring", ROWS)
    assert answer.headers["x-atoll-deployment"] == created["name"]
    assert labels_of(answer) == expected_labels(1)
    assert answer.json()["model_version"] == "1"
    direct = httpx.post(f"{available['address']}/v2/models/{platform.model}/infer", json=infer_body(ROWS))
    assert direct.json()["outputs"] == answer.json()["outputs"]

    endpoint = platform.call("GET", "/api/v1/endpoints/scoring").json()
    assert endpoint["active"] == created["name"]
    assert endpoint["url"] == f"{platform.settings.effective_router_url}/endpoints/scoring"
    history = platform.call("GET", "/api/v1/endpoints/scoring/history").json()["items"]
    assert [h["kind"] for h in history] == ["switch", "attach", "create"]
    switch = history[0]
    assert switch["from_weights"] == {created["name"]: 0} and switch["to_weights"] == {created["name"]: 100}
    assert (
        switch["job_id"] == available["rollout_job_id"] and "deployed by deployer-admin" in switch["reason"]
    )
    assert audit_actions(platform, created["name"]) == ["deployment.create"]
    assert audit_actions(platform, "scoring") == ["endpoint.create", "endpoint.attach", "endpoint.switch"]

    events = platform.call("GET", f"/api/v1/deployments/{created['name']}/events").json()["events"]
    reasons = [e["reason"] for e in events if e["source"] == "atoll"]
    assert {"Created", "Applying", "Progressing", "Available", "Switched"} <= set(reasons)
    assert {"Started", "Ready"} <= {e["reason"] for e in events if e["source"] == "target"}
    logs = platform.call("GET", f"/api/v1/deployments/{created['name']}/logs", params={"tail": 50}).json()
    assert "model ready" in logs["logs"][0]["text"]

    unknown = httpx.post(f"{platform.router_url}/endpoints/nowhere/v2/models/x/infer", json={})
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert "no endpoint named 'nowhere'" in unknown.json()["detail"]
    metrics = httpx.get(f"{platform.router_url}/metrics").text
    assert (
        f'atoll_router_requests_total{{code="200",deployment="{created["name"]}",endpoint="scoring"}}'
        in metrics
    )


class TestRefusals:
    def _count(self, platform: Platform) -> int:
        with unit_of_work(platform.factory) as session:
            return session.scalar(select(func.count()).select_from(Deployment)) or 0

    def post(self, platform: Platform, **body: Any) -> httpx.Response:
        return platform.call(
            "POST",
            "/api/v1/deployments",
            json={"model": platform.model, "version": 1, "backend": "cpu", **body},
        )

    def test_a_name_that_is_not_dns_1123_is_422_before_anything_is_written(self, platform: Platform) -> None:
        before = self._count(platform)
        response = self.post(platform, name="Ranker_V1")
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert "'Ranker_V1' is not a valid deployment name" in response.json()["detail"]
        assert response.json()["field"] == "name"
        bad_endpoint = self.post(platform, endpoint="Scoring!")
        assert bad_endpoint.status_code == 422 and bad_endpoint.json()["field"] == "endpoint"
        path = platform.call("GET", "/api/v1/deployments/Not_A_Name")
        assert path.status_code == 422
        assert self._count(platform) == before

    def test_a_build_that_did_not_succeed_is_409_naming_it(self, platform: Platform) -> None:
        before = self._count(platform)
        response = self.post(platform, backend="gpu")
        assert response.status_code == 409, response.text
        build_id = platform.builds["1/gpu"]
        assert f"build {build_id} of {platform.model} v1 (gpu) is failed" in response.json()["detail"]
        assert response.json()["build_id"] == build_id
        assert self.post(platform, version=9).status_code == 404
        assert self._count(platform) == before

    def test_an_unreachable_target_is_503_naming_the_reason(self, platform: Platform) -> None:
        response = self.post(platform, target="kubernetes", name="on-kubernetes")
        assert response.status_code == 503, response.text
        assert "no-such-kubeconfig" in response.json()["detail"]
        targets = {t["name"]: t for t in platform.call("GET", "/api/v1/targets").json()}
        assert targets["local"]["reachable"] is True and targets["local"]["default"] is True
        assert targets["kubernetes"]["reachable"] is False
        assert "no-such-kubeconfig" in targets["kubernetes"]["reason"]

    def test_the_local_target_runs_one_replica_and_a_viewer_cannot_deploy(self, platform: Platform) -> None:
        response = self.post(platform, replicas=2)
        assert response.status_code == 422 and "one model server per deployment" in response.json()["detail"]
        viewer = platform.api.post(
            "/api/v1/deployments",
            headers=platform.viewer.headers,
            json={"model": platform.model, "version": 1, "backend": "cpu"},
        )
        assert viewer.status_code == 403 and "`deploy` scope" in viewer.json()["detail"]


def test_preview_shows_what_would_start_and_writes_nothing(platform: Platform) -> None:
    body = {"model": platform.model, "version": 2, "backend": "cpu", "name": "preview-only", "dry_run": True}
    response = platform.call("POST", "/api/v1/deployments", json=body)
    assert response.status_code == 200, response.text
    preview = response.json()
    assert preview["deployment"] == "preview-only" and preview["target"] == "local"
    [obj] = preview["objects"]
    assert obj["kind"] == "LocalModelServer" and obj["action"] == "create"
    assert "+  version: 2" in obj["diff"]
    assert platform.call("GET", "/api/v1/deployments/preview-only").status_code == 404
    assert not Layout(platform.settings.data_dir).desired("preview-only").exists()


def test_switch_under_load_fails_no_request(platform: Platform) -> None:
    blue = platform.deploy(1, endpoint="switching", name="switching-blue")
    platform.wait_state(blue["name"], "available")
    green = platform.deploy(2, endpoint="switching", name="switching-green", switch=False)
    platform.wait_state(green["name"], "available")
    assert platform.call("GET", "/api/v1/endpoints/switching").json()["active"] == "switching-blue"

    def switch() -> None:
        answer = platform.call(
            "POST", "/api/v1/endpoints/switching/switch", json={"to": "switching-green", "reason": "v2"}
        )
        assert answer.status_code == 200, answer.text

    url = f"{platform.router_url}/endpoints/switching/v2/models/{platform.model}/infer"
    results = load_loop(url, infer_body([[0.1, 0.2, 0.3, 0.4]]), rate=40, seconds=6, during=switch)
    failed = [r for r in results if r[1] != 200]
    assert not failed, failed[:5]
    served = [d for _, _, d in results]
    assert served[0] == "switching-blue" and served[-1] == "switching-green"
    first_green = served.index("switching-green")
    assert all(d == "switching-green" for d in served[first_green + 5 * 40 // 10 :]), (
        "flapped back after the switch"
    )
    print(f"\nswitch under load: {len(results)} requests, 0 failed")
    endpoint = platform.call("GET", "/api/v1/endpoints/switching").json()
    assert {r["deployment"]: r["weight"] for r in endpoint["routes"]} == {
        "switching-green": 100,
        "switching-blue": 0,
    }
    [change] = platform.call("GET", "/api/v1/endpoints/switching/history", params={"limit": 1}).json()[
        "items"
    ]
    assert change["kind"] == "switch" and change["actor"] == "deployer-admin" and change["reason"] == "v2"

    refused = platform.call("DELETE", "/api/v1/deployments/switching-green")
    assert refused.status_code == 409 and "serves 100% of endpoint 'switching'" in refused.json()["detail"]
    gone = platform.call("DELETE", "/api/v1/deployments/switching-blue", params={"reason": "v2 took over"})
    assert gone.status_code == 200, gone.text
    assert gone.json()["deleted"] == ["LocalModelServer/switching-blue"]
    assert gone.json()["deployment"]["state"] == "undeployed"
    layout = Layout(platform.settings.data_dir)
    deadline = time.monotonic() + 60
    while layout.directory("switching-blue").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not layout.directory("switching-blue").exists(), "the supervisor did not stop and remove it"
    assert platform.infer("switching").headers["x-atoll-deployment"] == "switching-green"
    assert [
        r["deployment"] for r in platform.call("GET", "/api/v1/endpoints/switching").json()["routes"]
    ] == ["switching-green"]
    assert audit_actions(platform, "switching-blue")[-1] == "deployment.undeploy"


def test_an_update_rolls_out_a_new_revision_and_rollback_restores_the_previous(platform: Platform) -> None:
    first = platform.deploy(1, endpoint="rolling", name="rolling-main")
    platform.wait_state("rolling-main", "available")
    assert platform.infer("rolling").json()["model_version"] == "1"
    updated = platform.deploy(2, endpoint="rolling", name="rolling-main")
    assert updated["revision"] == 2 and updated["state"] == "pending"
    done = platform.wait_state("rolling-main", "available")
    assert done["version"] == 2 and done["address"] != first.get("address")
    assert platform.infer("rolling").json()["model_version"] == "2"
    assert labels_of(platform.infer("rolling", ROWS)) == expected_labels(2)

    rolled = platform.call(
        "POST", "/api/v1/deployments/rolling-main/rollback", json={"reason": "v2 is worse"}
    )
    assert rolled.status_code == 202, rolled.text
    assert rolled.json()["revision"] == 3 and rolled.json()["version"] == 1
    platform.wait_state("rolling-main", "available")
    deadline = time.monotonic() + 10
    while platform.infer("rolling").json()["model_version"] != "1" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert platform.infer("rolling").json()["model_version"] == "1"
    revisions = platform.call("GET", "/api/v1/deployments/rolling-main/revisions").json()
    assert [(r["revision"], r["version"], r["cause"], r["current"]) for r in revisions] == [
        (3, 1, "rollback", True),
        (2, 2, "update", False),
        (1, 1, "deploy", False),
    ]
    assert audit_actions(platform, "rolling-main") == [
        "deployment.create",
        "deployment.update",
        "deployment.rollback",
    ]


def test_a_crashed_model_server_is_restarted_and_serves_again(platform: Platform) -> None:
    created = platform.deploy(1, endpoint="crashing", name="crashing-main")
    platform.wait_state(created["name"], "available")
    status = platform.call("GET", "/api/v1/deployments/crashing-main/status").json()
    [pod] = status["rollout"]["pods"]
    pid = int(pod["name"].split("pid ")[1].rstrip(")"))
    os.kill(pid, signal.SIGKILL)

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = platform.call("GET", "/api/v1/deployments/crashing-main/status").json()
        pods = status["rollout"]["pods"]
        if status["rollout"]["phase"] == "available" and pods and pods[0]["restarts"] == 1:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"not restarted: {status}")
    assert int(pods[0]["name"].split("pid ")[1].rstrip(")")) != pid
    assert any(e["reason"] == "Exited" and "code -9" in e["message"] for e in status["rollout"]["events"])
    assert platform.infer("crashing").status_code == 200  # the same port: the router's address holds


def test_reconcile_puts_back_a_local_deployment_removed_behind_its_back(platform: Platform) -> None:
    created = platform.deploy(1, name="drifting")
    platform.wait_state("drifting", "available")
    Layout(platform.settings.data_dir).desired("drifting").unlink()  # what an operator's `rm` does
    context = DeployerContext.from_settings(platform.settings)
    with unit_of_work(platform.factory) as session:
        report = reconcile(session, context)
    assert report["repaired"]["drifting"] == ["LocalModelServer/drifting created"], report
    events = platform.call("GET", "/api/v1/deployments/drifting/events").json()["events"]
    assert any(e["reason"] == "DriftRepaired" and e["type"] == "Warning" for e in events)
    platform.wait_state(created["name"], "available")
    assert audit_actions(platform, "drifting")[-1] == "deployment.reconcile"


class TestCli:
    """`atoll deploy`, `deployments`, `endpoints`, `undeploy` and `builds fetch` against the live
    platform, as a CI job runs them (exit codes from the README)."""

    @pytest.fixture(autouse=True)
    def environment(self, platform: Platform, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        for key in list(os.environ):
            if key.upper().startswith("ATOLL_") and not key.upper().startswith("ATOLL_TEST_"):
                monkeypatch.delenv(key)
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
        monkeypatch.setenv("ATOLL_URL", platform.api_url)
        monkeypatch.setenv("ATOLL_TOKEN", platform.admin.token)

    def atoll(self, *args: str) -> Result:
        return CliRunner().invoke(app, list(args), terminal_width=200)

    def test_deploy_watch_list_switch_and_undeploy(self, platform: Platform) -> None:
        model = platform.model
        dry = self.atoll("deploy", model, "1", "--backend", "cpu", "--name", "cli-blue", "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert "create LocalModelServer/cli-blue" in dry.output and "nothing applied" in dry.output

        blue = self.atoll(
            "deploy", model, "1", "--backend", "cpu", "--endpoint", "cli", "--name", "cli-blue", "--json"
        )
        assert blue.exit_code == 0, blue.output
        assert json.loads(blue.stdout)["deployment"]["state"] == "available"
        green = self.atoll(
            "deploy",
            model,
            "2",
            "--backend",
            "cpu",
            "--endpoint",
            "cli",
            "--name",
            "cli-green",
            "--no-switch",
        )
        assert green.exit_code == 0, green.output
        assert "cli-green revision 1: available" in green.output

        listed = json.loads(self.atoll("deployments", "--endpoint", "cli", "--json").stdout)
        assert {d["name"]: d["weight"] for d in listed["items"]} == {"cli-green": 0, "cli-blue": 100}
        shown = self.atoll("deployments", "show", "cli-green")
        assert shown.exit_code == 0 and "available" in shown.output and "revisions" in shown.output
        assert "model ready" in self.atoll("deployments", "logs", "cli-green", "--tail", "20").output

        switched = self.atoll("endpoints", "switch", "cli", "--to", "cli-green", "--reason", "v2 is better")
        assert switched.exit_code == 0, switched.output
        assert "cli now → cli-green" in switched.output
        assert json.loads(self.atoll("endpoints", "show", "cli", "--json").stdout)["active"] == "cli-green"
        history = json.loads(self.atoll("endpoints", "history", "cli", "--json").stdout)["items"]
        assert [h["kind"] for h in history] == ["switch", "attach", "switch", "attach", "create"]
        assert history[0]["reason"] == "v2 is better" and history[0]["actor"] == "deployer-admin"

        refused = self.atoll("undeploy", "cli-green")
        assert refused.exit_code == 5 and "serves 100% of endpoint 'cli'" in refused.output
        done = self.atoll("undeploy", "cli-blue", "--json")
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["deleted"] == ["LocalModelServer/cli-blue"]
        assert "cli-blue" not in self.atoll("deployments").output  # undeployed ones need --all
        assert "cli-blue" in self.atoll("deployments", "--all").output

    @pytest.mark.parametrize(
        ("args", "code", "said"),
        [
            (["--name", "Bad_Name"], 2, "not a valid deployment name"),
            (["--backend", "gpu", "--name", "cli-gpu"], 5, "is failed, not succeeded"),
            (["--target", "kubernetes", "--name", "cli-kube"], 6, "no-such-kubeconfig"),
            (["--replicas", "3", "--name", "cli-three"], 2, "one model server per deployment"),
        ],
    )
    def test_refusals_exit_with_the_readmes_codes(
        self, platform: Platform, args: list[str], code: int, said: str
    ) -> None:
        base = ["deploy", platform.model, "1"] + ([] if "--backend" in args else ["--backend", "cpu"])
        result = self.atoll(*base, *args)
        assert result.exit_code == code, result.output
        assert said in " ".join(result.output.split())

    def test_switching_to_a_deployment_of_another_endpoint_is_a_conflict(self, platform: Platform) -> None:
        created = self.atoll("endpoints", "create", "cli-empty")
        assert created.exit_code == 0, created.output
        result = self.atoll("endpoints", "switch", "cli-empty", "--to", "nowhere-v1")
        assert result.exit_code == 5 and "is not behind endpoint 'cli-empty'" in result.output
        assert self.atoll("deployments", "show", "nope").exit_code == 4

    def test_builds_fetch_downloads_a_builds_files_from_mlflow(
        self, platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("ATOLL_MLFLOW_TRACKING_URI", platform.settings.mlflow_tracking_uri)
        with unit_of_work(platform.factory) as session:
            build = session.get(Build, platform.builds["1/cpu"])
            assert build is not None and build.mlflow_artifact_uri and build.artifact_uri
            uri, local = build.mlflow_artifact_uri, Path(build.artifact_uri)
        dest = tmp_path / "pod-build"
        fetched = self.atoll("builds", "fetch", uri, str(dest), "--json")
        assert fetched.exit_code == 0, fetched.output
        assert json.loads(fetched.stdout)["files"] == ["build.json", "model.onnx"]
        assert (dest / "model.onnx").read_bytes() == (local / "model.onnx").read_bytes()
        bad = self.atoll("builds", "fetch", "s3://bucket/x", str(tmp_path / "x"))
        assert bad.exit_code == 2 and "is not a build's artifact URI" in bad.output
        listed = self.atoll("builds", platform.model, "1", "--json")  # the list form still works
        assert {b["backend"] for b in json.loads(listed.stdout)} == {"cpu", "gpu", "asic"}

    def test_split_and_what_served_when(self, platform: Platform, split_pair: SplitPair) -> None:
        blue, green = split_pair.blue, split_pair.green
        done = self.atoll(
            "endpoints", "split", "traffic", f"{blue}=60", f"{green}=40", "--reason", "cli", "--json"
        )
        assert done.exit_code == 0, done.output
        assert {r["deployment"]: r["weight"] for r in json.loads(done.stdout)["routes"]} == {
            blue: 60,
            green: 40,
        }
        assert self.atoll("endpoints", "split", "traffic", f"{blue}=sixty").exit_code == 2
        short = self.atoll("endpoints", "split", "traffic", f"{blue}=60", f"{green}=30")
        assert short.exit_code == 2 and "they sum to 90; they must sum to 100" in short.output
        stranger = self.atoll("endpoints", "split", "traffic", f"{blue}=50", "nowhere=50")
        assert stranger.exit_code == 2 and "nowhere is not behind endpoint 'traffic'" in stranger.output
        served = json.loads(
            self.atoll("endpoints", "history", "traffic", "--at", utcnow().isoformat(), "--json").stdout
        )
        assert [(r["deployment"], r["weight"], r["version"], r["backend"]) for r in served["routes"]] == [
            (blue, 60, 1, "cpu"),
            (green, 40, 2, "cpu"),
        ]
        shown = self.atoll("endpoints", "history", "traffic", "--at", utcnow().isoformat())
        assert shown.exit_code == 0 and "60%" in shown.output and f"{platform.model} v2" in shown.output
        bad_time = self.atoll("endpoints", "history", "traffic", "--at", "yesterday")
        assert bad_time.exit_code == 2, bad_time.output
        unit = self.atoll("endpoints", "set", "traffic", "--unit-field", "customer.id", "--json")
        assert unit.exit_code == 0 and json.loads(unit.stdout)["settings"]["unit_field"] == "customer.id"
        reset = self.atoll("endpoints", "set", "traffic", "--reset", "unit_field")
        assert reset.exit_code == 0 and "settings defaults" in reset.output
        typo = self.atoll("endpoints", "set", "traffic", "--reset", "unit_feild")
        assert typo.exit_code == 2 and "settings.unit_feild" in typo.output


class TestPortal:
    """The Deployments pages and the one click, through the portal's forms (session + CSRF)."""

    @pytest.fixture
    def browser(self, platform: Platform) -> Iterator[tuple[TestClient, dict[str, str]]]:
        with TestClient(platform.app, raise_server_exceptions=False) as client:
            yield client, sign_in(client, platform.admin, page="/deployments")

    def test_one_click_deploy_from_a_build_row(
        self, platform: Platform, browser: tuple[TestClient, dict[str, str]]
    ) -> None:
        client, csrf = browser
        version_page = client.get(f"/models/{platform.model}/versions/2")
        build_id = platform.builds["2/cpu"]
        link = f"/models/{platform.model}/versions/2/deploy?backend=cpu&amp;build_id={build_id}"
        assert link in version_page.text
        assert 'data-testid="deploy-gpu"' not in version_page.text  # a failed build has no Deploy

        form = client.get(link.replace("&amp;", "&"))
        assert form.status_code == 200
        assert f'value="{platform.model}-v2-cpu"' in form.text
        assert "no-such-kubeconfig" in form.text  # the unreachable target, with its reason

        fields = {
            "backend": "cpu",
            "build_id": str(build_id),
            "target": "local",
            "endpoint": "portal",
            "name": "portal-v2",
            "replicas": "1",
        }
        base = f"/models/{platform.model}/versions/2/deploy"
        preview = client.post(f"{base}/preview", data=fields, headers=csrf)
        assert preview.status_code == 200
        assert (
            "create LocalModelServer/portal-v2" in preview.text
            and 'data-testid="deploy-button"' in preview.text
        )
        assert platform.call("GET", "/api/v1/deployments/portal-v2").status_code == 404  # nothing yet

        refused = client.post(f"{base}/preview", data={**fields, "name": "Portal_V2"}, headers=csrf)
        assert refused.status_code == 200 and 'data-testid="refused"' in refused.text
        assert "not a valid deployment name" in refused.text
        unreachable = client.post(
            f"{base}/preview", data={**fields, "target": "kubernetes", "name": "portal-k"}, headers=csrf
        )
        assert "the kubernetes target is unreachable" in unreachable.text
        no_csrf = client.post(base, data=fields)
        assert no_csrf.status_code == 403

        deployed = client.post(base, data=fields, headers=csrf)
        assert deployed.status_code == 204 and deployed.headers["HX-Redirect"] == "/deployments/portal-v2"
        page = client.get("/deployments/portal-v2")
        assert page.status_code == 200
        assert 'hx-trigger="every 2s"' in page.text  # polling while the rollout runs
        platform.wait_state("portal-v2", "available")
        live = client.get("/deployments/portal-v2/live")
        assert "every 2s" not in live.text and ">available<" in live.text  # polling stops
        assert 'data-testid="pods"' in live.text and "127.0.0.1:" in live.text
        assert "model ready" in client.get("/deployments/portal-v2/logs").text

        listing = client.get("/deployments")
        rows = listing.text.split('data-testid="deployments-table"', 1)[1]
        row = rows.split('href="/deployments/portal-v2"', 1)[1].split("</tr>", 1)[0]
        assert "available" in row and ">local<" in row and ">cpu<" in row and "portal" in row and "v2" in row

        serving = client.post("/deployments/portal-v2/undeploy", data={}, headers=csrf)
        assert serving.headers["HX-Retarget"] == "#action-result"  # the status block stays
        assert "Not undeployed" in serving.text and "serves 100% of endpoint 'portal'" in unescape(
            serving.text
        )
        forced = client.post(
            "/deployments/portal-v2/undeploy", data={"force": "true", "reason": "done"}, headers=csrf
        )
        assert forced.status_code == 200 and ">undeployed<" in forced.text
        nothing = client.post("/deployments/portal-v2/rollback", data={}, headers=csrf)
        assert "Not rolled back" in nothing.text

    def test_a_viewer_sees_pages_but_no_buttons(self, platform: Platform) -> None:
        with TestClient(platform.app, raise_server_exceptions=False) as client:
            csrf = sign_in(client, platform.viewer, page="/deployments")
            assert client.get("/deployments").status_code == 200
            form = client.get(f"/models/{platform.model}/versions/1/deploy?backend=cpu")
            assert "needs the engineer role" in form.text and 'data-testid="deploy-form"' not in form.text
            refused = client.post(
                f"/models/{platform.model}/versions/1/deploy",
                data={"backend": "cpu", "target": "local", "name": "viewer-try"},
                headers=csrf,
            )
            assert "Not deployed" in refused.text and "`deploy` scope" in unescape(refused.text)

    def test_the_endpoint_page_sets_weights_and_answers_what_served_when(
        self, platform: Platform, split_pair: SplitPair, browser: tuple[TestClient, dict[str, str]]
    ) -> None:
        client, csrf = browser
        blue, green = split_pair.blue, split_pair.green
        assert 'href="/endpoints/traffic"' in client.get("/deployments").text
        page = client.get("/endpoints/traffic")
        assert page.status_code == 200
        assert page.text.count('data-testid="route-row"') == 2 and f'name="weight:{green}"' in page.text
        for slot in ("canary", "shadow", "experiments", "drift-banner"):
            assert f'hx-get="/endpoints/traffic/{slot}"' in page.text
        assert 'hx-trigger="load, every 2s"' in page.text

        fields = {f"weight:{blue}": "70", f"weight:{green}": "30", "reason": "from the portal"}
        assert client.post("/endpoints/traffic/split", data=fields).status_code == 403  # no CSRF header
        done = client.post("/endpoints/traffic/split", data=fields, headers=csrf)
        assert done.status_code == 200 and 'data-testid="split-done"' in done.text
        weights = {
            r["deployment"]: r["weight"]
            for r in platform.call("GET", "/api/v1/endpoints/traffic").json()["routes"]
        }
        assert weights == {blue: 70, green: 30}
        short = client.post(
            "/endpoints/traffic/split", data={**fields, f"weight:{green}": "20"}, headers=csrf
        )
        assert short.headers["HX-Retarget"] == "#split-result"
        assert "Weights not changed" in short.text and "they sum to 90" in short.text
        words = client.post(
            "/endpoints/traffic/split", data={**fields, f"weight:{green}": "lots"}, headers=csrf
        )
        assert "a weight is a whole percent" in unescape(words.text)
        history = client.get("/endpoints/traffic").text
        assert "from the portal" in history and 'data-testid="history-row"' in history

        served = client.get("/endpoints/traffic/served", params={"at": utcnow().isoformat()})
        assert served.status_code == 200 and served.text.count('data-testid="served-row"') == 2
        assert "70%" in served.text and f"{platform.model} v2" in served.text
        before = client.get("/endpoints/traffic/served", params={"at": "2000-01-01T00:00:00Z"})
        assert "it had no split yet" in before.text
        bad = client.get("/endpoints/traffic/served", params={"at": "last tuesday"})
        assert "Cannot look up" in bad.text and "ISO 8601" in bad.text
        assert client.get("/endpoints/nowhere").status_code == 404


class TestTraffic:
    """A weighted split between two real model servers, through real router processes."""

    UNITS = [f"customer-{i}" for i in range(60)]

    def split(self, platform: Platform, pair: SplitPair, weights: dict[str, int]) -> dict[str, Any]:
        answer = platform.call(
            "PUT", f"/api/v1/endpoints/{pair.endpoint}/split", json={"weights": weights, "reason": "test"}
        )
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def served_by(self, router_url: str, platform: Platform, unit: str) -> str:
        answer = httpx.post(
            f"{router_url}/endpoints/traffic/v2/models/{platform.model}/infer",
            json=infer_body([[0.1, 0.2, 0.3, 0.4]]),
            headers={"X-Atoll-Unit": unit},
        )
        assert answer.status_code == 200, answer.text
        return answer.headers["x-atoll-deployment"]

    def exposures(self, platform: Platform, split: str, expected: int) -> list[tuple[str, str]]:
        """The exposures of UNITS under `split`, once at least `expected` are written (10 s at most)."""
        deadline = time.monotonic() + 10
        while True:
            with unit_of_work(platform.factory) as session:
                rows = session.execute(
                    select(ExposureEvent.unit_id, ExposureEvent.deployment).where(
                        ExposureEvent.endpoint == "traffic",
                        ExposureEvent.split == split,
                        ExposureEvent.unit_id.in_(self.UNITS),
                    )
                ).all()
            if len(rows) >= expected or time.monotonic() > deadline:
                return [(unit, deployment) for unit, deployment in rows]
            time.sleep(0.2)

    def test_a_split_sticks_across_router_processes_and_a_restart_with_one_exposure_per_unit(
        self, platform: Platform, split_pair: SplitPair
    ) -> None:
        blue, green = split_pair.blue, split_pair.green
        weights = {blue: 50, green: 50}
        previous = platform.call("GET", "/api/v1/endpoints/traffic").json()
        weights_before = {r["deployment"]: r["weight"] for r in previous["routes"]}
        time.sleep(0.01)
        before_split = utcnow()
        endpoint = self.split(platform, split_pair, weights)
        assigned = {unit: assign(endpoint["split_salt"], unit, weights) for unit in self.UNITS}
        assert set(assigned.values()) == {blue, green}
        deadline = time.monotonic() + 10  # the router's table: refreshed every 0.5 s here
        # A probe the old table sends elsewhere (not one of UNITS: their exposures come later),
        # so green for it means the router has loaded the new split.
        probe = next(
            unit
            for unit in (f"probe-{i}" for i in range(1000))
            if assign(endpoint["split_salt"], unit, weights) == green
            and assign(previous["split_salt"], unit, weights_before) != green
        )
        while self.served_by(platform.router_url, platform, probe) != green and time.monotonic() < deadline:
            time.sleep(0.1)

        for _ in range(2):
            assert {u: self.served_by(platform.router_url, platform, u) for u in self.UNITS} == assigned
        rows = self.exposures(platform, endpoint["split_salt"], len(self.UNITS))
        assert sorted(rows) == sorted(assigned.items()), "one exposure per unit, where it was assigned"

        second = RouterProcess(platform.settings, host="127.0.0.1", port=free_port())
        second.start()
        try:
            assert {u: self.served_by(second.url, platform, u) for u in self.UNITS} == assigned
            second.stop()
            second.start()  # a restart: nothing remembered, the same answers
            assert {u: self.served_by(second.url, platform, u) for u in self.UNITS} == assigned
        finally:
            second.stop()
        rows = self.exposures(platform, endpoint["split_salt"], 3 * len(self.UNITS))
        assert Counter(unit for unit, _ in rows) == dict.fromkeys(self.UNITS, 3)  # once per process
        assert {(unit, deployment) for unit, deployment in rows} == set(assigned.items())
        metrics = httpx.get(f"{platform.router_url}/metrics").text
        assert "atoll_router_exposures_dropped_total 0.0" in metrics

        served = platform.call(
            "GET", "/api/v1/endpoints/traffic/history", params={"at": utcnow().isoformat()}
        ).json()
        assert [(r["deployment"], r["weight"], r["version"]) for r in served["routes"]] == [
            (blue, 50, 1),
            (green, 50, 2),
        ]
        earlier = platform.call(
            "GET", "/api/v1/endpoints/traffic/history", params={"at": before_split.isoformat()}
        )
        assert {r["deployment"]: r["weight"] for r in earlier.json()["routes"]} == weights_before
        assert (
            platform.call("GET", "/api/v1/endpoints/traffic/history", params={"at": "1700000000"}).status_code
            == 422
        )

    def test_the_unit_from_a_body_field_and_bad_splits_refused(
        self, platform: Platform, split_pair: SplitPair
    ) -> None:
        blue, green = split_pair.blue, split_pair.green
        endpoint = self.split(platform, split_pair, {blue: 50, green: 50})
        patched = platform.call(
            "PATCH", "/api/v1/endpoints/traffic", json={"settings": {"unit_field": "customer"}}
        )
        assert patched.status_code == 200 and patched.json()["settings"] == {"unit_field": "customer"}
        time.sleep(1.5)  # the routers read settings with the table (refreshed every 0.5 s here)
        url = f"{platform.router_url}/endpoints/traffic/v2/models/{platform.model}/infer"
        for unit in self.UNITS[:20]:
            body = {**infer_body([[0.1, 0.2, 0.3, 0.4]]), "parameters": {"customer": unit}}
            answer = httpx.post(url, json=body)
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-atoll-deployment"] == assign(
                endpoint["split_salt"], unit, {blue: 50, green: 50}
            )
        assert (
            platform.call(
                "PATCH", "/api/v1/endpoints/traffic", json={"settings": {"unit_field": None}}
            ).status_code
            == 200
        )
        typo = platform.call("PATCH", "/api/v1/endpoints/traffic", json={"settings": {"unit_feild": "x"}})
        assert typo.status_code == 422 and typo.json()["errors"][0]["field"] == "settings.unit_feild"
        newline = platform.call(
            "PATCH", "/api/v1/endpoints/traffic", json={"settings": {"unit_header": "X-A\n"}}
        )
        assert newline.status_code == 422

        for weights, field_said in [
            ({blue: 60, green: 30}, "they sum to 90"),
            ({blue: 50, "switching-green": 50}, "not behind endpoint 'traffic'"),
        ]:
            refused = platform.call("PUT", "/api/v1/endpoints/traffic/split", json={"weights": weights})
            assert refused.status_code == 422 and refused.json()["field"] == "weights", refused.text
            assert field_said in refused.json()["detail"]
        viewer = platform.api.put(
            "/api/v1/endpoints/traffic/split", headers=platform.viewer.headers, json={"weights": {blue: 100}}
        )
        assert viewer.status_code == 403
        assert {"endpoint.split", "endpoint.update"} <= set(audit_actions(platform, "traffic"))

    def test_a_deployment_killed_mid_traffic_is_retried_on_the_other_and_no_request_fails(
        self, platform: Platform, split_pair: SplitPair
    ) -> None:
        blue, green = split_pair.blue, split_pair.green
        self.split(platform, split_pair, {blue: 50, green: 50})
        time.sleep(1.0)
        before = self.retries(platform, green)
        pid = server_pid(platform, green)

        url = f"{platform.router_url}/endpoints/traffic/v2/models/{platform.model}/infer"
        results = load_loop(
            url,
            infer_body([[0.1, 0.2, 0.3, 0.4]]),
            rate=40,
            seconds=6,
            during=lambda: os.kill(pid, signal.SIGKILL),
        )
        failed = [r for r in results if r[1] != 200]
        assert not failed, failed[:5]
        assert {d for _, _, d in results} == {blue, green}
        assert self.retries(platform, green) > before, "the killed one's requests were sent to the other"
        deadline = time.monotonic() + 120  # leave it serving again for the tests after this one
        while server_pid(platform, green) == pid and time.monotonic() < deadline:
            time.sleep(0.5)

    def retries(self, platform: Platform, deployment: str) -> float:
        metrics = httpx.get(f"{platform.router_url}/metrics").text
        prefix = (
            f'atoll_router_retries_total{{deployment="{deployment}",endpoint="traffic",outcome="served"}} '
        )
        line = next((line for line in metrics.splitlines() if line.startswith(prefix)), None)
        return float(line.split(" ")[1]) if line else 0.0


def test_a_per_arm_drift_monitor_over_two_real_deployments(platform: Platform) -> None:
    """Two real model servers behind one endpoint log their traffic; one arm's inputs drift.
    A monitor split by arm flags that arm only, and records drift evidence per version."""
    for version, name in ((1, "arm-a"), (2, "arm-b")):
        platform.deploy(version, endpoint="drift-arms", name=name, switch=version == 1)
        platform.wait_state(name, "available")
    addresses = {
        d: platform.call("GET", f"/api/v1/deployments/{d}").json()["address"] for d in ("arm-a", "arm-b")
    }
    rng = np.random.default_rng(7)
    with httpx.Client(timeout=10) as client:
        for deployment, shift in (("arm-a", 0.0), ("arm-b", 3.0)):
            for _ in range(250):
                row = [float(v) for v in rng.normal(size=4)]
                row[0] += shift
                url = f"{addresses[deployment]}/v2/models/{platform.model}/infer"
                assert client.post(url, json=infer_body([row])).status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the servers write their event log in batches
        with unit_of_work(platform.factory) as session:
            logged = session.scalar(
                select(func.count())
                .select_from(InferenceEvent)
                .where(InferenceEvent.endpoint == "drift-arms")
            )
            sample = session.scalar(
                select(InferenceEvent.features).where(InferenceEvent.endpoint == "drift-arms")
            )
        if logged == 500:
            break
        time.sleep(0.3)
    assert logged == 500 and isinstance(sample, dict)
    names = sorted(sample)
    # One drifted column of four: drift at a share of 0.25, judged on Benjamini-Hochberg-corrected
    # p-values so that a chance p < 0.05 on an undrifted column does not flag the clean arm.
    columns = [{"name": n, "kind": "numeric", "method": "ks"} for n in names]
    spec = {"columns": columns, "drift_share": 0.25, "alert_rule": "corrected"}
    created = platform.call(
        "POST",
        "/api/v1/monitors",
        json={"name": "arms", "endpoint": "drift-arms", "split_by": ["arm"], "spec": spec},
    )
    assert created.status_code == 201, created.text
    reference = "\n".join(
        [",".join(names)] + [",".join(f"{v:.6f}" for v in r) for r in rng.normal(size=(800, 4))]
    )
    uploaded = platform.call(
        "POST", "/api/v1/monitors/arms/reference", files={"file": ("reference.csv", reference.encode())}
    )
    assert uploaded.status_code == 201, uploaded.text
    run_id = platform.call("POST", "/api/v1/monitors/arms/runs").json()["run_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = platform.call("GET", f"/api/v1/monitors/arms/runs/{run_id}").json()
        if run["state"] in ("succeeded", "failed", "no_data"):
            break
        time.sleep(0.5)
    assert run["state"] == "succeeded", run["message"]
    groups = {r["group_key"]: r for r in platform.call("GET", "/api/v1/monitors/arms/runs").json()["items"]}
    assert groups["arm=arm-a"]["status"] == "ok" and groups["arm=arm-a"]["rows"] == 250
    assert groups["arm=arm-b"]["status"] == "drift" and groups["arm=arm-b"]["rows"] == 250
    drifted = {
        c["column"]
        for c in platform.call("GET", f"/api/v1/monitors/arms/runs/{groups['arm=arm-b']['id']}").json()[
            "columns"
        ]
        if c["drifted"]
    }
    assert drifted == {names[0]}
    for version, status in ((1, "ok"), (2, "alert")):
        evidence = platform.call("GET", f"/api/v1/models/{platform.model}/versions/{version}/evidence").json()
        drift = [
            e for e in (evidence if isinstance(evidence, list) else evidence["items"]) if e["kind"] == "drift"
        ]
        assert drift and drift[0]["status"] == status, (version, drift)
    for name in ("arm-a", "arm-b"):
        platform.call("DELETE", f"/api/v1/deployments/{name}", params={"force": "true"})
