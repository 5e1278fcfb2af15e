"""Real-daprd scenarios for reachability (docs/reachability.md): a link between clusters cut while
etcd stays reachable, seen by callers through their own daprd and by the bridge's ``/reachability``.

Shared by tests/invocation/test_invocation_reachability.py (the goals) and bench/invocation.py
(the numbers in the README). The topology has three clusters (tests/support/clusters.py):
callers in cluster-1, callees in cluster-2 and in cluster-3 (callees only), so FailOver has
somewhere to go when the link to cluster-2 breaks.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from resolver.demo.processes import wait_until
from tests.support import consul_mode
from tests.support.clusters import METRICS_PORT, Cluster, Topology
from tests.support.pods import Pod
from tests.support.scenarios import Callers, Line, on, pods, settle_time, start_callers

_FETCH = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"


def page(cluster: Cluster, path: str) -> str:
    """A page (``/reachability``, ``/metrics``) of what answers the cluster's pods — the bridge, or
    in the consul mode the consul role — fetched inside its namespace."""
    port = consul_mode.METRICS_PORT if cluster.topology.resolver == "consul" else METRICS_PORT
    return cluster.registry_run(sys.executable, "-c", _FETCH, f"http://{cluster.bridge_ip}:{port}{path}")


def reachability(cluster: Cluster) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(page(cluster, "/reachability"))
    return found


def metric(cluster: Cluster, name: str) -> float:
    """A metric of the bridge, summed over its series (0 when absent), e.g. ``dapr_nr_reachability_fail_open``."""
    return sum(sample.value for family in text_string_to_metric_families(page(cluster, "/metrics"))
               for sample in family.samples if sample.name == name)


def state_of(cluster: Cluster, other: str) -> str:
    return str(reachability(cluster)["clusters"].get(other, {}).get("state", "not probed"))


@dataclass
class CutRecovery:
    """One link cut, from the callers' side and from the bridge's."""

    failed: list[int] = field(default_factory=list)  # per caller: failed invocations while cut
    calls: list[int] = field(default_factory=list)  # per caller: invocations while cut
    recovered: list[float] = field(default_factory=list)  # s from the cut until every call succeeds
    back: list[float] = field(default_factory=list)  # s from the restore until traffic is back
    verdict: float = 0.0  # s from the cut until the bridge says unreachable
    returned: float = 0.0  # s from the restore until the bridge says reachable
    before_gating: tuple[int, int] = (0, 0)  # (failed, calls) from the cut to the verdict, all callers
    after_gating: tuple[int, int] = (0, 0)  # (failed, calls) from verdict + settle to the restore
    errors: list[str] = field(default_factory=list)


def _window(logs: list[list[Line]], start: float, end: float) -> tuple[int, int]:
    lines = [x for caller in logs for x in caller if start <= x["t"] < end]
    return sum(not x["ok"] for x in lines), len(lines)


def _cut_and_watch(topology: Topology, group: Callers, how: str, settled_on: str, back_on: str,
                   timeout: float) -> CutRecovery:
    """Cut 1↔2, wait for the verdict of what answers cluster-1's pods and for every caller to succeed on ``settled_on``;
    restore, wait for the verdict to lift and every caller to land on ``back_on`` again."""
    one = topology.cluster(1)
    result = CutRecovery()
    cut = time.time()
    topology.cut_link(how)
    try:
        wait_until(lambda: state_of(one, "cluster-2") == "unreachable", timeout, "cluster-1's bridge to find "
                   "cluster-2 unreachable", interval=0.2)
        result.verdict = time.time() - cut
        group.wait_settled(on(settled_on) if settled_on else lambda x: bool(x["ok"]), cut, timeout,
                           f"every caller succeeding on {settled_on or 'any cluster'} with the link cut")
    finally:
        restored = time.time()
        topology.restore_link()
    logs = group.lines()
    accept = on(settled_on) if settled_on else (lambda x: bool(x["ok"]))
    result.recovered = [settle_time(lines, accept, cut) for lines in logs]
    for lines in logs:
        window = [x for x in lines if cut <= x["t"] < restored]
        result.failed.append(sum(not x["ok"] for x in window))
        result.calls.append(len(window))
    result.errors = [x["error"] for lines in logs for x in lines if cut <= x["t"] < restored and not x["ok"]][:4]
    result.before_gating = _window(logs, cut, cut + result.verdict)
    result.after_gating = _window(logs, cut + max(result.recovered), restored)
    wait_until(lambda: state_of(one, "cluster-2") == "reachable", timeout, "cluster-2 reachable again", interval=0.2)
    result.returned = time.time() - restored
    group.wait_settled(on(back_on) if back_on else lambda x: bool(x["ok"]), restored, timeout,
                       f"every caller back on {back_on or 'any cluster'}")
    accept_back = on(back_on) if back_on else (lambda x: bool(x["ok"]))
    result.back = [settle_time(lines, accept_back, restored) for lines in group.lines()]
    return result


def _callees(topology: Topology, app: str, where: dict[int, int]) -> list[Pod]:
    made = [topology.cluster(index).add_pod(app) for index, count in where.items() for _ in range(count)]
    for pod in made:
        pod.cluster.wait_running([pod])
    return made


def failover_cut(topology: Topology, work: Path, how: str, app: str = "failover", callers: int = 2,
                 timeout: float = 120) -> CutRecovery:
    """FailOver (order cluster-2, cluster-3) for an app with no instance in the callers' cluster-1:
    calls go to cluster-2 until the link to it is cut, then to cluster-3, then back."""
    callees = _callees(topology, app, {2: 2, 3: 2})
    with pods(*callees):
        one = topology.cluster(1)
        topology.wait_answer(one, app, [p.address for p in callees if p.cluster.index == 2], through="bridge")
        group = start_callers(one, app, callers, work)
        with pods(*group.pods):
            group.wait_settled(on("cluster-2"), 0, timeout, "every caller on cluster-2")
            return _cut_and_watch(topology, group, how, "cluster-3", "cluster-2", timeout)


def active_active_cut(topology: Topology, work: Path, how: str, app: str = "shared", callers: int = 2,
                      timeout: float = 120) -> CutRecovery:
    """ActiveActive over cluster-1 and cluster-2: with the link cut, calls to cluster-2 fail until
    the bridge leaves it out; then every call stays in cluster-1."""
    callees = _callees(topology, app, {1: 2, 2: 2})
    with pods(*callees):
        one = topology.cluster(1)
        topology.wait_answer(one, app, [p.address for p in callees], through="bridge")
        group = start_callers(one, app, callers, work)
        with pods(*group.pods):
            group.wait_settled(lambda x: bool(x["ok"]), 0, timeout, "every caller succeeding")
            return _cut_and_watch(topology, group, how, "cluster-1", "", timeout)


@dataclass
class FailOpen:
    answer_before: list[str]
    answer_during: list[str]
    fail_open_gauge: float
    fail_open_answers: float
    page: dict[str, Any]


def everything_unreachable(topology: Topology, app: str = "lonely", how: str = "blackhole",
                           timeout: float = 120) -> FailOpen:
    """An app only in cluster-2, every link from cluster-1 cut: the bridge fails open."""
    callees = _callees(topology, app, {2: 2})
    with pods(*callees):
        one = topology.cluster(1)
        expected = [p.address for p in callees]
        topology.wait_answer(one, app, expected, through="bridge")
        topology.cut_link(how, pairs=[(1, index) for index in range(2, len(topology.clusters) + 1)])
        try:
            # Ask on: the bridge probes only clusters of apps someone asks about.
            wait_until(lambda: bool(topology.answer(one, app, through="bridge"))
                       and reachability(one)["failOpen"], timeout, "cluster-1's bridge to fail open", interval=0.5)
            during = topology.answer(one, app, through="bridge")
            return FailOpen(sorted(expected), during, metric(one, "dapr_nr_reachability_fail_open"),
                            metric(one, "dapr_nr_fail_open_answers_total"), reachability(one))
        finally:
            topology.restore_link()
