"""Cold start with 100,000 records in etcd: time to synced, and memory, of a real ``serve`` process.

Writes 100k endpoint records (2,000 apps × 10 namespaces × 3 clusters, ~180-byte JSON each),
then starts ``dapr-etcd-resolver serve`` several times and reports, per run: the reader's own
list+parse time (from its log line), the time from process spawn until the ``registry`` health
check turns SERVING (includes interpreter start-up and imports), and the process's RSS.

    python bench/cold_start.py [--records 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import local_registry, print_table, rss_mb
from resolver.component.client import ComponentClient
from resolver.demo.processes import CliProcess, wait_until
from resolver.etcd.gateway import EtcdGateway
from resolver.records.schema import EndpointRecord, Keys


def fill(gateway: EtcdGateway, keys: Keys, count: int) -> None:
    batch = []
    for i in range(count):
        record = EndpointRecord(f"app{i % 2000}", f"ns{i % 10}", f"cluster-{i % 3}", f"app{i % 2000}-{i}-7d9f8b",
                                f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}", 50002, node=f"node-{i % 300}",
                                zone="zone-a")
        batch.append((record.key(keys), record.to_json(), None))
        if len(batch) == 10_000:
            gateway.apply(batch, [])
            batch = []
    gateway.apply(batch, [])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dapr-nr-bench-"))
    with local_registry(work) as (etcd, gateway, keys):
        fill(gateway, keys, args.records)
        rows = []
        for run in range(args.runs):
            log = work / f"serve-{run}.log"
            started = time.perf_counter()
            server = CliProcess(["serve", "--socket-dir", str(work), "--name", f"cold{run}",
                                 "--set", f"etcdEndpoints={etcd.endpoint}"], log)
            socket_path = work / f"cold{run}.sock"
            try:
                def synced(path: Path = socket_path) -> bool:
                    if not path.exists():
                        return False
                    with ComponentClient(path, timeout=2) as client:
                        return client.health("registry") == "SERVING"

                wait_until(synced, 60, "registry synced", interval=0.05)
                to_synced = time.perf_counter() - started
                listed = re.search(r"listed at revision \d+ in (\d+) ms: (\d+) endpoints", server.output())
                if listed is None or int(listed.group(2)) != args.records:
                    raise SystemExit(f"unexpected serve output:\n{server.output()}")
                rows.append((run + 1, f"{int(listed.group(1)) / 1000:.2f} s", f"{to_synced:.2f} s",
                             f"{rss_mb(server.pid):.0f} MB"))
            finally:
                server.stop()
        print_table(("run", "list+parse (reader)", "spawn → registry SERVING", "RSS after sync"), rows)
        print(f"median spawn → SERVING: {statistics.median(float(r[2][:-2]) for r in rows):.2f} s "
              f"for {args.records:,} records")


if __name__ == "__main__":
    main()
