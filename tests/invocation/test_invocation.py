"""Stock daprd invoking across two clusters through the registry: the real daprd, not a model of it.

Two clusters of network namespaces (tests/support/clusters.py): per cluster a real CoreDNS with
the shipped ``deploy/coredns`` stanza, the DNS bridge and a publisher; per pod the real daprd
(built from dapr/dapr at a pinned release by scripts/build-peers.sh) in standalone mode with
the Configuration of ``deploy/examples/dns-bridge``, next to an echo app that names its cluster
and instance. Callers invoke through their own daprd's HTTP and gRPC APIs, so every answer
goes daprd → Go's resolver → CoreDNS (forward + cache) → bridge, and every call daprd →
daprd over the pod network.

The goals asserted here are the ones of docs/dns.md ("What daprd does with the answer"); the
numbers they come from are measured by ``python -m bench.invocation`` (README).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from resolver.demo.processes import wait_until
from tests.support import scenarios, slots
from tests.support.clusters import Topology
from tests.support.peers import versions
from tests.support.pods import Pod

pytestmark = [pytest.mark.xdist_group("real-daprd"), pytest.mark.timeout(300 + slots.WAIT)]

WEIGHTED = {"default/weighted": {"policy": "ActiveActive", "clusterWeights": "cluster-1=300,cluster-2=100"},
            "default/shared": {"policy": "ActiveActive"}}
BRIDGE_SETTINGS = {"policies": json.dumps(WEIGHTED), "clusterCIDRs": "cluster-1=10.201.0.0/16,cluster-2=10.202.0.0/16"}
# daprd keeps an answer 20 s, CoreDNS 5 s (the stanza's cache), the bridge's TTL is 5 s: a change
# reaches every caller within ~25-30 s. The bounds below add room for a loaded machine; the
# measured values are in the README.
CACHE_BOUND = 45.0
# A caller app's deadline longer than daprd's 20 s cache of an answer (see the failover test).
CALLER_DEADLINE = 25.0


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """Stock daprd: the kubernetes resolver's template, CoreDNS and the DNS bridge."""
    with Topology(tmp_path_factory.mktemp("two-clusters"), BRIDGE_SETTINGS).start() as made:
        yield made


@pytest.fixture(scope="module", params=[
    pytest.param(("dns", "daprd"), id="dns"),
    # A second xdist group: two topologies at most run side by side (three at once overloaded two
    # cores), keeping the tier to a few minutes.
    pytest.param(("component", "daprd-etcd"), id="component", marks=pytest.mark.xdist_group("real-daprd-2")),
    pytest.param(("dns", "daprd-1.16"), id="dns-daprd-1.16", marks=pytest.mark.xdist_group("real-daprd-2"))])
def any_topology(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """Both ways daprd reaches the registry: stock daprd through the DNS bridge (the newest
    release and the oldest supported minor), and daprd-etcd (daprd with our "etcd" name
    resolver compiled in, tests/peers/dapr/etcdresolver) asking the pluggable component in its
    pod — daprd's real invocation path on the component's answers."""
    resolver, daprd = request.param
    if (resolver, daprd) == ("dns", "daprd"):
        # The same topology as the module's own: a worker holds one at a time per group, so two
        # groups never need more than the machine's two slots (tests/support/slots.py).
        yield request.getfixturevalue("topology")
        return
    with Topology(tmp_path_factory.mktemp(f"two-clusters-{daprd}"), BRIDGE_SETTINGS, resolver=resolver,
                    daprd=daprd).start() as made:
        yield made


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path


@pytest.mark.parametrize("mode", ["http", "grpc"])
def test_local_cross_cluster_and_fallback_invocations(any_topology: Topology, mode: str) -> None:
    one, two = any_topology.cluster(1), any_topology.cluster(2)
    hello = one.add_pod("hello")  # in the registry, cluster-1 only
    remote = two.add_pod("remote")  # in the registry, cluster-2 only
    legacy = one.add_pod("legacy", publish=False)  # not in the registry: only its cluster.local name
    caller_one = one.add_pod("caller", serve=False, publish=False)
    caller_two = two.add_pod("caller", serve=False, publish=False)
    with scenarios.pods(hello, remote, legacy, caller_one, caller_two):
        one.wait_running([hello, legacy, caller_one])
        two.wait_running([remote, caller_two])
        for cluster in (one, two):  # both bridges have both records before anyone asks
            any_topology.wait_answer(cluster, "hello", [hello.address])
            any_topology.wait_answer(cluster, "remote", [remote.address])

        def landed(caller: Pod, target: str) -> set[tuple[str, str]]:
            """Where 5 invocations in a row land, once they all succeed: a just-started pod's
            first call can be slow on a loaded machine (its component's first registry sync,
            the first connection); where calls land is what is checked."""
            def five() -> list[dict[str, object]]:
                lines = caller.invoke(target, count=5, mode=mode)
                return lines if all(line["ok"] for line in lines) else []
            lines = wait_until(five, 120, f"5 successful invocations of {target} from {caller.name}", interval=0.5)
            return {(str(line["cluster"]), str(line["instance"])) for line in lines}

        assert landed(caller_one, "hello") == {("cluster-1", hello.name)}  # local
        assert landed(caller_one, "remote.default") == {("cluster-2", remote.name)}  # cross-cluster
        assert landed(caller_two, "hello.default") == {("cluster-1", hello.name)}  # cross-cluster
        # Not in the registry: the bridge answers with the fallback name's addresses, which only
        # cluster-1's CoreDNS knows (legacy-dapr.default.svc.cluster.local).
        assert landed(caller_one, "legacy") == {("cluster-1", legacy.name)}
        failed = caller_two.invoke("legacy", count=1, mode=mode)
        assert not failed[0]["ok"] and "legacy" in failed[0]["error"], failed
        # and it was the release this topology is meant to run
        release = versions()["DAPR_OLDEST_VERSION" if any_topology.daprd == "daprd-1.16" else "DAPR_VERSION"]
        assert f"Starting Dapr Runtime -- version {release} " in caller_one.daprd_log()


def test_failover_costs_at_most_one_failed_invocation_per_caller_and_fails_back(any_topology: Topology,
                                                                                 work: Path) -> None:
    """The app scaled to zero in the callers' cluster: its record leaves the registry, the pod
    ends 5 s later (its termination grace), and each caller's daprd, whose cached answer still
    names it, fails once, drops the answer and resolves the other cluster. Then a new local
    instance: every caller is back within daprd's and CoreDNS's cache periods.

    The callers' own deadline is longer than daprd's 20 s cache: a call to the vanished address
    hangs (nothing refuses it), and daprd drops its cached answer only on ``Unavailable`` — a
    call in flight when the pod ended gets that, a new one does not. A caller that gives up
    sooner (5 s) therefore fails once per deadline until the cache entry expires when no call
    was in flight at the end (1–5 failures, measured and documented in docs/dns.md)."""
    result = scenarios.failover(any_topology, work, callers=2, grace=5.0, deadline=CALLER_DEADLINE)
    print("failover:", result)
    assert all(count <= 1 for count in result.failed), result
    # the one failed call lasts up to the caller's deadline; then the next one succeeds remotely
    assert all(seconds <= CALLER_DEADLINE + 15 for seconds in result.to_remote), result
    # Failback measured 19 s in most benchmark runs; under load, 39 s and once 59 s (two and
    # three cache periods: see the CHANGELOG). The bound guards against a caller that never
    # comes back, not the 30 s goal the benchmark reports.
    assert all(seconds <= 90 for seconds in result.failback), result


def test_a_termination_grace_longer_than_the_caches_costs_no_invocation(topology: Topology, work: Path) -> None:
    """The pod keeps serving 30 s after its record leaves — longer than daprd's 20 s cache plus
    CoreDNS's 5 s and the bridge's 5 s TTL — so every caller has re-resolved before it ends: no
    failed invocation at all, with the callers' short deadline (docs/dns.md)."""
    result = scenarios.failover(topology, work, callers=2, grace=30.0, deadline=5.0)
    print("failover after a 30 s grace:", result)
    assert result.failed == [0, 0], result


def test_active_active_300_to_100_reaches_each_cluster_by_weight(any_topology: Topology, work: Path) -> None:
    """3 + 3 instances at 300:100: each answer holds 3 + 1 addresses and daprd picks one at random
    per invocation, so one caller's share of cluster-1 is 0.75 (within 0.05)."""
    result = scenarios.weighted(any_topology, work, callers=1, duration=8.0, interval=0.005)
    print("weighted:", result)
    assert result.failed == 0 and result.invocations >= 300, result
    assert abs(result.shares[0] - 0.75) <= 0.05, result
    assert sum(1 for name in result.instances if name.startswith("weighted-1-")) == 3, result


def test_a_new_instance_gets_traffic_within_one_cache_period(any_topology: Topology, work: Path) -> None:
    result = scenarios.scale_out(any_topology, work, callers=2)
    print("scale-out:", result)
    assert all(seconds <= CACHE_BOUND for seconds in result.first_call), result


def test_a_lost_cluster_leaves_the_answers_within_its_lease_and_the_caches(topology: Topology, work: Path) -> None:
    """cluster-2's pods and publisher killed: its records expire with their leases (15 s), and
    callers that were sending it half their traffic fail over to cluster-1."""
    result = scenarios.cluster_lost(topology, work)
    print("cluster lost:", result)
    # The lease (15 s), then up to one daprd cache period more: calls that end by the caller's
    # deadline do not make daprd drop its cached list (only Unavailable does), then the caches.
    assert all(seconds <= 15 + 20 + CACHE_BOUND for seconds in result.recovered), result


@pytest.mark.parametrize("how", ["blackhole", "prohibit"])
def test_callers_recover_when_a_cut_link_between_the_clusters_returns(topology: Topology, work: Path,
                                                                      how: str) -> None:
    """The link cut while etcd stays reachable: every record stays live, so invocations that pick
    the other cluster fail (prohibit) or hang (blackhole) until the bridge's probes leave it out
    of the answers (test_invocation_reachability.py measures how soon). This cut is shorter than
    that, so the hole is still seen. Once the link is back every caller succeeds again."""
    result = scenarios.link_cut(topology, work, how=how, seconds=8.0)
    print(f"link cut ({how}):", result)
    assert sum(failed + slow for failed, slow, _ in result.during) > 0, result  # the hole is real, and measured
    assert all(seconds <= CACHE_BOUND for seconds in result.recovered), result
