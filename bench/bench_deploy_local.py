"""Local target: a deploy request until the model server is ready, next to a bare `atoll serve`.

Three rows, each the median of `--rounds` fresh model servers over the same cpu build
(scikit-learn GradientBoosting, 30 features; bench_serve.py writes it):

- anchor: `atoll serve BUILD` started by hand, polled on `/v2/health/ready` every 50 ms;
- target: `LocalTarget.apply` of the deployment's object, with the supervisor running,
  until `status()` says available (the supervisor's tick and readiness probe included);
- click: `service.deploy` (validation, rows, audit, the job) and the rollout job run to
  available, as the portal's Deploy button does (SQLite platform database).

Goal: click ≤ 5 s. Run: `uv run python bench/bench_deploy_local.py [--rounds N]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atoll.auth.service import principal_for_user  # noqa: E402
from atoll.db import make_engine, make_session_factory, unit_of_work  # noqa: E402
from atoll.deployer import local_server, rollouts, service  # noqa: E402
from atoll.deployer.lifecycle import DeployerContext  # noqa: E402
from atoll.deployer.schemas import DeployRequest  # noqa: E402
from atoll.deployer.targets.local import LocalTarget  # noqa: E402
from atoll.deployer.targets.supervisor import LocalSupervisor  # noqa: E402
from atoll.jobs import Job  # noqa: E402
from atoll.registry.models import Build  # noqa: E402
from atoll.settings import child_environment, load_settings  # noqa: E402
from bench.bench_serve import free_port, migrated_sqlite, train, write_build  # noqa: E402

GOAL_SECONDS = 5.0


def anchor(build: Path, env: dict[str, str]) -> float:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "atoll", "serve", str(build), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                raise SystemExit(f"atoll serve exited with {process.returncode}")
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(30)


def wait_available(target: LocalTarget, name: str) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = target.status(name)
        if status.phase == "available":
            return
        if status.phase == "failed":
            raise SystemExit(f"{name} failed: {status.reason}: {status.message}")
        time.sleep(0.05)
    raise SystemExit(f"{name} not available in 180 s")


def through_target(target: LocalTarget, build: Path, index: int) -> float:
    name = f"bench-target-{index}"
    spec = local_server.LocalServerSpec(
        name=name, build_dir=str(build), build_id=1, model="bench", version=1, backend="cpu"
    )
    started = time.perf_counter()
    target.apply([local_server.render(spec)])
    wait_available(target, name)
    took = time.perf_counter() - started
    target.delete(name)
    return took


def click(context: DeployerContext, factory: object, actor: object, index: int) -> float:
    name = f"bench-click-{index}"
    started = time.perf_counter()
    with unit_of_work(factory) as session:  # type: ignore[arg-type]
        deployment = service.deploy(
            session,
            context,
            actor=actor,  # type: ignore[arg-type]
            request=DeployRequest(model="bench", version=1, backend="cpu", name=name),
        )
        job = session.get(Job, deployment.rollout_job_id)
        assert job is not None
        payload, job.status = dict(job.payload), "succeeded"  # run here, not by a worker
    with unit_of_work(factory) as session:  # type: ignore[arg-type]
        outcome = rollouts.run_rollout(session, context, payload, poll_seconds=0.05)
    took = time.perf_counter() - started
    if outcome["state"] != "available":
        raise SystemExit(f"{name}: {outcome}")
    with unit_of_work(factory) as session:  # type: ignore[arg-type]
        service.undeploy(session, context, actor=None, name=name, force=True, reason="bench")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory(prefix="atoll-bench-local-") as scratch:
        root = Path(scratch)
        model, features = train()
        build = write_build(model, features, root / "build")
        url = migrated_sqlite(root)
        settings = load_settings(data_dir=root / "data", database_url=url, log_level="WARNING")
        env = {**child_environment(settings)}
        factory = make_session_factory(make_engine(url))
        with unit_of_work(factory) as session:
            session.add(
                Build(
                    model_name="bench", version=1, backend="cpu", status="succeeded", format="onnx",
                    artifact_uri=str(build),
                )
            )  # fmt: skip
            from atoll.auth import service as auth_service
            from atoll.auth.policy import Role

            user = auth_service.create_user(
                session, actor=None, username="bench", password="bench-password-1", role=Role.engineer
            )
            actor = principal_for_user(user, via="bench")
        supervisor = LocalSupervisor.from_settings(settings)
        supervisor.start()
        try:
            target = LocalTarget(settings.data_dir)
            context = DeployerContext.from_settings(settings)
            anchor(build, env)  # warm the file cache and Python's bytecode
            results: dict[str, list[float]] = {"anchor": [], "target": [], "click": []}
            for index in range(rounds):
                results["anchor"].append(anchor(build, env))
                results["target"].append(through_target(target, build, index))
                results["click"].append(click(context, factory, actor, index))
        finally:
            supervisor.stop(stop_servers=True)
    median = {name: statistics.median(values) for name, values in results.items()}
    print(
        f"local target, request -> model server ready ({rounds} rounds, medians; cpu count {os.cpu_count()}):"
    )
    print(f"  anchor  bare `atoll serve` by hand      {median['anchor']:6.2f} s")
    print(
        f"  target  LocalTarget.apply -> available  {median['target']:6.2f} s  ratio {median['target'] / median['anchor']:.2f}x"
    )
    print(
        f"  click   service.deploy + rollout job    {median['click']:6.2f} s  ratio {median['click'] / median['anchor']:.2f}x"
    )
    verdict = "meets" if median["click"] <= GOAL_SECONDS else "MISSES"
    print(f"  goal: click <= {GOAL_SECONDS:.0f} s: {verdict} ({median['click']:.2f} s)")
    print(f"  all rounds: { ({k: [round(v, 2) for v in vals] for k, vals in results.items()}) }")


if __name__ == "__main__":
    main()
