"""Fixtures for publisher tests: a fake API server, publisher agents, and etcd ground truth."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from resolver.config import Settings
from resolver.publisher.agent import PublisherAgent, PublisherOptions
from resolver.registry.gateway import EtcdGateway
from resolver.registry.schema import ClusterInfo, EndpointRecord, Keys
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
