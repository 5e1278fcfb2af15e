"""etcd put → resolvable through the component: how long until a registry write is served.

A ``serve`` subprocess watches a local etcd; this process puts a record with a fresh address
and immediately polls ResolveID over the Unix socket (as daprd would call it) until the new
address comes back. The time from just before the put to the first answer with the new
address is one sample. Polling granularity is one ResolveID round trip (~0.3–0.7 ms here).

    python bench/put_to_resolve.py [--samples 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import local_registry, summary_ms
from resolver.component.client import ComponentClient
from resolver.demo.processes import CliProcess, wait_until
from resolver.records.schema import EndpointRecord


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dapr-nr-bench-"))
    with local_registry(work) as (etcd, gateway, keys):
        server = CliProcess(["serve", "--socket-dir", str(work), "--log-level", "warning",
                             "--set", f"etcdEndpoints={etcd.endpoint}", "--set", "clusterName=cluster-1"],
                            work / "serve.log")
        try:
            wait_until((work / "etcd.sock").exists, 20, "serve")
            samples: list[float] = []
            with ComponentClient(work / "etcd.sock") as client:
                client.resolve("warmup")
                for i in range(args.samples):
                    record = EndpointRecord("orders", "default", "cluster-1", "orders-0", f"10.0.{i // 250}.{i % 250}",
                                            50002)
                    expected = record.host_port
                    started = time.perf_counter()
                    gateway.put(record.key(keys), record.to_json())
                    while client.resolve("orders") != expected:
                        pass
                    samples.append(time.perf_counter() - started)
            print(f"etcd put → resolvable through the socket: {summary_ms(samples)}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
