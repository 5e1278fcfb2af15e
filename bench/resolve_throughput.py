"""ResolveID throughput and latency over the Unix socket, resolver vs. a constant-answer baseline.

Both servers run as subprocesses on the same stack (``start_server``: grpc.server with a
thread pool, reflection, health); the baseline's servicer returns a constant, ours resolves
from a registry of 1,000 endpoints (100 apps × 2 clusters × 5 instances) under FailOver.
The load comes from blocking gRPC callers on threads of this process at concurrency 1, 8 and 64; rounds
alternate between the two servers so machine noise hits both alike.

    python bench/resolve_throughput.py [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import local_registry, percentile, print_table, sample_registry
from resolver._proto import nameresolution_pb2, nameresolution_pb2_grpc
from resolver.component.client import ComponentClient
from resolver.demo.processes import CliProcess, wait_until

APPS = 100


def load(socket_path: Path, concurrency: int, seconds: float) -> tuple[int, list[float]]:
    """``concurrency`` threads, each a blocking caller in a loop, for ``seconds``."""
    latencies: list[float] = []
    with grpc.insecure_channel(f"unix:{socket_path}") as channel:
        stub = nameresolution_pb2_grpc.NameResolutionStub(channel)  # type: ignore[no-untyped-call]
        metadata = (("x-component-instance", "etcd"),)
        requests = [nameresolution_pb2.ResolveRequest(id=f"app{i}", port=50002) for i in range(APPS)]
        stub.ResolveID(requests[0], metadata=metadata)  # connect before the clock starts
        deadline = time.perf_counter() + seconds

        def worker(offset: int) -> None:
            mine: list[float] = []
            i = offset
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                stub.ResolveID(requests[i % APPS], metadata=metadata)
                mine.append(time.perf_counter() - started)
                i += 1
            latencies.extend(mine)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return len(latencies), latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dapr-nr-bench-"))
    with local_registry(work) as (etcd, gateway, keys):
        sample_registry(gateway, keys, APPS)
        ours = CliProcess(["serve", "--socket-dir", str(work), "--name", "etcd", "--log-level", "warning",
                           "--set", f"etcdEndpoints={etcd.endpoint}", "--set", "clusterName=cluster-1"],
                          work / "serve.log")
        base_socket = work / "baseline.sock"
        baseline = subprocess.Popen([sys.executable, str(Path(__file__).with_name("baseline_server.py")),
                                     str(base_socket)])
        ours_socket = work / "etcd.sock"
        try:
            wait_until(lambda: ours_socket.exists() and base_socket.exists(), 20, "both servers")
            with ComponentClient(ours_socket) as client:
                wait_until(lambda: client.resolve("app1").startswith("10.1."), 10, "registry sync")
            rows = []
            for concurrency in (1, 8, 64):
                results: dict[str, list[tuple[int, list[float]]]] = {"baseline": [], "resolver": []}
                for _ in range(args.rounds):
                    for name, path in (("baseline", base_socket), ("resolver", ours_socket)):
                        results[name].append(load(path, concurrency, args.seconds))
                rates = {}
                for name, runs in results.items():
                    calls = sum(n for n, _ in runs)
                    lat = [x for _, values in runs for x in values]
                    rates[name] = calls / (args.seconds * args.rounds)
                    rows.append((concurrency, name, f"{rates[name]:,.0f}", f"{percentile(lat, 50) * 1e6:.0f} µs",
                                 f"{percentile(lat, 99) * 1e6:.0f} µs",
                                 f"{rates[name] / rates['baseline']:.2f}×" if name == "resolver" else ""))
            print_table(("concurrency", "server", "calls/s", "p50", "p99", "resolver/baseline"), rows)
        finally:
            ours.stop()
            baseline.terminate()
            baseline.wait(10)


if __name__ == "__main__":
    main()
