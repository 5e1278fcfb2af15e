"""The real-daprd scenarios, measured in invocations: shared by tests/invocation/test_invocation.py (which
asserts the goals) and bench/invocation.py (which reports the numbers for the README).

Each scenario adds the pods it needs to a running :class:`~tests.support.clusters.Topology`,
drives callers through their own daprd (the ``invoker`` program, one JSON line per call),
changes the registry or the network, and stops its pods again, also when it fails. Waits are
wait-untils with deadlines; the one fixed pause is a pod's termination grace, which is part of
what is being modelled, not a wait for something to happen.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resolver.demo.processes import wait_until
from tests.support.clusters import Cluster, Topology
from tests.support.pods import Pod

Line = dict[str, Any]
SETTLED = 10  # consecutive invocations that count as "every invocation now succeeds there"


def read_lines(path: Path) -> list[Line]:
    """The invoker's JSON lines (a last line cut by a kill is left out)."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return found


@dataclass
class Callers:
    """Caller pods invoking one app in a loop, each into a file of its own."""

    pods: list[Pod]
    outputs: list[Path]

    def lines(self) -> list[list[Line]]:
        return [read_lines(path) for path in self.outputs]

    def wait_settled(self, accept: Callable[[Line], bool], after: float, timeout: float, what: str) -> None:
        """Until every caller's last :data:`SETTLED` invocations (started after ``after``) pass ``accept``."""
        def settled() -> bool:
            return all(len(tail := [x for x in lines if x["t"] >= after][-SETTLED:]) == SETTLED
                       and all(accept(x) for x in tail) for lines in self.lines())
        wait_until(settled, timeout, what, interval=0.2)

    def stop(self) -> None:
        for pod in self.pods:
            pod.stop_invokers()


@contextmanager
def pods(*made: Pod) -> Iterator[None]:
    """Stop ``made`` (and anything else a scenario tracks) on the way out, failed or not."""
    try:
        yield
    finally:
        for pod in made:
            if pod.name in pod.cluster.pods:
                pod.cluster.stop_pod(pod)


def start_callers(cluster: Cluster, target: str, count: int, work: Path, interval: float = 0.05,
                  mode: str = "http", deadline: float = 5.0) -> Callers:
    made = [cluster.add_pod("caller", serve=False, publish=False) for _ in range(count)]
    cluster.wait_running(made)
    outputs = [work / f"{pod.name}-{target}.jsonl" for pod in made]
    for pod, out in zip(made, outputs, strict=True):
        pod.start_invoker(target, out, mode=mode, interval=interval, deadline=deadline)
    return Callers(made, outputs)


def on(cluster: str) -> Callable[[Line], bool]:
    return lambda line: bool(line["ok"]) and line["cluster"] == cluster


def settle_time(lines: list[Line], accept: Callable[[Line], bool], after: float) -> float:
    """Seconds from ``after`` to the first invocation of the run of accepted ones that ends the log."""
    tail_start = None
    for line in lines:
        if line["t"] < after:
            continue
        accepted = accept(line)
        if not accepted:
            tail_start = None
        elif tail_start is None:
            tail_start = line["t"]
    if tail_start is None:
        raise AssertionError("the log does not end in accepted invocations")
    return max(0.0, tail_start - after)


def failures(lines: list[Line], after: float) -> int:
    return sum(not line["ok"] for line in lines if line["t"] >= after)


@dataclass
class FailoverResult:
    failed: list[int] = field(default_factory=list)  # per caller, from the record's removal on
    to_remote: list[float] = field(default_factory=list)  # s from the pod's stop to all-remote
    failback: list[float] = field(default_factory=list)  # s from the new local pod's record to all-local
    errors: list[str] = field(default_factory=list)  # daprd's messages for the failed invocations


def failover(topology: Topology, work: Path, app: str = "orders", callers: int = 2,
             grace: float = 5.0, mode: str = "http", deadline: float = 5.0,
             publish_when_running: bool = False) -> FailoverResult:
    """FailOver: the app scaled to zero in the callers' cluster (record removed, the pod ending
    ``grace`` seconds later, as a terminating pod does), then back. ``publish_when_running``: the
    new pod's record is written once its daprd runs (as the Kubernetes source publishes Ready
    pods), and failback is measured from that write; otherwise from daprd running, the record
    having been written when the pod was made (the caches of the DNS path are longer than that)."""
    one, two = topology.cluster(1), topology.cluster(2)
    local, remote = one.add_pod(app), two.add_pod(app)
    one.wait_running([local])
    two.wait_running([remote])
    topology.wait_answer(one, app, [local.address])
    group = start_callers(one, app, callers, work, mode=mode, deadline=deadline)
    back: Pod | None = None
    try:
        group.wait_settled(on(one.name), 0, 60, "every caller on the local instance")
        removed = time.time()
        one.unpublish(local)
        topology.wait_answer(one, app, [remote.address], through="bridge")
        time.sleep(grace)  # the terminating pod keeps serving for its grace period
        stopped = time.time()
        one.stop_pod(local)
        group.wait_settled(on(two.name), stopped, 90, "every caller on the other cluster")
        back = one.add_pod(app, publish=not publish_when_running)
        one.wait_running([back])
        returned = time.time()
        if publish_when_running:
            one.publish(back)
        group.wait_settled(on(one.name), returned, 120, "every caller back on its own cluster")
    finally:
        group.stop()
        for pod in [*group.pods, remote, *([back] if back else [])]:
            pod.cluster.stop_pod(pod)
    result = FailoverResult()
    for lines in group.lines():
        result.failed.append(failures(lines, removed))
        result.to_remote.append(settle_time([x for x in lines if x["t"] < returned], on(two.name), stopped))
        result.failback.append(settle_time(lines, on(one.name), returned))
        result.errors += [x["error"] for x in lines if not x["ok"]][:3]
    return result


@dataclass
class ShareResult:
    shares: list[float]  # per caller: the share of its invocations that reached cluster-1
    invocations: int
    instances: dict[str, int]  # invocations per instance, over all callers
    failed: int


def weighted(topology: Topology, work: Path, app: str = "weighted", callers: int = 1,
             duration: float = 10.0, per_cluster: int = 3, interval: float = 0.0) -> ShareResult:
    """ActiveActive (the bridges give ``app`` 300:100): ``per_cluster`` instances in each cluster,
    callers in cluster-1 invoking for ``duration`` seconds."""
    one, two = topology.cluster(1), topology.cluster(2)
    instances = [one.add_pod(app) for _ in range(per_cluster)] + [two.add_pod(app) for _ in range(per_cluster)]
    with pods(*instances):
        one.wait_running(instances[:per_cluster])
        two.wait_running(instances[per_cluster:])
        wait_until(lambda: _every_address_answered(topology, one, app, instances), 60,
                   f"the bridge to know all of {app}'s instances", interval=0.2)
        group = start_callers(one, app, callers, work, interval=interval)
        with pods(*group.pods):
            time.sleep(duration)  # the measurement window: invocations run meanwhile
            group.stop()
            logs = group.lines()
    counted: dict[str, int] = {}
    for lines in logs:
        for line in lines:
            if line["ok"]:
                counted[line["instance"]] = counted.get(line["instance"], 0) + 1
    shares = [sum(x["ok"] and x["cluster"] == one.name for x in lines) / max(1, sum(x["ok"] for x in lines))
              for lines in logs]
    return ShareResult(shares, sum(len(lines) for lines in logs), counted,
                       sum(not x["ok"] for lines in logs for x in lines))


def _every_address_answered(topology: Topology, cluster: Cluster, app: str, everything: list[Pod]) -> bool:
    """The bridge knows exactly these instances: SRV lists them all (and no stale one),
    whatever subset an A answer holds."""
    out = cluster.registry_run("kdig", f"@{cluster.bridge_ip}", "+short", f"{app}.default.dapr.internal.", "SRV")
    listed = {line.split()[-1].split(".")[0] for line in out.splitlines() if line.strip()}
    return listed == {pod.name for pod in everything}


@dataclass
class ScaleOutResult:
    first_call: list[float]  # per caller: s from the new instance's start to its first invocation of it


def scale_out(topology: Topology, work: Path, app: str = "scaled", callers: int = 2) -> ScaleOutResult:
    """One instance in cluster-2 serves callers in cluster-1 (FailOver, none local); a second one
    joins: how long until it gets traffic."""
    one, two = topology.cluster(1), topology.cluster(2)
    first = two.add_pod(app)
    two.wait_running([first])
    topology.wait_answer(one, app, [first.address])
    group = start_callers(one, app, callers, work)
    second: Pod | None = None
    try:
        group.wait_settled(on(two.name), 0, 60, "every caller on the first instance")
        second = two.add_pod(app)
        two.wait_running([second])
        joined = time.time()
        name = second.name
        wait_until(lambda: all(any(x["ok"] and x["instance"] == name and x["t"] >= joined for x in lines)
                               for lines in group.lines()), 90, "the new instance's first invocations", interval=0.2)
        arrivals = [min(x["t"] for x in lines if x["ok"] and x["instance"] == name) - joined
                    for lines in group.lines()]
    finally:
        group.stop()
        for pod in [*group.pods, first, *([second] if second else [])]:
            pod.cluster.stop_pod(pod)
    return ScaleOutResult(arrivals)


@dataclass
class LossResult:
    failed: list[int]  # per caller, from the loss on
    recovered: list[float]  # per caller: s from the loss to every invocation succeeding
    errors: list[str]


def _active_active_pair(topology: Topology, app: str, per_cluster: int) -> tuple[list[Pod], list[Pod]]:
    one, two = topology.cluster(1), topology.cluster(2)
    ones = [one.add_pod(app) for _ in range(per_cluster)]
    twos = [two.add_pod(app) for _ in range(per_cluster)]
    one.wait_running(ones)
    two.wait_running(twos)
    wait_until(lambda: _every_address_answered(topology, one, app, ones + twos), 60,
               f"the bridge to know all of {app}'s instances", interval=0.2)
    return ones, twos


def cluster_lost(topology: Topology, work: Path, app: str = "shared", callers: int = 2,
                 per_cluster: int = 2) -> LossResult:
    """ActiveActive over both clusters; cluster-2's pods and publisher are killed at once (SIGKILL),
    its records stay until their leases expire. Callers in cluster-1."""
    one, two = topology.cluster(1), topology.cluster(2)
    ones, twos = _active_active_pair(topology, app, per_cluster)
    group = start_callers(one, app, callers, work)
    try:
        group.wait_settled(lambda x: bool(x["ok"]), 0, 60, "every caller succeeding")
        lost = time.time()
        two.kill_publisher()
        for pod in twos:
            two.stop_pod(pod, kill=True)
        group.wait_settled(on(one.name), lost, 120, "every caller on the surviving cluster")
    finally:
        group.stop()
        for pod in [*group.pods, *ones, *twos]:
            if pod.name in pod.cluster.pods:
                pod.cluster.stop_pod(pod)
        if two.publisher is None:
            two.start_publisher()
    logs = group.lines()
    return LossResult([failures(lines, lost) for lines in logs],
                      [settle_time(lines, on(one.name), lost) for lines in logs],
                      [x["error"] for lines in logs for x in lines if not x["ok"]][:4])


@dataclass
class CutResult:
    during: list[tuple[int, int, int]]  # per caller, started while the link was cut: (failed, slower than 1 s, all)
    recovered: list[float]  # per caller: s from the link's return to every invocation succeeding
    errors: list[str]


def link_cut(topology: Topology, work: Path, how: str = "blackhole", seconds: float = 15.0,
             app: str = "shared", callers: int = 2, per_cluster: int = 2) -> CutResult:
    """ActiveActive over both clusters; the link between the clusters is cut for ``seconds``
    while both still reach etcd, so every record stays live. Callers in cluster-1."""
    one = topology.cluster(1)
    ones, twos = _active_active_pair(topology, app, per_cluster)
    group = start_callers(one, app, callers, work)
    try:
        group.wait_settled(lambda x: bool(x["ok"]), 0, 60, "every caller succeeding")
        cut = time.time()
        topology.cut_link(how)
        try:
            time.sleep(seconds)  # the outage being measured
        finally:
            restored = time.time()
            topology.restore_link()
        group.wait_settled(lambda x: bool(x["ok"]), restored, 120, "every caller succeeding again")
    finally:
        group.stop()
        for pod in [*group.pods, *ones, *twos]:
            pod.cluster.stop_pod(pod)
    logs = group.lines()
    windows = [[x for x in lines if cut <= x["t"] < restored] for lines in logs]
    return CutResult([(sum(not x["ok"] for x in window), sum(x["ok"] and x["ms"] > 1000 for x in window), len(window))
                      for window in windows],
                     [settle_time(lines, lambda x: bool(x["ok"]), restored) for lines in logs],
                     [x["error"] for lines in logs for x in lines if not x["ok"]][:4])
