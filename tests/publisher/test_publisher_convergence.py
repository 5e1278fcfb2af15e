"""The publisher converges on etcd, keeps leases alive through ``etcd grpc-proxy``, heartbeats,
and never opens a gap on restart — real etcd, the real kubernetes client against the fake API.

The pods are incidental: the fake gives a deterministic pod list in milliseconds (and one slow
list on demand, below); the Kubernetes side itself is tested against the real API server in
test_real_apiserver_*.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from resolver.config import Settings
from resolver.errors import RegistryError
from resolver.etcd.gateway import EtcdGateway
from resolver.publisher.agent import PublisherAgent
from resolver.records.schema import ClusterInfo, Heartbeat, Keys, LastSeen
from tests.conftest import eventually, make_settings
from tests.support.fake_kube import FakeKubeApi, make_pod
from tests.support.publishing import GrpcProxy, etcd_addresses

pytestmark = pytest.mark.registry  # also run against etcd 3.4 in CI (README's test command)

Start = Callable[..., PublisherAgent]


def _metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def _lease_of(gateway: EtcdGateway, key: str) -> int:
    value, meta = gateway.call("get", lambda c: c.get(key))
    return int(meta.lease_id) if value is not None else -1


def test_a_record_deleted_by_hand_comes_back_within_the_verify_interval(
        kube: FakeKubeApi, publisher: Start, gateway: EtcdGateway, keys: Keys) -> None:
    for i in range(3):
        kube.put_pod(make_pod(f"orders-{i}", ip=f"10.0.0.{i + 1}"))
    publisher(verify_interval=1.0)
    key = keys.endpoint("cluster-1", "default", "orders", "orders-1")
    repairs = _metric("dapr_nr_publisher_repairs_total", {"op": "put"})
    gateway.delete(key)
    deleted = time.monotonic()
    eventually(lambda: gateway.get(key) is not None, 20, "the deleted record to come back")
    # by the 1 s verify pass, not the default 30 s one: generous for a loaded machine
    assert time.monotonic() - deleted <= 10.0
    assert _metric("dapr_nr_publisher_repairs_total", {"op": "put"}) >= repairs + 1


def test_a_record_changed_by_hand_or_moved_off_our_lease_is_put_back(
        kube: FakeKubeApi, publisher: Start, gateway: EtcdGateway, keys: Keys) -> None:
    kube.put_pod(make_pod("orders-0", ip="10.0.0.1"))
    publisher(verify_interval=1.0)
    key = keys.endpoint("cluster-1", "default", "orders", "orders-0")
    ours = _lease_of(gateway, key)
    gateway.put(key, gateway.get(key).replace(b"10.0.0.1", b"10.6.6.6"))  # type: ignore[union-attr]  # lease-less
    eventually(lambda: etcd_addresses(gateway, keys, "cluster-1") == {"orders-0": "10.0.0.1:50002"}
               and _lease_of(gateway, key) == ours, 5, "the record restored on our lease")
    gateway.delete(keys.info("cluster-1"))
    eventually(lambda: gateway.get(keys.info("cluster-1")) is not None, 5, "the info key restored")


def test_heartbeat_advances_every_third_of_the_ttl_and_lastseen_is_written(
        kube: FakeKubeApi, publisher: Start, gateway: EtcdGateway, keys: Keys) -> None:
    kube.put_pod(make_pod("orders-0"))
    agent = publisher(lease_ttl=3.0)
    first = Heartbeat.from_json(eventually(lambda: gateway.get(keys.heartbeat("cluster-1")), 5, "a heartbeat") or b"")
    assert first.cluster_uid == agent.cluster_uid == kube.kube_system_uid
    eventually(lambda: Heartbeat.from_json(gateway.get(keys.heartbeat("cluster-1")) or b"{}").seq >= first.seq + 2,
               5, "two more heartbeats within ~2 s")
    seen = LastSeen.from_json(eventually(lambda: gateway.get(keys.lastseen("cluster-1")), 5, "lastseen") or b"")
    assert (seen.reason, seen.endpoints, seen.cluster_uid) == ("running", 1, agent.cluster_uid)
    assert _lease_of(gateway, keys.lastseen("cluster-1")) == 0  # lease-less: survives the cluster
    info = ClusterInfo.from_json(gateway.get(keys.info("cluster-1")) or b"{}")
    assert info.cluster_uid == agent.cluster_uid


def test_withdraw_records_lastseen_withdrawn(kube: FakeKubeApi, settings: Settings, kubeconfig: Path,
                                             gateway: EtcdGateway, keys: Keys) -> None:
    from resolver.publisher.agent import PublisherOptions

    kube.put_pod(make_pod("orders-0"))
    agent = PublisherAgent(settings, PublisherOptions(cluster="cluster-1", lease_ttl=3.0, withdraw=True,
                                                      kubeconfig=str(kubeconfig))).start()
    try:
        assert agent.synced.wait(15)
    finally:
        agent.stop()
    assert etcd_addresses(gateway, keys, "cluster-1") == {}
    seen = LastSeen.from_json(gateway.get(keys.lastseen("cluster-1")) or b"{}")
    assert seen.reason == "withdrawn"


class Gaps:
    """Samples the cluster's record count every ``interval`` to catch any moment a record is missing."""

    def __init__(self, gateway: EtcdGateway, keys: Keys, interval: float = 0.05) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(gateway, keys, interval), daemon=True)
        self._thread.start()

    def _run(self, gateway: EtcdGateway, keys: Keys, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.samples.append(len(etcd_addresses(gateway, keys, "cluster-1")))
            except RegistryError:
                self.samples.append(-1)  # the test's own etcd read failed: shows up as a (failing) sample

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join()
        return self.samples


def test_publisher_through_etcd_grpc_proxy_keeps_every_record_for_30s(
        kube: FakeKubeApi, publisher: Start, grpc_proxy: GrpcProxy, gateway: EtcdGateway, keys: Keys,
        prefix: str) -> None:
    """Keep-alives through the proxy (python3-etcd3's fail: records expire one TTL after start)."""
    for i in range(10):
        kube.put_pod(make_pod(f"orders-{i}", ip=f"10.0.0.{i + 1}"))
    losses = _metric("dapr_nr_publisher_lease_losses_total")
    reconnects = _metric("dapr_nr_publisher_keepalive_reconnects_total")
    proxied = make_settings(grpc_proxy.endpoint, prefix)
    agent = publisher(settings_override=proxied, lease_ttl=3.0, leader_elect=True)
    gaps = Gaps(gateway, keys)  # read straight from etcd, not through the proxy
    time.sleep(32)
    samples = gaps.stop()
    assert len(samples) > 300 and min(samples) == 10, f"records missing: min {min(samples)} of 10"
    assert _metric("dapr_nr_publisher_lease_losses_total") == losses
    assert _metric("dapr_nr_publisher_keepalive_reconnects_total") == reconnects
    assert agent.election is not None and agent.election.leading
    assert gateway.get(keys.info("cluster-1")) is not None


def test_a_restart_keeps_the_predecessors_leases_alive_until_its_own_first_sync(
        kube: FakeKubeApi, publisher: Start, gateway: EtcdGateway, keys: Keys) -> None:
    """The new process takes longer than a TTL to list, yet no record ever goes missing.

    On the fake: a real API server cannot be made to answer one list 6 s late on demand."""
    for i in range(20):
        kube.put_pod(make_pod(f"orders-{i}", ip=f"10.0.0.{i + 1}"))
    first = publisher(lease_ttl=3.0)
    old_lease = _lease_of(gateway, keys.endpoint("cluster-1", "default", "orders", "orders-0"))
    first.stop()  # no --withdraw: the records stay until their lease expires (3 s) ...
    kube.list_delay = 6.0  # ... and the successor's list takes twice that
    gaps = Gaps(gateway, keys)
    second = publisher(lease_ttl=3.0, wait=False)
    assert second.synced.wait(20)
    time.sleep(4)  # the predecessor's lease is no longer refreshed: it expires, holding nothing of ours
    samples = gaps.stop()
    assert min(samples) == 20, f"a gap: {samples.count(0)} samples with no records"
    new_lease = _lease_of(gateway, keys.endpoint("cluster-1", "default", "orders", "orders-0"))
    assert new_lease not in (old_lease, -1)
    assert gateway.call("ttl", lambda c: c.get_lease_info(old_lease)).TTL == -1  # expired after the sync


def test_without_rbac_the_publisher_creates_the_registry_identity_if_absent(
        kube: FakeKubeApi, publisher: Start, gateway: EtcdGateway, keys: Keys) -> None:
    from resolver.records.schema import RegistryIdentity

    assert gateway.get(keys.identity()) is None
    kube.put_pod(make_pod("orders-0"))
    publisher()
    first = RegistryIdentity.from_json(gateway.get(keys.identity()) or b"")
    publisher("cluster-2")  # a second publisher finds it and leaves it alone
    assert RegistryIdentity.from_json(gateway.get(keys.identity()) or b"") == first


def test_the_keepalive_stream_reconnects_after_a_cut_without_losing_a_lease(
        kube: FakeKubeApi, publisher: Start, gateway: EtcdGateway, keys: Keys, etcd: object, prefix: str) -> None:
    from resolver.local_etcd import LocalEtcd
    from tests.support.tcp_proxy import TcpProxy

    assert isinstance(etcd, LocalEtcd)
    host, port = etcd.endpoint.split("://")[-1].rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    try:
        for i in range(5):
            kube.put_pod(make_pod(f"orders-{i}", ip=f"10.0.0.{i + 1}"))
        losses = _metric("dapr_nr_publisher_lease_losses_total")
        reconnects = _metric("dapr_nr_publisher_keepalive_reconnects_total")
        agent = publisher(settings_override=make_settings(proxy.endpoint, prefix, etcdTimeout="1s"), lease_ttl=6.0)
        writer = agent.publication.writer
        assert writer is not None
        eventually(lambda: writer.leases.keeper.streaming, 5, "the keep-alive stream")
        gaps = Gaps(gateway, keys)
        proxy.cut()  # every stream resets; new connections are refused
        time.sleep(1.5)
        proxy.restore()
        eventually(lambda: _metric("dapr_nr_publisher_keepalive_reconnects_total") > reconnects, 10,
                   "a keep-alive stream reconnect")
        time.sleep(7)  # longer than the TTL: only renewals over the new stream keep the records
        assert min(gaps.stop()) == 5
        assert _metric("dapr_nr_publisher_lease_losses_total") == losses
    finally:
        proxy.close()
