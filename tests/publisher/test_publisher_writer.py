"""The writer isolates what etcd refuses and converges on etcd — real etcd, real leases."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import ClusterInfo, EndpointRecord, Keys
from resolver.writer.writer import RegistryWriter
from tests.conftest import eventually, make_settings, record
from tests.support.publishing import etcd_addresses

pytestmark = pytest.mark.registry  # also run against etcd 3.4 in CI (README's test command)


def _oversize() -> float:
    return REGISTRY.get_sample_value("dapr_nr_publisher_oversize_records_total") or 0.0


def _records(count: int) -> list[EndpointRecord]:
    return [record("billing", cluster="vms", instance=f"vm-{n}", address=f"10.1.{n // 250}.{n % 250 + 1}")
            for n in range(count)]


def test_a_transaction_etcd_refuses_for_size_is_split_and_only_the_bad_record_skipped(
        tmp_path: Path, prefix: str) -> None:
    """One oversized entry made etcd refuse every transaction, retried forever."""
    with LocalEtcd(tmp_path / "etcd", extra_args=("--max-request-bytes=3000",)) as small:
        gateway = EtcdGateway(make_settings(small.endpoint, prefix).etcd)
        keys = Keys(prefix)
        records = _records(300)
        records[150] = dataclasses.replace(records[150], node="n" * 2900)  # valid shape, too big for this etcd
        info = ClusterInfo(cluster="vms", publisher="test", version="0", started_at=time.time())
        synced: list[bool] = []
        before = _oversize()
        writer = RegistryWriter(gateway, "vms", 5.0, info=info, on_synced=lambda: synced.append(True))
        try:
            writer.replace(records)
            writer.start()
            eventually(lambda: synced, 30, "the sync despite the refused record")
            published = etcd_addresses(gateway, keys, "vms")
            assert len(published) == 299 and "vm-150" not in published
            assert _oversize() == before + 1
            info_now = ClusterInfo.from_json(gateway.get(keys.info("vms")) or b"")
            assert info_now.synced_at > 0 and info_now.endpoints == 299
            writer.upsert(dataclasses.replace(records[1], port=50010))  # later edits still apply
            eventually(lambda: etcd_addresses(gateway, keys, "vms")["vm-1"].endswith(":50010"), 10, "a later edit")
        finally:
            writer.stop()
            gateway.close()


def test_records_over_the_registry_limit_are_never_sent(gateway: EtcdGateway, keys: Keys) -> None:
    records = _records(5)
    records[2] = dataclasses.replace(records[2], zone="z" * 5000)  # every reader would skip it
    before = _oversize()
    writer = RegistryWriter(gateway, "vms", 5.0)
    try:
        writer.replace(records)
        writer.start()
        eventually(lambda: len(etcd_addresses(gateway, keys, "vms")) == 4, 10, "the other records")
        assert _oversize() == before + 1
    finally:
        writer.stop()


def test_self_registration_style_writer_puts_back_its_own_key_only(gateway: EtcdGateway, keys: Keys) -> None:
    mine = record("billing", cluster="c1", instance="me")
    other = record("billing", cluster="c1", instance="someone-else", address="10.0.0.9")
    gateway.put(other.key(keys), other.to_json())
    writer = RegistryWriter(gateway, "c1", 5.0, owns_range=False, verify_interval=1.0)
    try:
        writer.replace([mine])
        writer.start()
        eventually(lambda: gateway.get(mine.key(keys)) is not None, 10, "the first write")
        gateway.delete(mine.key(keys))
        eventually(lambda: gateway.get(mine.key(keys)) is not None, 5, "put back")
        assert gateway.get(other.key(keys)) is not None  # not its range: never deleted
    finally:
        writer.stop()


def test_a_keepalive_that_gets_no_answer_times_out_and_the_next_one_reconnects(tmp_path: Path, prefix: str) -> None:
    import pytest

    from resolver.errors import RegistryUnavailable
    from resolver.etcd.keepalive import LeaseKeeper

    with LocalEtcd(tmp_path / "etcd") as own:
        gateway = EtcdGateway(make_settings(own.endpoint, prefix).etcd)
        keeper = LeaseKeeper(gateway, timeout=0.5)
        try:
            lease = gateway.grant(30)
            assert keeper.refresh_one(lease) == 30
            own.freeze()  # SIGSTOP: the connection stays open, nothing answers
            started = time.monotonic()
            with pytest.raises(RegistryUnavailable, match="no answer"):
                keeper.refresh_one(lease)
            assert time.monotonic() - started < 4  # the 0.5 s timeout, not etcd's 5 s default, decides
            own.thaw()
            assert eventually(lambda: keeper.refresh_one(lease) > 0, 10, "a renewal after the thaw")
            assert keeper.reconnects == 1
        finally:
            own.thaw()
            keeper.close()
            gateway.close()


def test_a_keepalive_on_a_dead_member_moves_to_a_live_one(etcd: LocalEtcd, prefix: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The keep-alive stream is ours, so python3-etcd3's failover never sees it fail: a client
    that picked a killed member kept using it (a 3-member fault run lost a cluster's records for
    good). The gateway drops such a client, and the next connect picks an endpoint afresh."""
    from resolver.errors import RegistryUnavailable
    from resolver.etcd.keepalive import LeaseKeeper
    from resolver.local_etcd import free_port

    dead = f"127.0.0.1:{free_port()}"
    picks = iter(["dead", "live"])  # the first client starts on the dead member, the next on the live one

    random_module = sys.modules["etcd3.client"].random
    original = random_module.choice

    def choose(labels: list[str]) -> str:
        if not any(dead in str(label) for label in labels):
            return original(labels)  # someone else's draw
        wanted = next(picks, "live")
        return next(label for label in labels if (dead in str(label)) == (wanted == "dead"))

    monkeypatch.setattr(random_module, "choice", choose)
    gateway = EtcdGateway(make_settings(f"{dead},{etcd.endpoint}", prefix).etcd)
    lease = EtcdGateway(make_settings(etcd.endpoint, prefix).etcd).grant(30)
    keeper = LeaseKeeper(gateway, timeout=2.0)
    with pytest.raises(RegistryUnavailable):
        keeper.refresh_one(lease)
    time.sleep(1.5)  # longer than python3-etcd3's endpoint retry (1 s): its own failover would not help
    assert keeper.refresh_one(lease) > 0
