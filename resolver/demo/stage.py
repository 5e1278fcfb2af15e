"""The demo's stage: etcd, publishers, the component and the DNS bridge as real processes.

Everything the demo starts is recorded here and ended here, by PID, with its temporary files.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml

from resolver.demo.processes import CliProcess, wait_dns_listening, wait_serving
from resolver.local_etcd import LocalEtcd

LEASE_TTL = 3

INVENTORIES = {
    "cluster-1": [
        {"appId": "order-service", "namespace": "default", "instance": "order-service-7d9f-a1",
         "address": "10.1.0.11", "zone": "eu-1a"},
        {"appId": "order-service", "namespace": "default", "instance": "order-service-7d9f-b2",
         "address": "10.1.0.12", "zone": "eu-1b"},
        {"appId": "payments", "namespace": "shop", "instance": "payments-5c8b-c3", "address": "10.1.0.21",
         "zone": "eu-1a"},
    ],
    "cluster-2": [
        {"appId": "order-service", "namespace": "default", "instance": "order-service-6b4c-d4",
         "address": "10.2.0.11", "zone": "us-1a"},
        {"appId": "checkout", "namespace": "default", "instance": "checkout-59d7-e5", "address": "10.2.0.31",
         "zone": "us-1a"},
    ],
}


class Stage:
    def __init__(self, etcd_endpoints: str | None, prefix: str) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="dapr-nr-demo-"))
        self.prefix = prefix
        self.etcd: LocalEtcd | None = None
        self.endpoints = etcd_endpoints or ""
        self.processes: dict[str, CliProcess] = {}  # the current process of each role
        self.started: list[tuple[str, CliProcess]] = []  # every process ever started, to end them all
        self.dns_port = 0

    @property
    def socket_path(self) -> Path:
        return self.workdir / "sockets" / "etcd.sock"

    def common(self) -> list[str]:
        return ["--set", f"etcdEndpoints={self.endpoints}", "--set", f"prefix={self.prefix}"]

    def start_etcd(self) -> None:
        self.etcd = LocalEtcd(self.workdir / "etcd").start()  # LocalEtcd runs etcd in its own session
        self.endpoints = self.etcd.endpoint

    def init_registry(self) -> str:
        """``registry init``, as an administrator does once per etcd: the registry's identity key."""
        from resolver.config import Layer, load_settings
        from resolver.etcd.gateway import EtcdGateway
        from resolver.records.schema import Keys
        from resolver.registry.history_id import ensure_identity

        settings = load_settings([Layer("demo", {"etcdEndpoints": self.endpoints, "prefix": self.prefix})])
        gateway = EtcdGateway(settings.etcd)
        try:
            identity, _ = ensure_identity(gateway, Keys(self.prefix))
        finally:
            gateway.close()
        return identity.id

    def inventory(self, cluster: str) -> Path:
        return self.workdir / f"{cluster}.yaml"

    def write_inventory(self, cluster: str, entries: list[dict[str, str]]) -> None:
        path = self.inventory(cluster)
        staging = path.with_suffix(".tmp")
        staging.write_text(yaml.safe_dump({"endpoints": entries}, sort_keys=False))
        staging.replace(path)  # atomic: the publisher never reads half a file

    def start_publisher(self, cluster: str) -> CliProcess:
        if not self.inventory(cluster).exists():
            self.write_inventory(cluster, INVENTORIES[cluster])
        process = CliProcess(["publish", "--cluster", cluster, "--source", "file", "--file",
                              str(self.inventory(cluster)), "--lease-ttl", f"{LEASE_TTL}s", *self.common()],
                             self.workdir / f"publish-{cluster}-{len(self.processes)}.log", own_session=True)
        self.processes[f"publisher {cluster}"] = process
        self.started.append((f"publisher {cluster}", process))
        return process

    def start_serve(self) -> CliProcess:
        process = CliProcess(["serve", "--socket-dir", str(self.socket_path.parent), "--name", "etcd",
                              *self.common()], self.workdir / "serve.log", own_session=True)
        self.processes["serve"] = process
        self.started.append(("serve", process))
        wait_serving(process, self.socket_path)
        return process

    def start_dns(self) -> CliProcess:
        process = CliProcess(["dns", "--listen", "127.0.0.1:0", "--set", "clusterName=cluster-2",
                              *self.common()], self.workdir / "dns.log", own_session=True)
        self.processes["dns"] = process
        self.started.append(("dns", process))
        self.dns_port = wait_dns_listening(process)
        return process

    def pids(self) -> list[tuple[str, int]]:
        shown = [(name, process.pid) for name, process in self.started]
        if self.etcd is not None and self.etcd.process is not None:
            shown.append(("etcd", self.etcd.pid))
        return shown

    def teardown(self) -> None:
        for _, process in self.started:
            process.stop(timeout=5)
        if self.etcd is not None:
            self.etcd.cleanup()
        shutil.rmtree(self.workdir, ignore_errors=True)
