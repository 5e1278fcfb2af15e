"""Zones before clusters with the real daprd: the share of calls that stay in the caller's zone (root, Linux).

    bash scripts/build-peers.sh && sudo .venv/bin/python -m bench.zones [--seconds 30 --callers 4]

The consul-mode topology of tests/invocation/test_invocation_zones.py: three zones across two
clusters (zone-a in cluster-1, zone-b in both, zone-c in cluster-2; two instances of the app per
cluster and zone), ActiveActive, callers in cluster-1's zone-a asking through Dapr's consul
resolver. Reported: the share of calls landing in zone-a with the role's ``zoneAware`` off, on,
and once zone-a's instances are gone (overflow), with the calls and failures of each window.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import print_table
from tests.invocation.test_invocation_zones import SETTINGS
from tests.support import zone_scenarios
from tests.support.clusters import Topology


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--callers", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dapr-nr-zones-"))
    with Topology(work, SETTINGS, resolver="consul").start() as topology:
        result = zone_scenarios.zone_shares(topology, work, SETTINGS, callers=args.callers, seconds=args.seconds)
    print_table(("zoneAware", "calls in the caller's zone", "calls", "failed"), [
        ("off", f"{100 * result.without_tier:.1f} %", result.calls[0], result.failed[0]),
        ("on", f"{100 * result.with_tier:.1f} %", result.calls[1], result.failed[1]),
        ("on, zone-a emptied", f"{100 * result.emptied:.1f} % (" + ", ".join(
            f"{cluster} {100 * share:.0f} %" for cluster, share in sorted(result.emptied_clusters.items())) + ")",
         result.calls[2], result.failed[2])])


if __name__ == "__main__":
    main()
