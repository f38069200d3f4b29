"""Pure parts of the deployer core: the lifecycle, route choice, weights, names, the local
target's object and files."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atoll.deployer import local_server, states
from atoll.deployer.desired import default_name
from atoll.deployer.endpoints import check_endpoint_name, check_weights
from atoll.deployer.routing.choice import EndpointRoutes, Route, choose
from atoll.deployer.routing.table import TableCache
from atoll.deployer.specs import check_deployment_name
from atoll.deployer.targets.localfiles import MAX_EVENTS, ServerState, tail
from atoll.errors import Conflict, InvalidInput


class TestLifecycle:
    def test_a_rollout_goes_pending_applying_progressing_available(self) -> None:
        path = [states.PENDING, states.APPLYING, states.PROGRESSING, states.AVAILABLE]
        for current, wanted in itertools.pairwise(path):
            assert states.can_move(current, wanted)

    @pytest.mark.parametrize("live", sorted(states.LIVE_STATES))
    def test_every_live_state_can_start_a_new_revision_or_be_undeployed(self, live: str) -> None:
        assert states.can_move(live, states.PENDING)
        assert states.can_move(live, states.UNDEPLOYING)

    def test_undeployed_only_comes_back_through_pending(self) -> None:
        assert states.TRANSITIONS[states.UNDEPLOYED] == {states.PENDING}
        assert not states.can_move(states.UNDEPLOYED, states.AVAILABLE)
        assert not states.can_move(states.PENDING, states.AVAILABLE)  # never available unapplied
        assert not states.can_move(states.UNDEPLOYING, states.AVAILABLE)

    def test_a_refused_move_names_both_states(self) -> None:
        with pytest.raises(Conflict, match="'ranker' is undeployed; it cannot become available"):
            states.check_move("ranker", states.UNDEPLOYED, states.AVAILABLE)

    def test_every_state_has_transitions_and_terminal_ones_stop_the_watch(self) -> None:
        assert set(states.TRANSITIONS) == set(states.ALL_STATES)
        assert {s for s in states.ALL_STATES if states.is_terminal(s)} == {
            states.AVAILABLE,
            states.FAILED,
            states.UNDEPLOYING,
            states.UNDEPLOYED,
        }


def route(name: str, weight: int, *, ready: bool = True, address: str | None = "http://127.0.0.1:1") -> Route:
    return Route(name, weight, address, ready)


class TestChoose:
    def test_the_active_deployment_takes_every_draw_and_warm_ones_none(self) -> None:
        routes = [route("blue", 0), route("green", 100)]
        assert {choose(routes, d / 100).deployment for d in range(100)} == {"green"}  # type: ignore[union-attr]

    def test_nothing_ready_with_traffic_is_none(self) -> None:
        assert choose([], 0.5) is None
        assert choose([route("blue", 100, ready=False), route("green", 0)], 0.5) is None
        assert choose([route("blue", 100, address=None)], 0.5) is None

    def test_a_split_is_served_in_proportion_to_the_weights(self) -> None:
        routes = [route("a", 10), route("b", 30), route("c", 60)]
        picks = Counter(choose(routes, i / 1000).deployment for i in range(1000))  # type: ignore[union-attr]
        assert picks == {"a": 100, "b": 300, "c": 600}

    def test_leaving_out_a_failed_route_renormalises_the_rest(self) -> None:
        routes = [route("a", 50), route("b", 50, ready=False), route("c", 50)]
        picks = Counter(choose(routes, i / 100).deployment for i in range(100))  # type: ignore[union-attr]
        assert picks == {"a": 50, "c": 50}

    @given(st.lists(st.integers(0, 100), min_size=1, max_size=6), st.floats(0, 1, exclude_max=True))
    def test_a_draw_always_picks_a_route_with_weight(self, weights: list[int], draw: float) -> None:
        routes = [route(f"d{i}", w) for i, w in enumerate(weights)]
        picked = choose(routes, draw)
        if sum(weights) == 0:
            assert picked is None
        else:
            assert picked is not None and picked.weight > 0

    def test_a_503_describes_the_routes(self) -> None:
        described = EndpointRoutes("e", (route("blue", 100, ready=False), route("green", 0))).describe()
        assert described == "blue 100% (not ready), green 0% (ready)"
        assert EndpointRoutes("e", ()).describe() == "no deployments"


class TestWeights:
    @pytest.mark.parametrize("weights", [{}, {"a": 0}, {"a": 100, "b": 0}, {"a": 30, "b": 70}])
    def test_all_zero_or_summing_to_100_is_valid(self, weights: dict[str, int]) -> None:
        check_weights(weights)

    @pytest.mark.parametrize(
        ("weights", "message"),
        [({"a": 60, "b": 60}, "they sum to 120"), ({"a": 101}, "a has 101"), ({"a": -1, "b": 1}, "a has -1")],
    )
    def test_anything_else_is_refused_naming_the_field(self, weights: dict[str, int], message: str) -> None:
        with pytest.raises(InvalidInput, match=message):
            check_weights(weights)


class TestNames:
    @pytest.mark.parametrize(
        ("model", "expected"),
        [
            ("ranker", "ranker-v7-gpu"),
            ("Fraud_Ranker", "fraud-ranker-v7-gpu"),
            ("7-eleven", "m-7-eleven-v7-gpu"),
            ("team/model.v2", "team-model-v2-v7-gpu"),
        ],
    )
    def test_default_names_are_valid_deployment_names(self, model: str, expected: str) -> None:
        assert default_name(model, 7, "gpu") == expected
        check_deployment_name(expected)

    def test_a_long_model_name_keeps_the_suffix_and_stays_unique(self) -> None:
        first, second = default_name("a" * 300, 12, "asic"), default_name("a" * 299 + "b", 12, "asic")
        assert len(first) <= 63 and first.endswith("-v12-asic") and first != second
        check_deployment_name(first)

    @pytest.mark.parametrize("bad", ["Scoring", "scoring_api", "-scoring", "scoring-", "a" * 64, ""])
    def test_endpoint_names_are_dns_1123_labels(self, bad: str) -> None:
        with pytest.raises(InvalidInput, match="not a valid endpoint name"):
            check_endpoint_name(bad)
        assert check_endpoint_name("7-scoring") == "7-scoring"


class TestLocalServerObject:
    def spec(self) -> local_server.LocalServerSpec:
        return local_server.LocalServerSpec(
            name="churn-v3-cpu",
            build_dir="/b",
            build_id=4,
            model="churn",
            version=3,
            backend="cpu",
            endpoint="e",
        )

    def test_render_and_parse_round_trip(self) -> None:
        obj = local_server.render(self.spec())
        assert obj["kind"] == "LocalModelServer" and obj["metadata"]["name"] == "churn-v3-cpu"
        assert obj["metadata"]["labels"]["atoll.dev/build"] == "4"
        assert local_server.parse(obj) == self.spec()

    def test_another_kind_is_refused(self) -> None:
        with pytest.raises(ValueError, match="not 'Service'"):
            local_server.parse({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}})

    def test_the_command_serves_on_loopback_under_the_deployments_name(self) -> None:
        command = local_server.serve_command("/py", self.spec(), 4242)
        assert command[:5] == ["/py", "-m", "atoll", "serve", "/b"]
        assert command[command.index("--host") + 1] == "127.0.0.1"
        assert command[command.index("--port") + 1] == "4242"
        assert command[command.index("--deployment") + 1] == "churn-v3-cpu"
        assert command[command.index("--endpoint") + 1] == "e"


class TestLocalFiles:
    def test_tail_reads_the_last_lines_only(self, tmp_path: Path) -> None:
        log = tmp_path / "server.log"
        log.write_text("".join(f"line {i}\n" for i in range(10_000)))
        assert tail(log, 2) == "line 9998\nline 9999\n"
        assert tail(tmp_path / "missing.log", 5) == ""

    def test_repeated_events_are_counted_and_the_list_is_bounded(self) -> None:
        state = ServerState()
        for _ in range(3):
            state.event("Warning", "Exited", "pid 1 exited with code 2")
        assert len(state.events) == 1 and state.events[0].count == 3
        for i in range(MAX_EVENTS + 5):
            state.event("Normal", "Started", f"pid {i}")
        assert len(state.events) == MAX_EVENTS and state.events[-1].message == f"pid {MAX_EVENTS + 4}"
        assert ServerState.from_json(state.as_json()) == state


def test_the_route_table_is_fresh_for_five_periods_and_forced_refreshes_are_rate_limited() -> None:
    cache = TableCache(refresh_seconds=0.5)
    assert not cache.fresh_enough()
    cache.store({})
    assert cache.fresh_enough() and cache.age() is not None
    assert cache.may_force() and not cache.may_force()
    cache.last_forced = time.monotonic() - 1
    assert cache.may_force()
