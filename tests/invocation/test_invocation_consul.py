"""Stock daprd's own consul name resolver invoking across two clusters through the consul role (#23).

The two-cluster topology of test_invocation.py (tests/support/clusters.py) in its consul mode
(tests/support/consul_mode.py): per cluster, ``dapr-etcd-resolver consul`` listens on the
bridge's address, port 8500, with that cluster's ``clusterName`` and the bridge's settings and
policies; every pod runs ``daprd-consul`` — daprd v1.18.2 with components-contrib's consul
resolver registered as Dapr's allcomponents release images register it — with the Configuration
of ``deploy/examples/consul`` (``useCache: true``: the resolver's watcher keeps the answers and
refreshes them with blocking queries). Every call goes daprd → consul resolver → the role's
HTTP catalog, then daprd → daprd over the pod network.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from resolver.demo.processes import wait_until
from tests.invocation.test_invocation import BRIDGE_SETTINGS
from tests.support import consul_mode, scenarios, slots
from tests.support.clusters import Topology
from tests.support.peers import versions
from tests.support.pods import Pod

DAPRD_DNS_CACHE_SECONDS = 20.0
"""How long daprd keeps a resolved address list (dapr/dapr pkg/messaging/direct_messaging.go)."""

pytestmark = [pytest.mark.xdist_group("real-daprd"), pytest.mark.timeout(300 + slots.WAIT)]


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    with Topology(tmp_path_factory.mktemp("two-clusters-consul"), BRIDGE_SETTINGS, resolver="consul").start() as made:
        yield made


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path


def landed(caller: Pod, target: str, mode: str) -> set[tuple[str, str]]:
    """Where 5 invocations in a row land, once they all succeed."""
    def five() -> list[dict[str, object]]:
        lines = caller.invoke(target, count=5, mode=mode)
        return lines if all(line["ok"] for line in lines) else []
    lines = wait_until(five, 120, f"5 successful invocations of {target} from {caller.name}", interval=0.5)
    return {(str(line["cluster"]), str(line["instance"])) for line in lines}


@pytest.mark.parametrize("mode", ["http", "grpc"])
def test_local_and_cross_cluster_invocations_through_the_consul_role(topology: Topology, mode: str) -> None:
    one, two = topology.cluster(1), topology.cluster(2)
    hello = one.add_pod("hello")  # in the registry, cluster-1 only
    remote = two.add_pod("remote")  # in the registry, cluster-2 only
    caller_one = one.add_pod("caller", serve=False, publish=False)
    caller_two = two.add_pod("caller", serve=False, publish=False)
    with scenarios.pods(hello, remote, caller_one, caller_two):
        one.wait_running([hello, caller_one])
        two.wait_running([remote, caller_two])
        for cluster in (one, two):
            topology.wait_answer(cluster, "hello", [hello.address])
            topology.wait_answer(cluster, "remote", [remote.address])
        assert landed(caller_one, "hello", mode) == {("cluster-1", hello.name)}  # local
        assert landed(caller_one, "remote.default", mode) == {("cluster-2", remote.name)}  # cross-cluster
        assert landed(caller_two, "hello", mode) == {("cluster-1", hello.name)}  # cross-cluster
        # An app the registry does not hold: the role answers [], as Consul does for an app with
        # no healthy instance, and daprd says so (no fallback name in this mode).
        failed = caller_one.invoke("nowhere", count=1, mode=mode, deadline=10.0)
        assert not failed[0]["ok"] and "no healthy services found with AppID 'nowhere'" in str(failed[0]["error"]), \
            failed
        log = caller_one.daprd_log()
        assert "Initialized name resolution to consul" in log, log[-3000:]
        assert f"Starting Dapr Runtime -- version {versions()['DAPR_VERSION']} " in log
        assert topology.daprd == consul_mode.DAPRD


@pytest.mark.parametrize("grace", [0.0, 1.0], ids=["no-grace", "grace-1s"])
def test_failover_and_failback_through_the_consul_role(topology: Topology, work: Path, grace: float) -> None:
    """FailOver, two callers with a 5 s deadline: the local record leaves and the pod ends
    ``grace`` seconds later. The role answers the resolver's blocking query as soon as etcd
    changes and the watcher swaps its answer: measured 0.32-0.37 s after the inventory's write,
    of which 0.25 s is the file source settling before it writes etcd. With no grace the harness
    ends the pod when the DNS bridge already answers the remote instance (~0.28 s), just before
    the watcher's swap, so each caller's call in flight hangs to its deadline: 1 failed invocation
    per caller (measured 1, 1 in every run), the issue's bound; with 1 s of grace, none.
    Failback: the new local pod's record is written once its daprd runs (as the Kubernetes source
    publishes Ready pods); callers are back 0.35-0.40 s after that write (the issue's goal is 1 s;
    `python -m bench.invocation --resolver consul` measures it). The test's bound is a ratio that
    a busy machine cannot cross but a polling path would: a quarter of daprd's own 20 s cache
    period, which is what the DNS path waits out."""
    result = scenarios.failover(topology, work, callers=2, grace=grace, deadline=5.0, publish_when_running=True)
    print(f"consul failover, grace {grace:g} s:", result)
    assert all(failed <= (1 if grace == 0 else 0) for failed in result.failed), result
    assert all(seconds < DAPRD_DNS_CACHE_SECONDS / 4 for seconds in result.failback), result


def test_active_active_300_to_100_holds_per_invocation(topology: Topology, work: Path) -> None:
    """3 + 3 instances at 300:100: the role repeats each cluster-1 instance 3 times and each
    cluster-2 instance once, and the resolver picks one entry at random per invocation, so one
    caller's share of cluster-1 is 0.75 (within 0.02). Measured: 22,031 invocations in 20 s,
    share 0.751. From 5,000 invocations on, 0.02 is more than 3 standard deviations of a fair
    pick, so the bound fails only if the weights are wrong."""
    result = scenarios.weighted(topology, work, callers=1, duration=20.0, interval=0.0)
    print("consul weighted:", result)
    assert result.failed == 0 and result.invocations >= 5000, result
    assert abs(result.shares[0] - 0.75) <= 0.02, result
    assert sum(1 for name in result.instances if name.startswith("weighted-1-")) == 3, result
