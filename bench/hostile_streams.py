"""Ping latency while other clients hold idle streams: the legacy server path vs ``serve``.

Each server gets ``--streams`` reflection streams that never send, then 300 Pings (1 s
deadline each) from another channel; reports p50/p99 and how many Pings failed.

    python bench/hostile_streams.py [--streams 200]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import local_registry, percentile, print_table, run_in_workdir
from resolver._proto import common_pb2, nameresolution_pb2_grpc
from resolver.demo.processes import CliProcess, wait_until


def measure(socket_path: Path, streams: int) -> tuple[str, str, int]:
    release = threading.Event()

    def never() -> Iterator[reflection_pb2.ServerReflectionRequest]:
        release.wait(60)
        yield from ()  # a generator that never yields a request

    hostile = grpc.insecure_channel(f"unix:{socket_path}")
    calls = [reflection_pb2_grpc.ServerReflectionStub(hostile).ServerReflectionInfo(never(), timeout=60)
             for _ in range(streams)]
    time.sleep(1.0)  # let the server take the streams in
    latencies, failures = [], 0
    with grpc.insecure_channel(f"unix:{socket_path}") as channel:
        stub = nameresolution_pb2_grpc.NameResolutionStub(channel)  # type: ignore[no-untyped-call]
        for _ in range(300):
            started = time.perf_counter()
            try:
                stub.Ping(common_pb2.PingRequest(), timeout=1.0)
                latencies.append(time.perf_counter() - started)
            except grpc.RpcError:
                failures += 1
    release.set()
    for call in calls:
        call.cancel()
    hostile.close()
    return (f"{percentile(latencies, 50) * 1000:.2f} ms" if latencies else "-",
            f"{percentile(latencies, 99) * 1000:.2f} ms" if latencies else "-", failures)


def _run(work: Path) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=200)
    args = parser.parse_args()
    with local_registry(work) as (etcd, _gateway, _keys):
        legacy_socket = work / "legacy.sock"
        legacy = subprocess.Popen([sys.executable, str(Path(__file__).with_name("legacy_server.py")),
                                   str(legacy_socket), f"etcdEndpoints={etcd.endpoint}"])
        ours = CliProcess(["serve", "--socket-dir", str(work), "--name", "etcd", "--log-level", "error",
                           "--set", f"etcdEndpoints={etcd.endpoint}"], work / "serve.log")
        try:
            wait_until(lambda: legacy_socket.exists() and (work / "etcd.sock").exists(), 20, "servers")
            rows = [(name, args.streams, *measure(path, args.streams))
                    for name, path in (("legacy", legacy_socket), ("serve", work / "etcd.sock"))]
            print_table(("server", "idle streams", "Ping p50", "Ping p99", "Pings failed (of 300)"), rows)
        finally:
            ours.stop()
            legacy.terminate()
            legacy.wait(10)


def main() -> None:
    run_in_workdir(_run)


if __name__ == "__main__":
    main()
