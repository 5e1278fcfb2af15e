"""DNS bridge queries per second and latency, side by side with a trivial constant-answer server.

Both servers run as subprocesses on this machine: the bridge (``dapr-etcd-resolver dns``)
answering ``orders.default.dapr.internal`` from a registry of 1,000 endpoints (5 instances of
the app in the caller's cluster, FailOver), and bench/dns_baseline_server.py answering a
constant A record. An asyncio UDP client keeps ``--concurrency`` queries in flight for
``--seconds``; rounds alternate between the two servers. Goal: bridge ≥ 0.8× baseline.

    python bench/dns_qps.py [--concurrency 16] [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import local_registry, percentile, print_table, sample_registry
from resolver.demo.processes import CliProcess, wait_dns_listening
from resolver.local_etcd import free_port

NAME = "orders.default.dapr.internal"


class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future[float]] = {}

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        future = self.waiting.pop(int.from_bytes(data[:2], "big"), None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())


async def load(port: int, concurrency: int, seconds: float) -> list[float]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    wire = bytearray(dns.message.make_query(NAME, "A").to_wire())
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    next_id = 0

    async def worker() -> None:
        nonlocal next_id
        while time.perf_counter() < deadline:
            next_id = (next_id + 1) % 65536
            query_id = next_id
            wire[:2] = query_id.to_bytes(2, "big")
            future: asyncio.Future[float] = loop.create_future()
            client.waiting[query_id] = future
            started = time.perf_counter()
            transport.sendto(bytes(wire))
            try:
                done = await asyncio.wait_for(future, 1.0)
            except TimeoutError:
                continue
            latencies.append(done - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    transport.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dapr-nr-bench-"))
    with local_registry(work) as (etcd, gateway, keys):
        sample_registry(gateway, keys, first_app="orders")
        bridges = {
            name: CliProcess(["dns", "--listen", "127.0.0.1:0", "--log-level", "info", "--set",
                              f"etcdEndpoints={etcd.endpoint}", "--set", "clusterName=cluster-1", *extra],
                             work / f"{name}.log")
            for name, extra in (("bridge", []), ("bridge, no response cache", ["--no-response-cache"]))
        }
        base_port = free_port()
        baseline = subprocess.Popen([sys.executable, str(Path(__file__).with_name("dns_baseline_server.py")),
                                     str(base_port)], stdout=subprocess.PIPE)
        try:
            ports = {"baseline": base_port}
            for name, bridge in bridges.items():
                ports[name] = wait_dns_listening(bridge, 20)
            if baseline.stdout is None or baseline.stdout.readline().strip() != b"ready":
                raise SystemExit("the baseline server did not start")
            results: dict[str, list[float]] = {name: [] for name in ports}
            for _ in range(args.rounds):
                for name, port in ports.items():
                    results[name] += asyncio.run(load(port, args.concurrency, args.seconds))
            rows, rates = [], {}
            for name, latencies in results.items():
                rates[name] = len(latencies) / (args.seconds * args.rounds)
                rows.append((name, args.concurrency, f"{rates[name]:,.0f}", f"{percentile(latencies, 50) * 1e3:.2f} ms",
                             f"{percentile(latencies, 99) * 1e3:.2f} ms",
                             f"{rates[name] / rates['baseline']:.2f}×" if name != "baseline" else ""))
            print_table(("server", "concurrency", "queries/s", "p50", "p99", "bridge/baseline"), rows)
        finally:
            for bridge in bridges.values():
                bridge.stop()
            baseline.terminate()
            baseline.wait(5)


if __name__ == "__main__":
    main()
