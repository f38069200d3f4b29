"""The local target and its supervisor with real `atoll serve` processes over a hand-made ONNX
build (no MLflow needed): crash loops, re-adoption after the platform dies, a graceful
stop and restart, a pid that now belongs to someone else, no supervisor at all."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from atoll.deployer import local_server
from atoll.deployer.targets.base import RolloutStatus
from atoll.deployer.targets.local import NO_SUPERVISOR, LocalTarget
from atoll.deployer.targets.localfiles import ServerState, pid_alive, write_json
from atoll.deployer.targets.supervisor import LocalSupervisor, SupervisorRunning
from atoll.settings import child_environment, load_settings

from .test_model_server import Trained, write_build

NAME = "churn-v3-cpu"


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    features = rng.normal(size=(200, 30)).astype(np.float32)
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    onnx = to_onnx(model, features[:1], options={id(model): {"zipmap": False}}).SerializeToString()
    return write_build(tmp_path_factory.mktemp("build"), Trained(model, onnx, features))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def make_supervisor(data_dir: Path, database_url: str) -> Iterator[Callable[[], LocalSupervisor]]:
    settings = load_settings(data_dir=data_dir, database_url=database_url, log_format="text")
    started: list[LocalSupervisor] = []

    def make() -> LocalSupervisor:
        supervisor = LocalSupervisor(data_dir, env=child_environment(settings), ready_timeout=120)
        supervisor.start()
        started.append(supervisor)
        return supervisor

    yield make
    for supervisor in started:
        if supervisor._lock_file is not None:
            supervisor.stop(stop_servers=True)


def server(build_dir: Path | str, name: str = NAME) -> dict[str, Any]:
    spec = local_server.LocalServerSpec(
        name=name, build_dir=str(build_dir), build_id=1, model="churn", version=3, backend="cpu"
    )
    return local_server.render(spec)


def wait(target: LocalTarget, check: Callable[[RolloutStatus], bool], timeout: float = 120) -> RolloutStatus:
    deadline = time.monotonic() + timeout
    status = target.status(NAME)
    while time.monotonic() < deadline:
        status = target.status(NAME)
        if check(status):
            return status
        time.sleep(0.2)
    log = target.logs(NAME, 30)
    pytest.fail(f"not reached within {timeout} s: {status}\n{log}")


def pid_of(status: RolloutStatus) -> int:
    return int(status.pods[0].name.split("pid ")[1].rstrip(")"))


def test_without_a_supervisor_the_target_says_so(data_dir: Path, build: Path) -> None:
    target = LocalTarget(data_dir)
    health = target.check()
    assert not health.reachable and "no local supervisor is running" in str(health.reason)
    assert "atoll up" in str(health.reason)
    target.apply([server(build)])
    status = target.status(NAME)
    assert (status.phase, status.reason) == ("progressing", NO_SUPERVISOR)


def test_a_server_that_keeps_exiting_is_reported_as_crash_looping(
    data_dir: Path, make_supervisor: Callable[[], LocalSupervisor]
) -> None:
    make_supervisor()
    target = LocalTarget(data_dir)
    target.apply([server(data_dir / "no-such-build")])
    status = wait(target, lambda s: s.phase == "failed", timeout=180)
    assert status.reason == "CrashLoopBackOff"
    assert "exited with code 2" in str(status.message)
    assert "is not a directory" in str(status.message)  # the server's own last words, from its log
    assert status.pods[0].restarts >= 3
    assert [e.reason for e in status.events].count("Exited") >= 3


def test_re_adoption_after_the_platform_dies_and_restart_after_it_stops(
    data_dir: Path, build: Path, make_supervisor: Callable[[], LocalSupervisor]
) -> None:
    first = make_supervisor()
    target = LocalTarget(data_dir)
    assert target.check().reachable
    assert [o.action for o in target.apply([server(build)]).objects] == ["created"]
    ready = wait(target, lambda s: s.phase == "available")
    pid, address = pid_of(ready), ready.address
    assert address is not None and httpx.get(f"{address}/v2/health/ready").status_code == 200

    first.stop(stop_servers=False)  # as if `atoll up` were killed: its servers keep running
    assert pid_alive(pid)
    make_supervisor()
    adopted = wait(target, lambda s: any(e.reason == "Adopted" for e in s.events))
    assert (adopted.phase, pid_of(adopted), adopted.address) == ("available", pid, address)
    assert [o.action for o in target.apply([server(build)]).objects] == ["unchanged"]

    with pytest.raises(SupervisorRunning):  # one supervisor per data directory
        LocalSupervisor(data_dir, env=dict(os.environ)).start()


def test_a_graceful_stop_stops_the_servers_and_the_next_start_restarts_them(
    data_dir: Path, build: Path, make_supervisor: Callable[[], LocalSupervisor]
) -> None:
    first = make_supervisor()
    target = LocalTarget(data_dir)
    target.apply([server(build)])
    pid = pid_of(wait(target, lambda s: s.phase == "available"))
    first.stop(stop_servers=True)
    assert not pid_alive(pid)
    stopped = target.status(NAME)
    assert stopped.phase == "progressing" and stopped.reason == NO_SUPERVISOR
    make_supervisor()
    again = wait(target, lambda s: s.phase == "available")
    assert pid_of(again) != pid


def test_a_recorded_pid_that_is_now_another_program_is_left_alone(
    data_dir: Path, build: Path, make_supervisor: Callable[[], LocalSupervisor]
) -> None:
    target = LocalTarget(data_dir)
    target.apply([server(build)])
    stranger = subprocess.Popen(["sleep", "120"])
    try:
        write_json(
            target.layout.state(NAME),
            ServerState(generation=1, pid=stranger.pid, port=1, phase="ready").as_json(),
        )
        make_supervisor()
        status = wait(target, lambda s: s.phase == "available")
        assert pid_of(status) != stranger.pid
        assert stranger.poll() is None, "the supervisor signalled a process that is not its server"
    finally:
        stranger.kill()
        stranger.wait()


def test_delete_stops_the_server_and_removes_its_files(
    data_dir: Path, build: Path, make_supervisor: Callable[[], LocalSupervisor]
) -> None:
    make_supervisor()
    target = LocalTarget(data_dir)
    target.apply([server(build)])
    pid = pid_of(wait(target, lambda s: s.phase == "available"))
    assert [(d.kind, d.name) for d in target.delete(NAME)] == [("LocalModelServer", NAME)]
    assert target.delete(NAME) == []
    deadline = time.monotonic() + 60
    while (pid_alive(pid) or target.layout.directory(NAME).exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(pid) and not target.layout.directory(NAME).exists()
