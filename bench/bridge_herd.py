"""DNS bridges started together against a 100k-record registry: does their cold start herd?

The DNS bridge keeps a full mirror (it answers for every app), so each one lists the whole
registry when it starts — in pages of 50,000 records, each page one request. When many start at
once (a fleet-wide rollout, every node's bridge after an etcd outage with compaction, a new
history) the lists arrive together. ``--list-jitter`` spreads them over a window. This starts N
real ``dns`` processes at the same instant, once with ``--list-jitter 0`` and once with the
given jitter (each round on a fresh etcd holding the same records), and reports per round:
spawn → ready (``/readyz``), etcd's CPU and peak RSS during the herd, and the bridges' RSS.

    python -m bench.bridge_herd [--bridges 10] [--records 100000] [--jitter 1 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.common import percentile, print_table, rss_mb
from bench.fleet import cpu_seconds, populate
from resolver.config import Layer, load_settings
from resolver.demo.processes import CliProcess
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd, free_ports
from resolver.records.schema import Keys


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def herd(work: Path, bridges: int, records: int, jitter: float) -> tuple[object, ...]:
    """One round on a fresh etcd: N bridges spawned at once with ``--list-jitter jitter``."""
    etcd = LocalEtcd(work / f"etcd-{jitter:g}")
    etcd.start()
    processes: list[CliProcess] = []
    try:
        settings = load_settings([Layer("bench", {"etcdEndpoints": etcd.endpoint})])
        gateway = EtcdGateway(settings.etcd)
        populate(gateway, Keys(settings.prefix), records)
        gateway.close()
        cpu_before = cpu_seconds(etcd.pid)
        before = rss_mb(etcd.pid)
        peak = [before]
        done = threading.Event()

        def sample_etcd() -> None:
            while not done.wait(0.05):
                peak[0] = max(peak[0], rss_mb(etcd.pid))

        sampler = threading.Thread(target=sample_etcd, daemon=True)
        sampler.start()
        ports = free_ports(bridges)
        started = time.monotonic()
        for index, port in enumerate(ports):
            processes.append(CliProcess(["dns", "--listen", "127.0.0.1:0", "--metrics-port", str(port),
                                         "--list-jitter", str(jitter), "--log-level", "warning", "--set",
                                         f"etcdEndpoints={etcd.endpoint}", "--set", "initialSyncWait=60s"],
                                        work / f"dns-{jitter:g}-{index}.log"))
        ready_after = [0.0] * bridges
        deadline = started + 300
        while not all(ready_after) and time.monotonic() < deadline:
            for index, port in enumerate(ports):
                if not ready_after[index]:
                    processes[index].check_running()
                    if ready(port):
                        ready_after[index] = time.monotonic() - started
            time.sleep(0.02)
        done.set()
        sampler.join()
        if not all(ready_after):
            raise SystemExit(f"{ready_after.count(0.0)} bridges not ready after 300 s")
        bridge_rss = [rss_mb(process.pid) for process in processes]
        return (f"{jitter:g} s", f"{percentile(ready_after, 50):.2f} / {max(ready_after):.2f} s",
                f"{cpu_seconds(etcd.pid) - cpu_before:.1f} s", f"{before:.0f} → {peak[0]:.0f} MB",
                f"{percentile(bridge_rss, 50):.0f} MB")
    finally:
        for process in processes:
            process.stop()
        etcd.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bridges", type=int, default=10)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--jitter", type=float, nargs="+", default=[1.0],
                        help="the jittered rounds' --list-jitter values (a round with 0 always runs first)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dapr-nr-bench-herd-"))
    try:
        rows = [herd(work, args.bridges, args.records, jitter) for jitter in (0.0, *args.jitter)]
        print(f"{args.bridges} DNS bridges started at once, {args.records:,} records, "
              f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print_table(("--list-jitter", "spawn → ready p50 / max", "etcd CPU during the herd", "etcd RSS before → peak",
                     "bridge RSS p50"), rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
