"""A seeded soak: minutes of random pod churn with etcd restarts, freezes and publisher kills.

Runs the fault-test world (tests/faults/world.py: a real etcd, two clusters' fake API servers,
``publish`` and ``serve`` subprocesses, a resolve load through every resolver) and, every
``--event-every`` seconds, one random fault; after each fault the world must converge. Reports
resolves served, failed resolves, convergence times and the RSS growth of every process.
Not part of CI (it takes minutes); same seed, same sequence of faults.

    python bench/soak.py [--minutes 3] [--seed 1] [--event-every 10]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import rss_mb
from tests.faults.world import CLUSTERS, World


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--event-every", type=float, default=10.0)
    args = parser.parse_args()
    world = World(Path(tempfile.mkdtemp(prefix="dapr-nr-soak-")), seed=args.seed)
    try:
        world.populate(30)
        for cluster in CLUSTERS:
            world.start_publisher(cluster)
        for _ in range(2):
            world.start_resolver()
        world.wait_converged(60)
        world.start_load()
        processes = {f"serve {n}": p for n, p in enumerate(world.resolvers)}
        rss_start = {name: rss_mb(p.pid) for name, p in processes.items()}
        deadline = time.monotonic() + args.minutes * 60
        converge_times: list[float] = []
        events: list[str] = []
        while time.monotonic() < deadline:
            world.churn(int(args.event_every * 10), pause=0.05)
            event = world.rng.choice(["etcd restart", "etcd freeze", "publisher kill", "watch drops", "none"])
            events.append(event)
            if event == "etcd restart":
                world.etcds[0].kill()
                world.churn(10)
                world.etcds[0].start()
            elif event == "etcd freeze":
                world.etcds[0].freeze()
                time.sleep(world.lease_ttl + 1)
                world.etcds[0].thaw()
            elif event == "publisher kill":
                cluster = world.rng.choice(CLUSTERS)
                world.publishers[cluster][-1].signal(signal.SIGKILL)
                world.start_publisher(cluster)
            elif event == "watch drops":
                for api in world.apis.values():
                    api.expire_watches()
            converge_times.append(world.wait_converged(90))
            print(f"{event:15s} converged in {converge_times[-1]:.2f}s; resolves {world.resolves}, "
                  f"failures {len(world.failures)}", flush=True)
        rss_end = {name: rss_mb(p.pid) for name, p in processes.items()}
        print(f"\nseed {args.seed}, {args.minutes:g} min, {len(events)} faults "
              f"({', '.join(f'{e} {events.count(e)}' for e in sorted(set(events)))})")
        print(f"resolves served {world.resolves:,}, failed {len(world.failures)}")
        print(f"convergence after a fault: median {statistics.median(converge_times):.2f}s, "
              f"max {max(converge_times):.2f}s")
        for name in processes:
            print(f"{name} RSS {rss_start[name]:.0f} MB → {rss_end[name]:.0f} MB")
    finally:
        world.close()


if __name__ == "__main__":
    main()
