"""One bad record, written by one cluster, costs exactly that record — in a real reader on real etcd.

Each case here took down (or poisoned) every resolver in the previous release: a value that
makes the parser overflow killed the reader thread; dangerous or oddly spelled addresses were
served; a duplicate JSON key let a record say two things; a record made a whole app fail.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import ClusterInfo, Keys
from resolver.registry.mirror import RegistryReader
from tests.conftest import eventually, make_settings, put_record, record

pytestmark = pytest.mark.registry  # also run against etcd 3.4 in CI (README's test command)

POISON = [
    b'{"cluster":"cluster-3","endpoints":1e999}',
    b'{"cluster":"cluster-3","endpoints":NaN}',
    b'{"cluster":"cluster-3","leaseTTL":-Infinity}',
    b'{"cluster":"cluster-3","startedAt":' + b"9" * 5000 + b"}",
    b'{"cluster":"cluster-3","cluster":"cluster-3"}',
    b"\xef\xbb\xbf" + b'{"cluster":"cluster-3"}',
    b"[" * 3000 + b"]" * 3000,
    b'{"cluster":' + b"[" * 2000 + b"]" * 2000 + b"}",
]

DANGEROUS = ["0.0.0.0", "127.0.0.1", "::1", "::ffff:127.0.0.1", "169.254.169.254", "fe80::1%eth0", "fe80::1",
             "2130706433", "0x7f000001", "0177.0.0.01", "0", "999.1.1.1", "224.0.0.1", "fd00:ec2::254",
             "100.100.100.200", "localhost"]


@pytest.fixture
def reader_factory(etcd: LocalEtcd, prefix: str) -> Iterator[Callable[..., RegistryReader]]:
    readers: list[RegistryReader] = []

    def make(**keys: object) -> RegistryReader:
        reader = RegistryReader(make_settings(etcd.endpoint, prefix, **keys).etcd, progress_interval=0.5).start()
        readers.append(reader)
        return reader

    yield make
    for reader in readers:
        reader.stop()


def endpoint_json(app: str, address: str, instance: str, **extra: object) -> bytes:
    return json.dumps({"appId": app, "namespace": "default", "cluster": "cluster-1", "instance": instance,
                       "address": address, "port": 50002, **extra}).encode()


@pytest.mark.parametrize("poison", POISON, ids=lambda p: p[:24].decode("latin-1"))
def test_a_poisoned_cluster_info_costs_only_itself(gateway: EtcdGateway, keys: Keys, reader_factory,
                                                   poison: bytes) -> None:
    gateway.put(keys.info("cluster-3"), poison)  # present before the reader starts: the list path
    reader = reader_factory()
    assert reader.wait_synced(10), reader.health_reason()
    assert reader.cache.skipped["invalid"] == 1
    gateway.put(keys.info("cluster-4"), poison)  # and as a watch event
    put_record(gateway, keys, record("orders", address="10.1.0.7"))
    eventually(lambda: reader.cache.lookup("default", "orders") == {"cluster-1": ("10.1.0.7:50002",)}, 10,
               "a later record still arrives")
    assert reader.cache.skipped["invalid"] == 2
    assert reader.healthy and reader.failure is None


def test_poisoned_endpoint_numbers_never_reach_a_float(gateway: EtcdGateway, keys: Keys, reader_factory) -> None:
    bad = [endpoint_json("orders", "10.1.0.1", "o-1")[:-1] + b',"updatedAt":1e400}',
           endpoint_json("orders", "10.1.0.2", "o-2")[:-1] + b',"updatedAt":' + b"1" * 400 + b"}",
           endpoint_json("orders", "10.1.0.3", "o-3")[:-1] + b',"updatedAt":NaN}']
    for index, value in enumerate(bad, 1):
        gateway.put(f"{keys.cluster_apps('cluster-1')}default/orders/o-{index}", value)
    put_record(gateway, keys, record("orders", instance="o-9", address="10.1.0.9"))
    reader = reader_factory()
    assert reader.wait_synced(10)
    assert reader.cache.lookup("default", "orders") == {"cluster-1": ("10.1.0.9:50002",)}
    assert reader.cache.skipped["invalid"] == 3


@pytest.mark.parametrize("address", DANGEROUS)
def test_dangerous_addresses_are_never_served(gateway: EtcdGateway, keys: Keys, reader_factory, address: str) -> None:
    reader = reader_factory()
    assert reader.wait_synced(10)
    base = keys.cluster_apps("cluster-1") + "default/orders/"
    gateway.put(base + "bad", endpoint_json("orders", address, "bad"))
    gateway.put(base + "good", endpoint_json("orders", "10.1.0.8", "good"))
    eventually(lambda: reader.cache.lookup("default", "orders") == {"cluster-1": ("10.1.0.8:50002",)}, 10,
               "the sibling is served and the bad one is not")
    assert reader.cache.skipped["refused"] + reader.cache.skipped["invalid"] == 1


def test_allow_loopback_and_cluster_cidrs(etcd: LocalEtcd, gateway: EtcdGateway, keys: Keys, prefix: str) -> None:
    from resolver.records.addresses import AddressPolicy

    base = keys.cluster_apps("cluster-1") + "default/orders/"
    gateway.put(base + "loop", endpoint_json("orders", "127.0.0.1", "loop"))
    gateway.put(base + "inside", endpoint_json("orders", "10.1.2.3", "inside"))
    gateway.put(base + "outside", endpoint_json("orders", "10.2.2.3", "outside"))
    gateway.put(base + "vm", endpoint_json("orders", "vm-1.example.com", "vm"))
    policy = AddressPolicy.from_spec("cluster-1=10.1.0.0/16,cluster-1=127.0.0.0/8", allow_loopback=True)
    reader = RegistryReader(make_settings(etcd.endpoint, prefix).etcd, policy=policy).start()
    try:
        assert reader.wait_synced(10)
        assert reader.cache.lookup("default", "orders") == {"cluster-1": ("10.1.2.3:50002", "127.0.0.1:50002")}
        assert reader.cache.skipped["refused"] == 2  # outside the allowlist, and a host name without 'hostnames'
    finally:
        reader.stop()


def test_duplicate_keys_cannot_say_two_addresses(gateway: EtcdGateway, keys: Keys, reader_factory) -> None:
    reader = reader_factory()
    assert reader.wait_synced(10)
    two_faced = (b'{"appId":"orders","namespace":"default","cluster":"cluster-1","instance":"x",'
                 b'"address":"10.1.0.1","port":50002,"address":"10.6.6.6"}')
    gateway.put(keys.cluster_apps("cluster-1") + "default/orders/x", two_faced)
    put_record(gateway, keys, record("orders", instance="y", address="10.1.0.2"))
    eventually(lambda: reader.cache.lookup("default", "orders") == {"cluster-1": ("10.1.0.2:50002",)}, 10, "y only")
    assert reader.cache.skipped["invalid"] == 1


def test_a_long_instance_label_costs_only_that_record(gateway: EtcdGateway, keys: Keys, reader_factory) -> None:
    instance = "a" * 100
    gateway.put(keys.cluster_apps("cluster-1") + f"default/orders/{instance}",
                endpoint_json("orders", "10.1.0.1", instance))
    put_record(gateway, keys, record("orders", instance="ok", address="10.1.0.2"))
    reader = reader_factory()
    assert reader.wait_synced(10)
    assert reader.cache.instances("default", "orders") == {("cluster-1", "10.1.0.2:50002"): "ok"}


def test_an_unexpected_reader_error_is_supervised_not_fatal(gateway: EtcdGateway, keys: Keys, reader_factory,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever escapes the loop: logged, health NOT_SERVING, re-list after a backoff."""
    reader = reader_factory()
    assert reader.wait_synced(10)
    original = reader.cache.apply
    calls = {"n": 0}

    def explode(*args: object, **kwargs: object) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("injected")
        return original(*args, **kwargs)

    monkeypatch.setattr(reader.cache, "apply", explode)
    put_record(gateway, keys, record("orders", address="10.1.0.5"))
    eventually(lambda: reader.failure is not None, 10, "the failure is reported")
    assert not reader.healthy and "reader failed" in reader.health_reason()
    eventually(lambda: reader.cache.lookup("default", "orders") == {"cluster-1": ("10.1.0.5:50002",)}, 15,
               "a re-list after the backoff brings the record")
    eventually(lambda: reader.healthy, 10, "healthy again")
    assert reader._thread.is_alive()


def test_cluster_info_round_trip_keeps_identity_and_tolerates_the_old_format() -> None:
    info = ClusterInfo("cluster-1", "pub", "0.2.0", 1.0, 2.0, 3, 15.0, cluster_uid="abc")
    assert ClusterInfo.from_json(info.to_json()) == info
    old = b'{"cluster":"cluster-1","publisher":"p","version":"0.1.0","startedAt":1,"syncedAt":null,"endpoints":0}'
    assert ClusterInfo.from_json(old).cluster_uid == ""


def test_unknown_cluster_keys_are_ignored(gateway: EtcdGateway, keys: Keys, reader_factory) -> None:
    """A newer publisher may write keys this release does not know: never counted as invalid."""
    gateway.put(keys.cluster_meta("cluster-1") + "future/thing", b"not even json")
    gateway.put(keys.lastseen("cluster-9"), b'{"cluster":"cluster-9","at":1,"endpoints":3}')
    reader = reader_factory()
    assert reader.wait_synced(10)
    assert reader.cache.invalid_records == 0
    assert reader.cache.gone_clusters() == ["cluster-9"]
