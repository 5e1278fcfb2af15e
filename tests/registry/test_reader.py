"""The registry reader against a real etcd: list, watch, re-list, outages, bad records."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import Keys
from resolver.registry.mirror import RegistryReader
from tests.conftest import eventually, make_settings, put_record, record
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.registry  # also run against etcd 3.4 in CI (README's test command)


@pytest.fixture
def reader_factory(etcd: LocalEtcd, prefix: str) -> Iterator[Callable[..., RegistryReader]]:
    readers: list[RegistryReader] = []

    def make(endpoint: str | None = None, **keys: object) -> RegistryReader:
        reader = RegistryReader(make_settings(endpoint or etcd.endpoint, prefix, **keys).etcd,
                                progress_interval=0.5).start()
        readers.append(reader)
        return reader

    yield make
    for reader in readers:
        reader.stop()


def ground_truth(gateway: EtcdGateway, keys: Keys) -> dict[str, str]:
    from resolver.records.schema import EndpointRecord

    _, pages = gateway.list_prefix(keys.apps)
    return {k.decode(): EndpointRecord.from_json(v).host_port for page in pages for k, v, _ in page}


def test_initial_list_pages_through_a_large_registry(gateway: EtcdGateway, keys: Keys, reader_factory) -> None:
    records = [record(f"app{i % 50}", address=f"10.0.{i // 250}.{i % 250}") for i in range(12_000)]
    gateway.apply([(r.key(keys), r.to_json(), None) for r in records], [])
    reader = reader_factory()
    assert reader.wait_synced(20)
    assert reader.cache.endpoint_count() == 12_000  # more than two 5,000-key pages
    assert reader.cache.dump() == ground_truth(gateway, keys)


def test_put_is_visible_and_delete_is_gone(gateway: EtcdGateway, keys: Keys, reader_factory) -> None:
    reader = reader_factory()
    assert reader.wait_synced(10)
    rec = record("orders")
    put_record(gateway, keys, rec)
    eventually(lambda: reader.cache.lookup("default", "orders") == {"cluster-1": ("10.0.0.1:50002",)}, 5, "put")
    gateway.delete(rec.key(keys))
    eventually(lambda: reader.cache.lookup("default", "orders") == {}, 5, "delete")
    assert reader.relists == 1


def test_bad_records_are_skipped_not_fatal(gateway: EtcdGateway, keys: Keys, reader_factory) -> None:
    gateway.put(f"{keys.apps}cluster-1/default/orders/orders-x", b"{not json")
    good = record("orders", instance="orders-y")
    put_record(gateway, keys, good)
    reader = reader_factory()
    assert reader.wait_synced(10)
    assert reader.cache.lookup("default", "orders") == {"cluster-1": ("10.0.0.1:50002",)}
    gateway.put(f"{keys.apps}cluster-2/default/orders/orders-z", record("other").to_json())  # key mismatch
    put_record(gateway, keys, record("payments"))
    eventually(lambda: reader.cache.lookup("default", "payments"), 5, "later good record")
    assert reader.cache.invalid_records == 2
    assert reader.connected


def test_compaction_while_disconnected_forces_a_relist_that_drops_stale(
        gateway: EtcdGateway, keys: Keys, reader_factory, etcd: LocalEtcd) -> None:
    proxy = TcpProxy("127.0.0.1", etcd.client_port)
    try:
        stays, goes = record("stays"), record("goes")
        put_record(gateway, keys, stays)
        put_record(gateway, keys, goes)
        reader = reader_factory(proxy.endpoint)
        assert reader.wait_synced(10)
        relists = reader.relists
        proxy.cut()
        eventually(lambda: not reader.connected, 10, "the reader to notice the cut")
        gateway.delete(goes.key(keys))
        put_record(gateway, keys, record("arrived"))
        revision = gateway.status("/").revision
        gateway.compact(revision)
        proxy.restore()
        eventually(lambda: reader.connected and reader.cache.lookup("default", "arrived"), 15, "re-list")
        assert reader.relists == relists + 1
        assert reader.cache.lookup("default", "goes") == {}
        assert reader.cache.dump() == ground_truth(gateway, keys)
    finally:
        proxy.close()


def test_broken_watch_resumes_without_relisting(gateway: EtcdGateway, keys: Keys, reader_factory,
                                                etcd: LocalEtcd) -> None:
    proxy = TcpProxy("127.0.0.1", etcd.client_port)
    try:
        reader = reader_factory(proxy.endpoint)
        assert reader.wait_synced(10)
        proxy.cut()
        eventually(lambda: not reader.connected, 10, "the reader to notice the cut")
        put_record(gateway, keys, record("while-away"))
        proxy.restore()
        eventually(lambda: reader.cache.lookup("default", "while-away"), 15, "resume")
        assert reader.relists == 1  # resumed from its revision: no re-list needed
        assert reader.watch_restarts >= 1
    finally:
        proxy.close()


def test_etcd_restart_during_watch(tmp_path, prefix: str) -> None:
    own = LocalEtcd(tmp_path / "etcd").start()
    reader = RegistryReader(make_settings(own.endpoint, prefix).etcd, progress_interval=0.5).start()
    gateway = EtcdGateway(make_settings(own.endpoint, prefix).etcd)
    keys = Keys(prefix)
    try:
        put_record(gateway, keys, record("before"))
        eventually(lambda: reader.cache.lookup("default", "before"), 10, "first record")
        own.kill()
        eventually(lambda: not reader.connected, 10, "disconnect")
        assert reader.cache.lookup("default", "before")  # last known state is kept
        assert reader.unreachable_for() > 0
        own.start()
        put_record(gateway, keys, record("after"))
        eventually(lambda: reader.cache.lookup("default", "after"), 20, "record after restart")
        assert reader.connected and reader.unreachable_for() == 0
    finally:
        reader.stop()
        gateway.close()
        own.cleanup()


def test_frozen_etcd_is_noticed(tmp_path, prefix: str) -> None:
    own = LocalEtcd(tmp_path / "etcd").start()
    reader = RegistryReader(make_settings(own.endpoint, prefix, etcdTimeout="1s").etcd,
                            progress_interval=0.5).start()
    try:
        assert reader.wait_synced(10)
        own.freeze()
        started = time.monotonic()
        eventually(lambda: not reader.connected, 10, "the stall to be detected")
        assert time.monotonic() - started < 5
        own.thaw()
        eventually(lambda: reader.connected, 15, "reconnect after thaw")
    finally:
        own.thaw()
        reader.stop()
        own.cleanup()


def test_reader_starts_before_etcd_exists(tmp_path, prefix: str) -> None:
    own = LocalEtcd(tmp_path / "etcd")
    reader = RegistryReader(make_settings(own.endpoint, prefix, etcdTimeout="1s").etcd).start()
    try:
        assert not reader.wait_synced(0.5)
        assert not reader.connected
        own.start()
        assert reader.wait_synced(15)
    finally:
        reader.stop()
        own.cleanup()


def test_list_jitter_delays_each_full_list_and_never_delays_stop(etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                                                 keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    """``dns --list-jitter``: the list waits (here the whole window, drawn as its maximum); stop() does not."""
    import random

    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    put_record(gateway, keys, record("orders", address="10.1.0.1"))
    connection = make_settings(etcd.endpoint, prefix).etcd
    started = time.monotonic()
    reader = RegistryReader(connection, list_jitter=0.6).start()
    try:
        assert reader.wait_synced(10)
        assert time.monotonic() - started >= 0.6
        assert reader.cache.lookup("default", "orders") == {"cluster-1": ("10.1.0.1:50002",)}
    finally:
        reader.stop()
    waiting = RegistryReader(connection, list_jitter=60).start()
    stopping = time.monotonic()
    waiting.stop()
    assert time.monotonic() - stopping < 5 and not waiting.synced
