"""The zones scenario with the real daprd (docs/configuration.md "Zones"): three zones across two
clusters, callers in one zone, answers from the consul role — the role that knows who asks (the
request's source address is the caller's pod IP, and its record carries its zone).

Shared by tests/invocation/test_invocation_zones.py (the goals) and bench/invocation.py (the numbers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import consul_mode
from tests.support.clusters import ETCD_IP, Topology
from tests.support.pods import Pod
from tests.support.scenarios import Callers, Line, pods

APP = "zoned"
# zone-a only in cluster-1, zone-b in both, zone-c only in cluster-2: two instances per (cluster, zone).
LAYOUT = ((1, "zone-a"), (1, "zone-a"), (1, "zone-b"), (1, "zone-b"),
          (2, "zone-b"), (2, "zone-b"), (2, "zone-c"), (2, "zone-c"))
CALLER_ZONE = "zone-a"


@dataclass
class ZoneShares:
    without_tier: float  # share of calls landing in the caller's zone, zoneAware off
    with_tier: float  # ... zoneAware on
    emptied: float  # ... after the caller's zone lost its instances (overflow)
    emptied_clusters: dict[str, float]  # where calls went once the zone emptied
    calls: tuple[int, int, int]
    failed: tuple[int, int, int]


def _window(group: Callers, zones: dict[str, str], seconds: float) -> tuple[float, dict[str, float], int, int]:
    start = time.time()
    time.sleep(seconds)  # the measurement window: invocations run meanwhile
    lines: list[Line] = [x for caller in group.lines() for x in caller if start <= x["t"] < start + seconds]
    ok = [x for x in lines if x["ok"]]
    clusters: dict[str, float] = {}
    for line in ok:
        clusters[line["cluster"]] = clusters.get(line["cluster"], 0) + 1 / max(1, len(ok))
    in_zone = sum(zones.get(x["instance"]) == CALLER_ZONE for x in ok) / max(1, len(ok))
    return in_zone, clusters, len(lines), len(lines) - len(ok)


def zone_shares(topology: Topology, work: Path, settings: dict[str, str], callers: int = 2,
                seconds: float = 15.0) -> ZoneShares:
    """ActiveActive over both clusters; callers in cluster-1's zone-a. Measured with the role's
    ``zoneAware`` off, then on (the role restarted, as an operator would), then with zone-a emptied."""
    one = topology.cluster(1)
    callees = [topology.cluster(index).add_pod(APP, zone=zone) for index, zone in LAYOUT]
    zones = {pod.name: pod.zone for pod in callees}
    with pods(*callees):
        for pod in callees:
            pod.cluster.wait_running([pod])
        topology.wait_answer(one, APP, [p.address for p in callees], through="bridge")
        made: list[Pod] = [one.add_pod("zcaller", serve=False, zone=CALLER_ZONE) for _ in range(callers)]
        with pods(*made):
            one.wait_running(made)
            outputs = [work / f"{pod.name}.jsonl" for pod in made]
            for pod, out in zip(made, outputs, strict=True):
                pod.start_invoker(APP, out, interval=0.05)
            group = Callers(made, outputs)
            group.wait_settled(lambda x: bool(x["ok"]), 0, 120, "every caller succeeding")
            without, _, calls_a, failed_a = _window(group, zones, seconds)
            consul_mode.restart_role(one, f"{ETCD_IP}:2379", {**settings, "zoneAware": "true"})
            group.wait_settled(lambda x: bool(x["ok"]) and zones.get(x["instance"]) == CALLER_ZONE, time.time(),
                               120, "every call in the caller's zone")
            within, _, calls_b, failed_b = _window(group, zones, seconds)
            for pod in [p for p in callees if p.zone == CALLER_ZONE]:
                pod.cluster.unpublish(pod)  # the zone empties: records first, as Kubernetes does
            group.wait_settled(lambda x: bool(x["ok"]) and zones.get(x["instance"]) != CALLER_ZONE, time.time(),
                               120, "every call out of the emptied zone")
            emptied, clusters, calls_c, failed_c = _window(group, zones, seconds)
            consul_mode.restart_role(one, f"{ETCD_IP}:2379", settings)
    return ZoneShares(without, within, emptied, clusters, (calls_a, calls_b, calls_c), (failed_a, failed_b, failed_c))
