"""ResolveID throughput, latency and server CPU per call over the Unix socket.

Three servers run as subprocesses: ``baseline`` (the current stack, ``start_server``, with a
servicer that returns a constant), ``resolver`` (``serve``: the current stack resolving from a
registry of 1,000 endpoints — 100 apps × 2 clusters × 5 instances — under FailOver) and
``legacy`` (bench/legacy_server.py: the same servicer on the server path before the
hostile-client work: one 16-thread pool, no interceptor). The ratio to the baseline hides a
slower *stack*, so the server's own CPU time per call (utime+stime from /proc, over the round)
is reported too: ``legacy`` vs ``resolver`` is the before/after of the server model.
The load comes from blocking gRPC callers on threads of this process at concurrency 1, 8 and 64;
rounds alternate between the servers so machine noise hits all alike.

    python bench/resolve_throughput.py [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import local_registry, percentile, print_table, run_in_workdir, sample_registry
from resolver._proto import nameresolution_pb2, nameresolution_pb2_grpc
from resolver.component.client import ComponentClient
from resolver.demo.processes import CliProcess, wait_until

APPS = 100
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


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


def _run(work: Path) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with local_registry(work) as (etcd, gateway, keys):
        sample_registry(gateway, keys, APPS)
        ours = CliProcess(["serve", "--socket-dir", str(work), "--name", "etcd", "--log-level", "warning",
                           "--set", f"etcdEndpoints={etcd.endpoint}", "--set", "clusterName=cluster-1"],
                          work / "serve.log")
        base_socket = work / "baseline.sock"
        baseline = subprocess.Popen([sys.executable, str(Path(__file__).with_name("baseline_server.py")),
                                     str(base_socket)])
        legacy_socket = work / "legacy.sock"
        legacy = subprocess.Popen([sys.executable, str(Path(__file__).with_name("legacy_server.py")),
                                   str(legacy_socket), f"etcdEndpoints={etcd.endpoint}", "clusterName=cluster-1"])
        ours_socket = work / "etcd.sock"
        pids = {"baseline": baseline.pid, "legacy": legacy.pid, "resolver": ours.pid}
        sockets = {"baseline": base_socket, "legacy": legacy_socket, "resolver": ours_socket}
        try:
            wait_until(lambda: all(path.exists() for path in sockets.values()), 20, "all servers")
            for path in (ours_socket, legacy_socket):
                with ComponentClient(path) as client:
                    wait_until(partial(_registry_answers, client), 10, "registry sync")
            rows = []
            for concurrency in (1, 8, 64):
                results: dict[str, list[tuple[int, list[float]]]] = {name: [] for name in sockets}
                cpu: dict[str, float] = dict.fromkeys(sockets, 0.0)
                for _ in range(args.rounds):
                    for name, path in sockets.items():
                        before = cpu_seconds(pids[name])
                        results[name].append(load(path, concurrency, args.seconds))
                        cpu[name] += cpu_seconds(pids[name]) - before
                rates = {}
                for name, runs in results.items():
                    calls = sum(n for n, _ in runs)
                    lat = [x for _, values in runs for x in values]
                    rates[name] = calls / (args.seconds * args.rounds)
                    rows.append((concurrency, name, f"{rates[name]:,.0f}", f"{percentile(lat, 50) * 1e6:.0f} µs",
                                 f"{percentile(lat, 99) * 1e6:.0f} µs", f"{cpu[name] / calls * 1e6:.0f} µs",
                                 f"{rates[name] / rates['baseline']:.2f}×" if name != "baseline" else ""))
            print_table(("concurrency", "server", "calls/s", "p50", "p99", "server CPU/call", "vs baseline"), rows)
        finally:
            ours.stop()
            for process in (baseline, legacy):
                process.terminate()
                process.wait(10)


def main() -> None:
    run_in_workdir(_run)


def _registry_answers(client: ComponentClient) -> bool:
    return client.resolve("app1").startswith("10.1.")


if __name__ == "__main__":
    main()
