"""Liveness a foreign credential cannot fake: a cluster whose heartbeat stands still is withdrawn.

Lease keep-alive is outside etcd's key RBAC, so here the test itself — a stranger to cluster-2 —
keeps cluster-2's lease alive, as another cluster's publisher or a read-only resolver could.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import Heartbeat, Keys
from resolver.registry.liveness import ClusterLiveness
from resolver.registry.mirror import RegistryReader
from tests.conftest import eventually, make_settings, put_record, record
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.registry  # also run against etcd 3.4 in CI (README's test command)

TTL = 2.0


class Beater:
    """Writes cluster-2's heartbeat every TTL/3 while ``running`` is set."""

    def __init__(self, gateway: EtcdGateway, keys: Keys, lease: int) -> None:
        self.gateway, self.keys, self.lease = gateway, keys, lease
        self.running = threading.Event()
        self.stopped = threading.Event()
        self.seq = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def beat(self) -> None:
        self.seq += 1
        self.gateway.put(self.keys.heartbeat("cluster-2"),
                         Heartbeat("cluster-2", "uid-2", "pub-2", self.seq, time.time(), TTL).to_json(), self.lease)

    def _loop(self) -> None:
        while not self.stopped.wait(TTL / 3):
            self.gateway.keepalive(self.lease)  # the foreign keep-alive: never stops
            if self.running.is_set():
                self.beat()


@pytest.fixture
def world(etcd: LocalEtcd, gateway: EtcdGateway, keys: Keys) -> Iterator[Beater]:
    lease = gateway.grant(int(TTL * 3))
    beater = Beater(gateway, keys, lease)
    put_record(gateway, keys, record("orders", cluster="cluster-1", address="10.1.0.1"))
    put_record(gateway, keys, record("orders", cluster="cluster-2", address="10.2.0.1"), lease=lease)
    beater.beat()
    beater.running.set()
    beater.thread.start()
    yield beater
    beater.stopped.set()
    beater.thread.join(5)


def both(reader: RegistryReader) -> bool:
    return set(reader.cache.lookup("default", "orders")) == {"cluster-1", "cluster-2"}


def only_cluster_1(reader: RegistryReader) -> bool:
    return set(reader.cache.lookup("default", "orders")) == {"cluster-1"}


def test_a_stopped_heartbeat_withdraws_the_cluster_whatever_keeps_its_lease(world: Beater, etcd: LocalEtcd,
                                                                            prefix: str) -> None:
    reader = RegistryReader(make_settings(etcd.endpoint, prefix).etcd, progress_interval=0.5).start()
    try:
        assert reader.wait_synced(10)
        eventually(lambda: both(reader), 5, "both clusters served")
        time.sleep(TTL * 1.5)  # a live heartbeat keeps it: stays served across more than one TTL
        assert both(reader)
        world.running.clear()  # the publisher dies; the foreign keep-alive goes on
        stopped = time.monotonic()
        eventually(lambda: only_cluster_1(reader), TTL + 4, "cluster-2 withdrawn")
        assert time.monotonic() - stopped >= TTL * 0.9
        assert reader.cache.withdrawn == {"cluster-2"}
        assert len(reader.cache.dump()) == 2, "the records stay in the cache: the cache still equals etcd"
        assert reader.cache.instances("default", "orders") == {("cluster-1", "10.1.0.1:50002"): "orders-10-1-0-1"}
        world.running.set()  # a new publisher takes over
        eventually(lambda: both(reader), 5, "cluster-2 back")
    finally:
        reader.stop()


def test_a_cut_off_reader_keeps_serving_and_judges_only_after_a_fresh_ttl(world: Beater, etcd: LocalEtcd,
                                                                         prefix: str) -> None:
    proxy = TcpProxy("127.0.0.1", etcd.client_port)
    reader = RegistryReader(make_settings(proxy.endpoint, prefix, etcdTimeout="1s").etcd,
                            progress_interval=0.3).start()
    try:
        assert reader.wait_synced(10)
        eventually(lambda: both(reader), 5, "both clusters served")
        proxy.cut()
        eventually(lambda: not reader.connected, 10, "the reader notices the cut")
        time.sleep(TTL * 2)
        assert both(reader), "no withdrawal on time spent disconnected"
        proxy.restore()
        eventually(lambda: reader.connected, 15, "reconnected")
        assert both(reader)
    finally:
        reader.stop()
        proxy.close()


def test_clock_rules() -> None:
    now = [100.0]
    liveness = ClusterLiveness(clock=lambda: now[0])
    liveness.beat("c1", 1, 2.0)
    now[0] += 1.9
    assert liveness.withdrawn() == frozenset()  # a fresh reader trusts a cluster for one TTL
    now[0] += 0.2
    assert liveness.withdrawn() == {"c1"}
    liveness.beat("c1", 1, 2.0)  # the same seq re-read (a re-list) is no proof of life
    assert liveness.withdrawn() == {"c1"}
    liveness.beat("c1", 2, 2.0)
    assert liveness.withdrawn() == frozenset()
    liveness.watch_lost()
    now[0] += 5
    assert liveness.withdrawn() == frozenset()  # time disconnected does not count
    liveness.watch_healthy_again()
    now[0] += 1.9
    assert liveness.withdrawn() == frozenset()  # ... and after reconnecting, a fresh TTL
    now[0] += 0.2
    assert liveness.withdrawn() == {"c1"}
    liveness.forget("c1")
    now[0] += 10
    assert liveness.withdrawn() == frozenset()  # no heartbeat key: leases govern


def test_a_member_without_quorum_closes_the_watch_and_the_reader_says_so(tmp_path: Path) -> None:
    """With require-leader, a partitioned member cannot keep a reader on its stale state unnoticed."""
    members = LocalEtcd.cluster(tmp_path)
    settings = make_settings(members[0].endpoint, "/dapr/nr/v1", etcdTimeout="1s")
    gateway = EtcdGateway(settings.etcd)
    reader = RegistryReader(settings.etcd, progress_interval=0.3).start()
    try:
        put_record(gateway, Keys("/dapr/nr/v1"), record("orders", address="10.1.0.1"))
        assert reader.wait_synced(10)
        eventually(lambda: reader.cache.lookup("default", "orders"), 5, "record seen")
        for member in members[1:]:
            member.freeze()  # m0 is cut off from the majority: it loses its leader
        eventually(lambda: reader.no_quorum, 20, "the reader reports no quorum")
        assert not reader.healthy and "no leader" in reader.health_reason()
        assert reader.cache.lookup("default", "orders") == {"cluster-1": ("10.1.0.1:50002",)}, "last known state"
        for member in members[1:]:
            member.thaw()
        eventually(lambda: reader.healthy, 30, "healthy once the majority is back")
    finally:
        reader.stop()
        gateway.close()
        for member in members:
            member.cleanup()
