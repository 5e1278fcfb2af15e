"""Reachability with the real daprd: a link between clusters cut while etcd stays reachable.

Three clusters (tests/support/clusters.py): callers in cluster-1, callees in cluster-2 and in
cluster-3 (callees only). The router drops (``blackhole``) or refuses (``prohibit``) traffic
between cluster-1 and cluster-2; every record stays live, so only cluster-1's bridge probing
cluster-2 can take it out of the answers. Stock daprd, CoreDNS and the bridge with the default
probe settings (docs/reachability.md); the numbers are measured by ``python -m bench.invocation``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from resolver.config import Settings
from resolver.reachability.rounds import JITTER
from tests.support import reachability_scenarios as scenarios
from tests.support import slots
from tests.support.clusters import Topology

pytestmark = [pytest.mark.xdist_group("real-daprd"), pytest.mark.timeout(600 + slots.WAIT)]

POLICIES = {"default/failover": {"policy": "FailOver", "failoverOrder": "cluster-2,cluster-3"},
            "default/shared": {"policy": "ActiveActive"}}
BRIDGE_SETTINGS = {"policies": json.dumps(POLICIES),
                   "clusterCIDRs": "cluster-1=10.201.0.0/16,cluster-2=10.202.0.0/16,cluster-3=10.203.0.0/16"}
# Bounds derived from the configuration, not absolute seconds: a verdict takes unreachableAfter
# bad rounds after the cut, plus at most one round in progress, each up to probeInterval × 1.2
# (jitter) and the last one probeTimeout long. Callers then follow through CoreDNS's cache (5 s,
# the shipped stanza) and daprd's cache of an answer (20 s). LOAD allows for two topologies
# sharing two cores; the measured values are in the README (python -m bench.reachability_cuts).
DEFAULTS = Settings()
LOAD = 1.5
VERDICT_BOUND = LOAD * ((DEFAULTS.unreachable_after + 1) * DEFAULTS.probe_interval * (1 + JITTER)
                        + DEFAULTS.probe_timeout)
COREDNS_CACHE, DAPRD_CACHE = 5.0, 20.0
RECOVERY_BOUND = VERDICT_BOUND + LOAD * (COREDNS_CACHE + DAPRD_CACHE)


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    with Topology(tmp_path_factory.mktemp("three-clusters"), BRIDGE_SETTINGS, clusters=3).start() as made:
        yield made


def assert_failover_goals(result: scenarios.CutRecovery) -> None:
    assert result.verdict <= VERDICT_BOUND, result
    assert all(seconds <= RECOVERY_BOUND for seconds in result.recovered), result
    assert result.after_gating[0] == 0, result  # once gated, nothing fails
    assert all(seconds <= RECOVERY_BOUND for seconds in result.back), result  # FailOver prefers cluster-2 again


@pytest.fixture(scope="module")
def consul_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """The same clusters in the consul mode: Dapr's consul resolver asks each cluster's consul
    role, which probes as the bridge does (tests/support/consul_mode.py)."""
    with Topology(tmp_path_factory.mktemp("three-clusters-consul"), BRIDGE_SETTINGS, clusters=3,
                    resolver="consul").start() as made:
        yield made


@pytest.mark.parametrize("how", ["blackhole", "prohibit"])
def test_failover_leaves_a_cut_off_cluster_and_returns_to_it(topology: Topology, tmp_path: Path, how: str) -> None:
    result = scenarios.failover_cut(topology, tmp_path, how)
    print(f"failover, link cut ({how}):", result)
    assert_failover_goals(result)


@pytest.mark.xdist_group("real-daprd-2")
@pytest.mark.parametrize("how", ["blackhole", "prohibit"])
def test_the_consul_role_fails_over_from_a_cut_off_cluster(consul_topology: Topology, tmp_path: Path,
                                                            how: str) -> None:
    result = scenarios.failover_cut(consul_topology, tmp_path, how)
    print(f"consul mode, failover, link cut ({how}):", result)
    assert_failover_goals(result)


@pytest.mark.parametrize("how", ["blackhole", "prohibit"])
def test_active_active_stops_failing_once_the_cut_cluster_is_gated(topology: Topology, tmp_path: Path,
                                                                    how: str) -> None:
    result = scenarios.active_active_cut(topology, tmp_path, how)
    print(f"active-active, link cut ({how}):", result)
    assert result.before_gating[0] > 0, result  # the hole is real before the verdict...
    assert result.after_gating[0] == 0 and result.after_gating[1] > 0, result  # ...and gone after it
    assert all(seconds <= RECOVERY_BOUND for seconds in result.recovered), result


def test_everything_unreachable_fails_open_and_says_so(topology: Topology) -> None:
    result = scenarios.everything_unreachable(topology)
    print("fail open:", result)
    assert result.answer_during == result.answer_before  # answers unchanged
    assert result.fail_open_gauge == 1.0 and result.fail_open_answers > 0
    assert result.page["clusters"]["cluster-2"]["state"] == "unreachable"
