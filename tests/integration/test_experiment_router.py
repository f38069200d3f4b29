"""Experiments end to end through the real router (issue #16's tests).

One platform per module (tests/integration/deploying.py): MLflow, two versions built for
cpu, real model servers, `atoll router` as a process. Three model servers serve the module
behind one endpoint: v1, v2 and a second deployment of v1 (the A/A twin). Units are sent
through the router with `X-Atoll-Unit`; the router's `X-Atoll-Deployment` says which arm
served each; the test draws each unit's outcome from that arm's true rate (seeded) and posts
it through the API. The readout must equal the engine run on sums the test computes itself
from the units and outcomes it generated.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from mlflow import MlflowClient
from sqlalchemy import func, select, update

from atoll.abtest.models import Experiment
from atoll.abtest.stats import analyze
from atoll.db import unit_of_work
from atoll.deployer.assignment import assign
from atoll.events import ExposureEvent

from .deploying import Platform, infer_body, platform
from .experimenting import definition, hand_request

__all__ = ["platform"]

API = "/api/v1/experiments"
ENDPOINT = "storefront"
V1, V2, TWIN = "store-v1", "store-v2", "store-v1-twin"
ROW = [[0.5, -0.2, 0.1, 0.3]]
THREADS = 16
BATCH = 1000


@pytest.fixture(scope="module")
def shop(platform: Platform) -> Platform:
    """v1 serving the endpoint; v2 and a second v1 behind it at 0 %, all available."""
    platform.deploy(1, endpoint=ENDPOINT, name=V1)
    platform.deploy(2, endpoint=ENDPOINT, name=V2, switch=False)
    platform.deploy(1, endpoint=ENDPOINT, name=TWIN, switch=False)
    for name in (V1, V2, TWIN):
        platform.wait_state(name, "available")
    return platform


def _table_loads(platform: Platform) -> int:
    text = httpx.get(f"{platform.router_url}/metrics").text
    found = re.search(r'^atoll_router_table_refreshes_total\{outcome="ok"\} (\S+)$', text, re.MULTILINE)
    assert found, "the router's /metrics has no table refresh counter"
    return int(float(found.group(1)))


def wait_router_reload(platform: Platform, timeout: float = 10.0) -> None:
    """Wait for two table loads more: the second began after this call, so it read the last commit."""
    wanted = _table_loads(platform) + 2
    deadline = time.monotonic() + timeout
    while _table_loads(platform) < wanted:
        assert time.monotonic() < deadline, "the router did not reload its endpoint table"
        time.sleep(0.1)


def start(platform: Platform, body: dict[str, Any], *, salt: str) -> dict[str, Any]:
    """Create and start the experiment, with `salt` in place of the random one it was given.

    The salt is the randomisation (which arm each unit gets); the product draws it at random,
    the test sets it on the draft so that a run is reproducible, like its other seeds.
    """
    created = platform.call("POST", API, json=body)
    assert created.status_code == 201, created.text
    with unit_of_work(platform.factory) as session:
        session.execute(update(Experiment).where(Experiment.key == body["key"]).values(salt=salt))
    started = platform.call("POST", f"{API}/{body['key']}/start")
    assert started.status_code == 200, started.text
    wait_router_reload(platform)
    experiment: dict[str, Any] = started.json()
    return experiment


def route_units(platform: Platform, units: Sequence[str]) -> dict[str, str]:
    """One inference per unit through the router, in a thread pool; unit -> the deployment that served."""
    url = f"{platform.router_url}/endpoints/{ENDPOINT}/v2/models/{platform.model}/infer"
    body = infer_body(ROW)
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=THREADS)) as client:

        def one(unit: str) -> httpx.Response:
            return client.post(url, json=body, headers={"x-atoll-unit": unit})

        with ThreadPoolExecutor(THREADS) as pool:
            answers = list(pool.map(one, units))
    failed = [
        (u, a.status_code, a.text[:200]) for u, a in zip(units, answers, strict=True) if a.status_code != 200
    ]
    assert not failed, failed[:5]
    return {u: a.headers["x-atoll-deployment"] for u, a in zip(units, answers, strict=True)}


def post_outcomes(platform: Platform, key: str, converted: dict[str, int]) -> None:
    """A `purchase` outcome for each converted unit, through the API in batches (ts: now)."""
    events = [
        {"event_id": f"{key}-{unit}", "unit_id": unit, "metric": "purchase", "experiment": key}
        for unit, bought in converted.items()
        if bought
    ]
    for first in range(0, len(events), BATCH):
        answer = platform.call(
            "POST", "/api/v1/events/outcomes", json={"events": events[first : first + BATCH]}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["duplicates"] == 0


def exposures(platform: Platform, salt: str) -> dict[str, list[str]]:
    """unit -> the deployments of its exposure rows under this split."""
    with unit_of_work(platform.factory) as session:
        rows = session.execute(
            select(ExposureEvent.unit_id, ExposureEvent.deployment).where(ExposureEvent.split == salt)
        ).all()
    found: dict[str, list[str]] = {}
    for unit, deployment in rows:
        found.setdefault(unit, []).append(deployment)
    return found


def wait_exposures(platform: Platform, salt: str, count: int, timeout: float = 30.0) -> None:
    """Until the router's batch writer has flushed `count` exposure rows for the split."""
    deadline = time.monotonic() + timeout
    while True:
        with unit_of_work(platform.factory) as session:
            written = session.scalar(
                select(func.count()).select_from(ExposureEvent).where(ExposureEvent.split == salt)
            )
        if written is not None and written >= count:
            return
        assert time.monotonic() < deadline, f"{written} of {count} exposures written"
        time.sleep(0.2)


def simulate(
    platform: Platform, experiment: dict[str, Any], rates: dict[str, float], units: int, *, seed: int
) -> dict[str, list[int]]:
    """`units` units through the router, outcomes drawn from the serving arm's rate and posted;
    returns per arm its units' conversions (1 or 0), for the hand-computed sums."""
    rng = np.random.default_rng(seed)
    names = [f"{experiment['key']}-u{i}" for i in range(units)]
    served = route_units(platform, names)
    weights = {a["deployment"]: a["weight"] for a in experiment["arms"]}
    strays = [u for u, d in served.items() if d != assign(experiment["salt"], u, weights)]
    assert not strays, f"{len(strays)} units not where the experiment's salt and weights send them"
    converted = {u: int(rng.random() < rates[served[u]]) for u in names}
    post_outcomes(platform, experiment["key"], converted)
    wait_exposures(platform, experiment["salt"], units)
    per_arm: dict[str, list[int]] = {arm: [] for arm in rates}
    for unit in names:
        per_arm[served[unit]].append(converted[unit])
    return per_arm


def results(platform: Platform, key: str) -> dict[str, Any]:
    answer = platform.call("GET", f"{API}/{key}/results")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_a_lift_through_the_router_is_measured_won_and_promoted(shop: Platform) -> None:
    platform = shop
    policy = {"protected": False, "gates": {"ab_evidence": True}}
    put = platform.call("PUT", f"/api/v1/models/{platform.model}/policies/champion", json=policy)
    assert put.status_code == 200, put.text
    experiment = start(platform, definition("lift", ENDPOINT, {V1: 50, V2: 50}, V1), salt="seeded-lift")
    units = 3000
    per_arm = simulate(platform, experiment, {V1: 0.10, V2: 0.20}, units, seed=16)
    post_outcomes(platform, "lift", {"never-routed": 1})  # a unit the router never saw: counted apart

    seen = exposures(platform, experiment["salt"])
    assert len(seen) == units and all(len(rows) == 1 for rows in seen.values())  # one row per unit
    again = route_units(platform, list(seen))  # a second request: every unit keeps its arm
    assert again == {unit: rows[0] for unit, rows in seen.items()}
    time.sleep(1.0)  # the batch writer's flush period (0.5 s) twice: a second row would be there now
    assert sum(len(rows) for rows in exposures(platform, experiment["salt"]).values()) == units

    readout = results(platform, "lift")
    expected = analyze(hand_request(experiment, per_arm))
    got = readout["analysis"]
    assert got["srm"]["observed"] == expected.srm.observed == {a: len(v) for a, v in per_arm.items()}
    assert got["srm"]["mismatch"] is False
    for arm, values in per_arm.items():
        assert readout["sums"]["conversion"][arm]["n"] == len(values)
        assert readout["sums"]["conversion"][arm]["sum"] == sum(values)
    comparison, hand = got["metrics"][0]["comparisons"][0], expected.metrics[0].comparisons[0]
    assert comparison["arm"] == hand.arm == V2
    assert comparison["p_value"] == pytest.approx(hand.p_value, rel=1e-9)
    assert comparison["absolute_lift"] == pytest.approx(hand.absolute_lift, rel=1e-9)
    assert hand.relative_ci is not None
    assert comparison["relative_ci"]["lower"] == pytest.approx(hand.relative_ci.lower, rel=1e-9)
    assert comparison["relative_ci"]["upper"] == pytest.approx(hand.relative_ci.upper, rel=1e-9)
    assert got["decisions"][0]["verdict"] == expected.decisions[0].verdict == "ship"
    assert (readout["verdict"], readout["winner"]) == ("won", V2)
    assert readout["unexposed_outcomes"] == 1  # stored, counted, not in the sums above

    concluded = platform.call("POST", f"{API}/lift/conclude", json={"promote": True, "reason": "v2 won"})
    assert concluded.status_code == 200, concluded.text
    verdict = concluded.json()["verdict"]
    assert verdict["verdict"] == "won"
    assert verdict["promoted"] == {
        "model": platform.model,
        "version": 2,
        "alias": "champion",
        "deployment": V2,
    }
    registered = MlflowClient(platform.settings.mlflow_tracking_uri).get_registered_model(platform.model)
    assert registered.aliases.get("champion") == "2"
    endpoint = platform.call("GET", f"/api/v1/endpoints/{ENDPOINT}").json()
    assert {r["deployment"]: r["weight"] for r in endpoint["routes"]} == {V1: 0, V2: 100, TWIN: 0}
    assert endpoint["active"] == V2 and endpoint["traffic_owner"] is None
    history = platform.call("GET", f"/api/v1/endpoints/{ENDPOINT}/history").json()["items"]
    changes = [h for h in history if h["kind"] == "experiment"][::-1]
    assert [c["to_weights"] for c in changes] == [{V1: 50, V2: 50, TWIN: 0}, {V1: 0, V2: 100, TWIN: 0}]
    wait_router_reload(platform)
    after = route_units(platform, [f"after-{i}" for i in range(50)])
    assert set(after.values()) == {V2}


def test_an_a_a_experiment_shows_no_srm_and_no_more_false_positives_than_alpha_allows(
    shop: Platform,
) -> None:
    """Five seeded A/A experiments (v1 against a second deployment of v1, each a new experiment,
    so a new salt) of 1,000 units, conversion 0.1 on both arms. With alpha 0.05 each is
    significant with probability 0.05; at most one of five is allowed (P(more) ≈ 0.023 for a
    correct router and engine). The salts and the outcomes are seeded, so a run is
    reproducible rather than a 2 % flake. No SRM: each rep's p-value above 0.001."""
    platform = shop
    significant = 0
    for rep in range(5):
        key = f"aa-{rep}"
        experiment = start(platform, definition(key, ENDPOINT, {V1: 50, TWIN: 50}, V1), salt=f"seeded-{key}")
        per_arm = simulate(platform, experiment, {V1: 0.1, TWIN: 0.1}, 1000, seed=100 + rep)
        readout = results(platform, key)
        srm = readout["analysis"]["srm"]
        assert srm["observed"] == {a: len(v) for a, v in per_arm.items()}
        assert srm["mismatch"] is False and srm["p_value"] > 0.001, srm
        comparison = readout["analysis"]["metrics"][0]["comparisons"][0]
        expected = analyze(hand_request(experiment, per_arm)).metrics[0].comparisons[0]
        assert comparison["p_value"] == pytest.approx(expected.p_value, rel=1e-9)
        significant += comparison["p_value"] < experiment["alpha"]
        stopped = platform.call("POST", f"{API}/{key}/stop", json={"reason": "A/A rep done"})
        assert stopped.status_code == 200, stopped.text
    assert significant <= 1
