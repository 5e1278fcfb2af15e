"""Stock daprd across two clusters through the DNS bridge, measured in invocations (root, Linux).

    bash scripts/build-peers.sh && sudo .venv/bin/python -m bench.invocation [--resolver dns|component|consul]
        [--callers 20 --seconds 60]

The topology and scenarios are the test suite's (tests/support/clusters.py, scenarios.py): real
daprd, real CoreDNS with the shipped stanza, the bridge and a file-source publisher per cluster,
in network namespaces. Reported, per scenario: failed invocations per caller and the seconds
until every invocation succeeds where it should — FailOver with a pod that ends at once, with
a 5 s termination grace (caller deadlines of 5 s and 25 s) and with a 30 s grace, failback,
scale-out, a whole cluster lost, the link between the clusters cut (dropped and refused), and
the ActiveActive 300:100 share for one caller and for many. The README's "Real daprd" table comes from this.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from bench.common import print_table
from tests.invocation.test_invocation import BRIDGE_SETTINGS
from tests.support import scenarios
from tests.support.clusters import Topology
from tests.support.peers import versions


def _spread(values: list[float]) -> str:
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--callers", type=int, default=20, help="callers for the many-caller share (default 20)")
    parser.add_argument("--seconds", type=float, default=60.0, help="share measurement window (default 60)")
    parser.add_argument("--resolver", choices=("dns", "component", "consul"), default="dns",
                        help="dns: stock daprd through the DNS bridge; component: daprd-etcd and the component; "
                        "consul: Dapr's consul resolver and the consul role")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-invocation-"))
    topology = Topology(work, BRIDGE_SETTINGS, resolver=args.resolver).start()
    print(f"two clusters, {args.resolver} resolver, work directory {work}", flush=True)
    rows: list[list[object]] = []
    try:
        # (termination grace, the caller's own deadline): a deadline under daprd's 20 s cache ends
        # calls to a vanished address before the cached answer does (docs/dns.md).
        for grace, deadline in ((0.0, 5.0), (5.0, 5.0), (5.0, 25.0), (30.0, 5.0)):
            # consul: the new pod is published once its daprd runs (the path is faster than its start)
            result = scenarios.failover(topology, work, callers=4, grace=grace, deadline=deadline,
                                        publish_when_running=args.resolver == "consul")
            rows.append([f"FailOver, pod ends {grace:.0f} s after its record, caller deadline {deadline:.0f} s",
                         f"{result.failed}", _spread(result.to_remote)])
            rows.append(["  failback (after that run)", "-", _spread(result.failback)])
        scaled = scenarios.scale_out(topology, work, callers=4)
        rows.append(["scale-out: new instance's first call", "-", _spread(scaled.first_call)])
        if args.resolver == "dns":
            lost = scenarios.cluster_lost(topology, work, callers=4)
            rows.append(["cluster-2 lost (pods + publisher SIGKILL)", f"{lost.failed}", _spread(lost.recovered)])
        for how in ("blackhole", "prohibit") if args.resolver == "dns" else ():
            cut = scenarios.link_cut(topology, work, how=how, seconds=15.0, callers=4)
            rows.append([f"link cut 15 s ({how}): failed/slow/all", f"{cut.during}", _spread(cut.recovered)])
        print_table(["scenario (4 callers unless said)", "failed invocations per caller",
                     "s to settle: min / median / max"], rows)
        for callers in (1, args.callers):
            share = scenarios.weighted(topology, work, callers=callers, duration=args.seconds,
                                       interval=0.0 if callers == 1 else 0.05)
            print(f"\nActiveActive 300:100, 3 + 3 instances, {callers} caller(s), {args.seconds:.0f} s: "
                  f"{share.invocations} invocations, {share.failed} failed")
            print(f"  cluster-1 share per caller: min {min(share.shares):.3f}, "
                  f"median {statistics.median(share.shares):.3f}, max {max(share.shares):.3f}; "
                  f"overall {sum(n for k, n in share.instances.items() if k.startswith('weighted-1-')) / max(1, sum(share.instances.values())):.3f}")  # noqa: E501
            print("  invocations per instance:", json.dumps(dict(sorted(share.instances.items()))))
        print("\npeers:", versions())
    finally:
        topology.close()


if __name__ == "__main__":
    main()
