"""Registry listing: Atoll's model list (API and page) vs MLflow's own search API.

Data: 1,000 registered models x 20 versions = 20,000 versions in a real `mlflow server`
(SQLite store). The rows are bulk-inserted into MLflow's own tables after MLflow created
its schema (creating 20,000 versions through the API takes ~8 minutes here); MLflow's
search API then confirms the counts before anything is timed.

Measures, in one run on this machine: a full sync into Atoll's cache (goal <= 60 s), and
sequential request latency p50/p95 of Atoll's `GET /api/v1/models` and `/models` page vs
MLflow's `registered-models/search`, same page size, same filters (goal Atoll p95 <= 150 ms).
Usage: uv run python bench/bench_registry.py [--models 1000] [--versions 20] [--requests 300]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
TEAMS = [f"team-{i}" for i in range(10)]


def populate(db: Path, models: int, versions: int) -> None:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{db}")  # type: ignore[no-untyped-call]  # creates the schema
    store.create_registered_model("seed")  # type: ignore[no-untyped-call]
    store.create_model_version("seed", source="s3://models/seed/1", run_id=None)
    now = int(time.time() * 1000)
    with sqlite3.connect(db) as connection:
        connection.execute("DELETE FROM model_versions")
        connection.execute("DELETE FROM registered_models")
        connection.executemany(
            "INSERT INTO registered_models (name, creation_time, last_updated_time, description, workspace) "
            "VALUES (?, ?, ?, ?, 'default')",
            [(f"model-{i:04d}", now, now, f"ranking model {i}") for i in range(models)],
        )
        connection.executemany(
            "INSERT INTO registered_model_tags (key, value, name, workspace) VALUES ('atoll.team', ?, ?, 'default')",
            [(TEAMS[i % len(TEAMS)], f"model-{i:04d}") for i in range(models)],
        )
        connection.executemany(
            "INSERT INTO model_versions (name, version, creation_time, last_updated_time, description, user_id, "
            "current_stage, source, run_id, status, status_message, run_link, storage_location, workspace) "
            "VALUES (?, ?, ?, ?, '', NULL, 'None', ?, NULL, 'READY', NULL, NULL, NULL, 'default')",
            [
                (f"model-{i:04d}", v, now, now, f"s3://models/model-{i:04d}/{v}")
                for i in range(models)
                for v in range(1, versions + 1)
            ],
        )


def wait_for(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def timings(client: httpx.Client, urls: list[str], headers: dict[str, str] | None = None) -> list[float]:
    for url in urls[:10]:  # warm-up
        client.get(url, headers=headers)
    found = []
    for url in urls:
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        found.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{url}: {response.status_code} {response.text[:200]}")
    return found


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="atoll-bench-registry-"))
    (work / "mlflow").mkdir()
    started = time.perf_counter()
    populate(work / "mlflow" / "mlflow.db", args.models, args.versions)
    print(
        f"populated MLflow with {args.models} models x {args.versions} versions in {time.perf_counter() - started:.1f} s"
    )

    from atoll.registry.mlflow.embedded import EmbeddedMlflow

    mlflow = EmbeddedMlflow(work, 5599)
    mlflow_uri = mlflow.start()
    atoll_db = f"sqlite:///{work / 'atoll.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATOLL_")}
    env.update(ATOLL_DATABASE_URL=atoll_db, ATOLL_MLFLOW_TRACKING_URI=mlflow_uri, ATOLL_DATA_DIR=str(work),
               ATOLL_LOG_LEVEL="WARNING")  # fmt: skip
    subprocess.run([sys.executable, "-m", "atoll", "db", "upgrade"], env=env, check=True, capture_output=True)
    token = make_admin_token(atoll_db)
    server = subprocess.Popen(
        [sys.executable, "-m", "atoll", "server", "--port", "8599"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        atoll = "http://127.0.0.1:8599"
        wait_for(f"{atoll}/healthz")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(timeout=300) as client:
            total = client.get(
                f"{mlflow_uri}/api/2.0/mlflow/registered-models/search", params={"max_results": 1000}
            )
            assert len(total.json()["registered_models"]) == min(args.models, 1000), (
                "MLflow does not see the data"
            )
            started = time.perf_counter()
            report = client.post(f"{atoll}/api/v1/registry/sync", headers=headers).json()
            sync_seconds = time.perf_counter() - started
            print(f"full sync: {report['models']} models, {report['versions']} versions in {sync_seconds:.1f} s "
                  f"(goal <= 60 s)")  # fmt: skip
            n = args.requests
            pages = [i * 50 for i in range(args.models // 50)]
            cases = {
                "list page (50)": (
                    [f"{atoll}/api/v1/models?limit=50&offset={pages[i % len(pages)]}" for i in range(n)],
                    [f"{mlflow_uri}/api/2.0/mlflow/registered-models/search?max_results=50" for _ in range(n)],
                ),
                "name search": (
                    [f"{atoll}/api/v1/models?limit=50&q=model-0{i % 10}" for i in range(n)],
                    [f"{mlflow_uri}/api/2.0/mlflow/registered-models/search?max_results=50"
                     f"&filter=name%20LIKE%20%27%25model-0{i % 10}%25%27" for i in range(n)],
                ),
                "team tag filter": (
                    [f"{atoll}/api/v1/models?limit=50&team={TEAMS[i % 10]}" for i in range(n)],
                    [f"{mlflow_uri}/api/2.0/mlflow/registered-models/search?max_results=50"
                     f"&filter=tags.%60atoll.team%60%20%3D%20%27{TEAMS[i % 10]}%27" for i in range(n)],
                ),
            }  # fmt: skip
            print(
                f"\n{'case':18} {'Atoll p50':>10} {'p95':>8} {'MLflow p50':>11} {'p95':>8} {'p95 ratio':>10}"
            )
            for case, (ours, theirs) in cases.items():
                a = timings(client, ours, headers)
                m = timings(client, theirs)
                print(f"{case:18} {p(a, 50):9.1f}ms {p(a, 95):7.1f}ms {p(m, 50):10.1f}ms {p(m, 95):7.1f}ms "
                      f"{p(a, 95) / p(m, 95):9.2f}x")  # fmt: skip
            page = client.get(f"{atoll}/models", headers=headers)
            if page.status_code == 200 and "model-0000" in page.text:
                a = timings(
                    client, [f"{atoll}/models?offset={pages[i % len(pages)]}" for i in range(n)], headers
                )
                print(f"{'portal /models':18} {p(a, 50):9.1f}ms {p(a, 95):7.1f}ms {'(HTML page)':>20}")
            else:
                print(f"portal /models: not measured ({page.status_code}: the page is not built yet)")
    finally:
        server.terminate()
        server.wait(timeout=15)
        mlflow.stop()


def make_admin_token(database_url: str) -> str:
    from atoll.auth import service
    from atoll.auth.policy import Role, Scope
    from atoll.db import make_engine, make_session_factory, unit_of_work

    engine = make_engine(database_url)
    with unit_of_work(make_session_factory(engine)) as session:
        user = service.create_user(
            session, actor=None, username="bench", password="bench-password-1", role=Role.admin
        )
        actor = service.principal_for_user(user, via="bench")
        issued = service.create_token(
            session, actor=actor, name="bench", scopes=list(Scope), expires_in_days=1
        )
    engine.dispose()
    return issued.secret


if __name__ == "__main__":
    main()
