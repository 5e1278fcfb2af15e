"""A link between clusters cut while etcd stays reachable, with and without reachability probing (root, Linux).

    bash scripts/build-peers.sh && sudo .venv/bin/python -m bench.reachability_cuts [--seconds 30]

The three-cluster topology of tests/invocation/test_invocation_reachability.py (real daprd,
CoreDNS with the shipped stanza, a bridge per calling cluster; callers in cluster-1). Reported:

1. With probing (the defaults): FailOver (order cluster-2, cluster-3) and ActiveActive, the link
   1↔2 dropped (``blackhole``) and refused (``prohibit``) — seconds until the bridge's verdict,
   until every call succeeds again, failed calls per caller, and the calls that failed after
   the verdict had reached the callers.
2. ActiveActive under a cut of ``--seconds``, probing on and off (``reachability=off``): the share
   of invocations that failed during the cut — "the failure rate before and after gating".
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import print_table
from tests.invocation.test_invocation_reachability import BRIDGE_SETTINGS
from tests.support import reachability_scenarios, scenarios
from tests.support.clusters import Topology


def _rate(cut: scenarios.CutResult) -> str:
    failed = sum(f for f, _, _ in cut.during)
    calls = sum(n for _, _, n in cut.during)
    return f"{failed}/{calls} = {100 * failed / max(1, calls):.0f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="cut length for the failure rates (default 30)")
    parser.add_argument("--callers", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dapr-nr-reach-"))
    rows, rates = [], []
    for mode in ("on", "off"):
        (work / mode).mkdir()
    with Topology(work / "on", BRIDGE_SETTINGS, clusters=3).start() as with_probes:
        for name, run in (("FailOver", reachability_scenarios.failover_cut),
                          ("ActiveActive", reachability_scenarios.active_active_cut)):
            for how in ("blackhole", "prohibit"):
                result = run(with_probes, work, how, callers=args.callers)
                rows.append((name, how, f"{result.verdict:.1f}", f"{max(result.recovered):.1f}",
                             ", ".join(map(str, result.failed)), result.after_gating[0],
                             f"{result.returned:.1f}", f"{max(result.back):.1f}"))
        for how in ("blackhole", "prohibit"):
            cut = scenarios.link_cut(with_probes, work, how=how, seconds=args.seconds, callers=args.callers)
            rates.append(("on", how, _rate(cut)))
    with Topology(work / "off", {**BRIDGE_SETTINGS, "reachability": "off"}, clusters=3).start() as without:
        for how in ("blackhole", "prohibit"):
            cut = scenarios.link_cut(without, work, how=how, seconds=args.seconds, callers=args.callers)
            rates.append(("off", how, _rate(cut)))
    print_table(("policy", "cut", "verdict s", "all succeed s", "failed per caller", "failed after verdict",
                 "reachable again s", "traffic back s"), rows)
    print(f"\nActiveActive over cluster-1 and cluster-2, link cut {args.seconds:g} s, {args.callers} callers:")
    print_table(("reachability", "cut", "failed during the cut"), rates)


if __name__ == "__main__":
    main()
