"""What one more registry, instance or open stream costs ``serve`` (for the limits' defaults).

Starts ``serve`` against a local etcd holding 1,000 endpoints, then measures the server's RSS
and thread count after: start-up; 8 instances sharing one registry; 8 instances on 8 distinct
registries (prefixes with the same 1,000 endpoints); 200 idle reflection streams.

    python bench/component_limits.py
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import local_registry, print_table, rss_mb, run_in_workdir, sample_registry
from resolver.component.client import ComponentClient
from resolver.demo.processes import CliProcess, wait_until
from resolver.records.schema import Keys


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


def _run(work: Path) -> None:
    with local_registry(work) as (etcd, gateway, _keys):
        for n in range(8):
            sample_registry(gateway, Keys(f"/bench/{n}"), 100)
        server = CliProcess(["serve", "--socket-dir", str(work), "--name", "etcd", "--log-level", "warning"],
                            work / "serve.log")
        socket_path = work / "etcd.sock"
        rows = []
        release = threading.Event()
        try:
            wait_until(socket_path.exists, 20, "serve")

            def sample(what: str) -> None:
                rows.append((what, f"{rss_mb(server.pid):.1f} MB", threads(server.pid)))

            sample("started, no instance")
            for n in range(8):
                with ComponentClient(socket_path, f"shared-{n}") as client:
                    client.init({"etcdEndpoints": etcd.endpoint, "prefix": "/bench/0"})
                    wait_until(partial(_synced, client), 20, "sync")
            sample("8 instances, 1 registry (1,000 endpoints)")
            for n in range(1, 8):
                with ComponentClient(socket_path, f"own-{n}") as client:
                    client.init({"etcdEndpoints": etcd.endpoint, "prefix": f"/bench/{n}"})
                    wait_until(partial(_synced, client), 20, "sync")
            sample("15 instances, 8 registries (1,000 endpoints each)")
            channel = grpc.insecure_channel(f"unix:{socket_path}")
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)

            def never() -> Iterator[reflection_pb2.ServerReflectionRequest]:
                release.wait(120)
                yield from ()

            calls = [stub.ServerReflectionInfo(never(), timeout=120) for _ in range(200)]
            wait_until(lambda: threads(server.pid) > rows[-1][2] + 150, 20, "streams open")
            sample("+ 200 idle reflection streams")
            release.set()
            for call in calls:
                call.cancel()
            channel.close()
        finally:
            release.set()
            server.stop()
        print_table(("state", "RSS", "threads"), rows)


def main() -> None:
    run_in_workdir(_run)


def _synced(client: ComponentClient) -> bool:
    return client.resolve("app1").startswith("10.")


if __name__ == "__main__":
    main()
