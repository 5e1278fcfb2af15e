"""Probe rounds against real sockets on loopback: who is probed, how often, and what the gate then answers."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator, Mapping
from types import MappingProxyType

import pytest
from prometheus_client import REGISTRY

from resolver.config import Layer, Settings, load_settings
from resolver.reachability import Reachability
from resolver.reachability.probes import connect_all
from resolver.reachability.rounds import ProbeBudget, Prober
from resolver.reachability.verdicts import State, Thresholds, Verdicts
from resolver.records.schema import Keys
from resolver.registry.cache import RegistryCache
from resolver.resolution.resolver import Resolver

CIDRS = "cluster-1=127.0.1.0/24,cluster-2=127.0.2.0/24,cluster-3=127.0.3.0/24"


class Registry:
    """What the cache's ``lookup`` returns, settable by the test."""

    def __init__(self) -> None:
        self.apps: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {}

    def lookup(self, namespace: str, app_id: str) -> Mapping[str, tuple[str, ...]]:
        return MappingProxyType(self.apps.get((namespace, app_id), {}))


class ReadyReader:
    """The reader as the resolver sees it, always ready (the cache is the test's)."""

    def __init__(self, cache: object) -> None:
        self.cache = cache

    def ready_for(self, *_: object) -> bool:
        return True


def fail_open_answers() -> float:
    return REGISTRY.get_sample_value("dapr_nr_fail_open_answers_total") or 0.0


@pytest.fixture
def listeners() -> Iterator[dict[str, socket.socket]]:
    """Listening sockets by "host:port" (their port is free until they close)."""
    made: dict[str, socket.socket] = {}
    yield made
    for sock in made.values():
        sock.close()


def listen(made: dict[str, socket.socket], host: str) -> str:
    sock = socket.socket()
    sock.bind((host, 0))
    sock.listen(64)
    address = f"{host}:{sock.getsockname()[1]}"
    made[address] = sock
    return address


def closed_port(host: str) -> str:
    """An address on ``host`` nobody listens on (connects are refused)."""
    sock = socket.socket()
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"{host}:{port}"


def settings_with(**extra: object) -> Settings:
    return load_settings([Layer("test", {"clusterName": "cluster-1", "clusterCIDRs": CIDRS, "allowLoopback": True,
                                         "probeSample": 3, **extra})])


def test_connect_all_tells_connected_from_refused() -> None:
    made: dict[str, socket.socket] = {}
    try:
        up = listen(made, "127.0.2.1")
        down = closed_port("127.0.2.2")
        results = connect_all([(a.split(":")[0], int(a.split(":")[1])) for a in (up, down)], 2.0)
    finally:
        for sock in made.values():
            sock.close()
    assert results[0] is None
    assert results[1] == "Connection refused"


def test_a_refusing_cluster_leaves_the_answers_and_comes_back(listeners: dict[str, socket.socket]) -> None:
    registry = Registry()
    local = listen(listeners, "127.0.1.1")
    remote = [closed_port(f"127.0.2.{i}") for i in (1, 2)]
    registry.apps[("default", "app")] = {"cluster-1": (local,), "cluster-2": tuple(remote)}
    settings = settings_with(unreachableAfter=2, reachableAfter=2)
    gate = Reachability(settings, registry, budget=ProbeBudget(1000))
    gate.asked("default", "app")
    snapshot = registry.lookup("default", "app")
    gate.prober.run_round()
    assert gate.apply(snapshot) is snapshot  # one bad round is not enough
    gate.prober.run_round()
    assert dict(gate.apply(snapshot)) == {"cluster-1": (local,)}
    report = gate.report()["clusters"]["cluster-2"]
    assert report["state"] == "unreachable" and report["lastError"] == "Connection refused"
    for address in remote:  # the pods start listening again
        host, port = address.split(":")
        sock = socket.socket()
        sock.bind((host, int(port)))
        sock.listen(8)
        listeners[address] = sock
    gate.prober.run_round()
    assert gate.verdicts.clusters["cluster-2"].state is State.UNREACHABLE
    gate.prober.run_round()
    assert gate.apply(snapshot) is snapshot


def test_everything_unreachable_fails_open(listeners: dict[str, socket.socket]) -> None:
    registry = Registry()
    registry.apps[("default", "only-remote")] = {"cluster-2": (closed_port("127.0.2.5"),)}
    gate = Reachability(settings_with(unreachableAfter=1), registry, budget=ProbeBudget(1000))
    gate.asked("default", "only-remote")
    gate.prober.run_round()
    snapshot = registry.lookup("default", "only-remote")
    assert gate.verdicts.view.unreachable == {"cluster-2"}
    assert not gate.apply(snapshot)  # gating alone would leave nothing...
    before = fail_open_answers()
    resolver = Resolver(settings_with(unreachableAfter=1), ReadyReader(registry), reachability=gate)  # type: ignore[arg-type]
    assert resolver.resolve_multi("only-remote", "", 50002)[0] == list(snapshot["cluster-2"])  # ...so it fails open
    assert fail_open_answers() == before + 1
    assert gate.report()["failOpen"] is True


def test_one_refusing_endpoint_is_ejected_while_its_cluster_is_fine(listeners: dict[str, socket.socket]) -> None:
    registry = Registry()
    healthy = [listen(listeners, f"127.0.2.{i}") for i in range(1, 10)]
    bad = closed_port("127.0.2.20")
    registry.apps[("default", "app")] = {"cluster-2": (*healthy, bad)}
    settings = settings_with(ejectAfter=2, maxEjectedPercent=10, probeSample=2)
    gate = Reachability(settings, registry, budget=ProbeBudget(1000))
    gate.prober.rng = random.Random(7)
    gate.asked("default", "app")
    for _ in range(40):  # the bad one is drawn at random once, then probed first as a suspect
        gate.prober.run_round()
        if gate.verdicts.ejected_now("cluster-2"):
            break
    assert gate.verdicts.ejected_now("cluster-2") == {bad}
    gated = gate.apply(registry.lookup("default", "app"))
    assert set(gated["cluster-2"]) == set(healthy)
    assert gate.verdicts.clusters["cluster-2"].state is State.REACHABLE


def test_only_addresses_inside_the_clusters_cidrs_are_probed(listeners: dict[str, socket.socket]) -> None:
    registry = Registry()
    registry.apps[("default", "app")] = {
        "cluster-2": (closed_port("127.0.9.1"),),      # outside cluster-2's CIDR: never probed
        "cluster-4": (closed_port("127.0.4.1"),)}      # no clusterCIDRs entry at all
    gate = Reachability(settings_with(unreachableAfter=1), registry, budget=ProbeBudget(1000))
    gate.asked("default", "app")
    report = gate.prober.run_round()
    assert report.probed == {} and report.unprobed == {"cluster-2", "cluster-4"}
    assert gate.verdicts.view.empty
    assert gate.report()["clusters"]["cluster-4"]["state"] == "unprobed"


def test_clusters_nobody_asked_about_are_not_probed_and_are_forgotten(listeners: dict[str, socket.socket]) -> None:
    registry = Registry()
    registry.apps[("default", "a")] = {"cluster-2": (closed_port("127.0.2.1"),)}
    registry.apps[("default", "b")] = {"cluster-3": (closed_port("127.0.3.1"),)}
    now = [0.0]
    settings = settings_with(unreachableAfter=1, probeDemandWindow="10s")
    verdicts = Verdicts("cluster-1", Thresholds(unreachable_after=1))
    prober = Prober(settings, registry, verdicts, ProbeBudget(1000), clock=lambda: now[0])
    prober.asked("default", "a")
    assert set(prober.run_round().probed) == {"cluster-2"}
    assert verdicts.view.unreachable == {"cluster-2"}
    now[0] = 11.0  # nobody asked about a for longer than the window
    prober.asked("default", "b")
    assert set(prober.run_round().probed) == {"cluster-3"}
    assert verdicts.view.unreachable == {"cluster-3"}


def test_the_budget_is_shared_fairly_between_clusters() -> None:
    registry = Registry()
    registry.apps[("default", "app")] = {f"cluster-{i}": tuple(closed_port(f"127.0.{i}.{n}") for n in (1, 2, 3))
                                         for i in (2, 3)}
    clock = [0.0]
    budget = ProbeBudget(4, clock=lambda: clock[0])  # 4 probes a second, bucket of one interval (1 s)
    settings = settings_with(probeInterval="1s", clusterCIDRs="cluster-2=127.0.2.0/24,cluster-3=127.0.3.0/24")
    prober = Prober(settings, registry, Verdicts("cluster-1", Thresholds()), budget)
    prober.asked("default", "app")
    report = prober.run_round()
    assert report.wanted == 6 and report.probed == {"cluster-2": 2, "cluster-3": 2}
    assert prober.run_round().probed == {}  # the bucket is empty until time passes
    clock[0] = 0.5
    assert sum(prober.run_round().probed.values()) == 2


def test_names_the_registry_does_not_hold_are_not_remembered_as_demand() -> None:
    """A flood of made-up app names (a hostile DNS client) must not grow what the prober keeps."""
    settings = settings_with()
    cache = RegistryCache(Keys(settings.prefix), settings.address_policy)
    gate = Reachability(settings, cache, budget=ProbeBudget(10))
    resolver = Resolver(settings, ReadyReader(cache), reachability=gate)  # type: ignore[arg-type]
    for index in range(1000):
        resolver.candidates(resolver.target(f"ghost{index}"))
    assert gate.prober._asked == set()


def test_a_few_dead_endpoints_never_take_a_healthy_cluster_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dead endpoints become suspects and are re-probed, but in at most half the sample: every
    round keeps a fresh random draw, so they cannot fill the sample and fail every round."""
    healthy = [f"127.0.2.{i}:50002" for i in range(1, 17)]
    dead = {f"127.0.2.{i}:50002" for i in range(17, 21)}
    registry = Registry()
    registry.apps[("default", "app")] = {"cluster-2": (*healthy, *dead)}
    monkeypatch.setattr("resolver.reachability.rounds.connect_all", lambda targets, timeout, stop=None: [
        "Connection refused" if f"{host}:{port}" in dead else None for host, port in targets])
    verdicts = Verdicts("cluster-1", Thresholds(), monotonic=lambda: 0.0)  # ejections never end
    prober = Prober(settings_with(), registry, verdicts, ProbeBudget(100_000), rng=random.Random(3))
    prober.asked("default", "app")
    for _ in range(300):
        prober.run_round()
        assert verdicts.clusters["cluster-2"].state is State.REACHABLE
    assert len(verdicts.ejected_now("cluster-2")) == 2  # the cap: 10 % of 20
    assert set(verdicts.suspects("cluster-2")) <= dead


def test_locality_keeps_its_only_local_endpoint_even_when_ejected(listeners: dict[str, socket.socket]) -> None:
    """Fail open after the policy too: gating that leaves Locality nothing serves the ungated answer."""
    registry = Registry()
    local = closed_port("127.0.1.9")
    registry.apps[("default", "app")] = {"cluster-1": (local,), "cluster-2": (listen(listeners, "127.0.2.9"),)}
    settings = settings_with(policy="Locality", ejectAfter=1, maxEjectedPercent=100)
    gate = Reachability(settings, registry, budget=ProbeBudget(1000))
    gate.verdicts.record_round("cluster-1", {local: "Connection refused", "127.0.1.10:1": None}, known=2)
    assert gate.verdicts.ejected_now("cluster-1") == {local}
    resolver = Resolver(settings, ReadyReader(registry), reachability=gate)  # type: ignore[arg-type]
    before = fail_open_answers()
    assert resolver.resolve("app", "", 50002)[0] == local
    assert fail_open_answers() == before + 1


def test_a_stopped_prober_takes_its_series_out_of_the_metrics() -> None:
    registry = Registry()
    registry.apps[("default", "app")] = {"cluster-7": (closed_port("127.0.7.1"),)}
    gate = Reachability(settings_with(unreachableAfter=1, clusterCIDRs="cluster-7=127.0.7.0/24"), registry,
                        budget=ProbeBudget(1000))
    gate.asked("default", "app")
    gate.prober.run_round()
    assert REGISTRY.get_sample_value("dapr_nr_cluster_reachable", {"cluster": "cluster-7"}) == 0.0
    assert REGISTRY.get_sample_value("dapr_nr_reachability_fail_open") == 1.0
    gate.stop()
    assert REGISTRY.get_sample_value("dapr_nr_cluster_reachable", {"cluster": "cluster-7"}) is None
    assert REGISTRY.get_sample_value("dapr_nr_reachability_fail_open") == 0.0
