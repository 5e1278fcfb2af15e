"""Publisher process behaviour: real ``publish`` subprocesses, the fake API server, real etcd.

Signals, lease expiry, restarts and failover are about the process and etcd; the pods are
incidental, so the fake gives 20 of them in milliseconds. The real ``publish`` process against
a real kube-apiserver is tested in test_real_apiserver_rbac.py and
test_real_apiserver_deployment.py (which also kills a leader).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from resolver.demo.processes import CliProcess
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import Keys
from tests.conftest import eventually
from tests.support.fake_kube import FakeKubeApi, make_pod
from tests.support.publishing import CountMonitor, cluster_info, etcd_addresses

pytestmark = pytest.mark.registry  # also run against etcd 3.4 in CI (README's test command)

PODS = 20


@pytest.fixture
def pods(kube: FakeKubeApi) -> FakeKubeApi:
    for i in range(PODS):
        kube.put_pod(make_pod(f"orders-{i}", ip=f"10.0.0.{i + 1}"))
    return kube


def synced(gateway: EtcdGateway, keys: Keys, count: int = PODS) -> bool:
    info = cluster_info(gateway, keys, "cluster-1")
    return info is not None and info.synced_at > 0 and len(etcd_addresses(gateway, keys, "cluster-1")) == count


def test_sigkill_records_gone_within_ttl(pods: FakeKubeApi, spawn, gateway: EtcdGateway, keys: Keys) -> None:
    publisher = spawn(ttl="3s")
    eventually(lambda: synced(gateway, keys), 20, "initial sync")
    publisher.signal(signal.SIGKILL)
    killed = time.monotonic()
    eventually(lambda: not etcd_addresses(gateway, keys, "cluster-1") and cluster_info(gateway, keys, "cluster-1")
               is None, 20, "records to expire")
    # by the 3 s lease, not the default 15 s one: generous for a loaded machine
    assert time.monotonic() - killed <= 3 + 7


def test_restart_without_gap(pods: FakeKubeApi, spawn, gateway: EtcdGateway, keys: Keys) -> None:
    # The successor must start within what is left of the TTL; 6 s leaves room for a loaded CI machine.
    first = spawn(ttl="6s")
    eventually(lambda: synced(gateway, keys), 20, "initial sync")
    old_info = cluster_info(gateway, keys, "cluster-1")
    monitor = CountMonitor(gateway, keys)
    first.signal(signal.SIGKILL)
    spawn(ttl="6s")
    eventually(lambda: cluster_info(gateway, keys, "cluster-1") != old_info, 20, "the successor's sync")
    time.sleep(6 + 1)  # past the killed publisher's lease expiry
    samples = monitor.stop()
    assert len(samples) > 100
    assert min(samples) == PODS, "the cluster disappeared during the restart"


def test_graceful_stop_leaves_records_to_expire_and_withdraw_removes_them(
        pods: FakeKubeApi, spawn, gateway: EtcdGateway, keys: Keys) -> None:
    publisher = spawn(ttl="3s")
    eventually(lambda: synced(gateway, keys), 20, "initial sync")
    assert publisher.stop() == 0
    assert len(etcd_addresses(gateway, keys, "cluster-1")) == PODS  # still there for a successor
    eventually(lambda: not etcd_addresses(gateway, keys, "cluster-1"), 5, "expiry")
    withdrawing = spawn("--withdraw", ttl="30s")
    eventually(lambda: synced(gateway, keys), 20, "second sync")
    assert withdrawing.stop() == 0
    assert etcd_addresses(gateway, keys, "cluster-1") == {}
    assert cluster_info(gateway, keys, "cluster-1") is None


def test_leader_election_failover(pods: FakeKubeApi, spawn, gateway: EtcdGateway, keys: Keys) -> None:
    replicas = {name: spawn("--leader-elect", "--identity", name, ttl="6s") for name in ("replica-a", "replica-b")}
    eventually(lambda: synced(gateway, keys), 20, "initial sync")

    def leader() -> str | None:
        raw = gateway.get(keys.leader("cluster-1"))
        return None if raw is None else str(json.loads(raw)["identity"])

    first = str(eventually(leader, 10, "a leader"))
    standby = next(name for name in replicas if name != first)
    monitor = CountMonitor(gateway, keys)
    replicas[first].signal(signal.SIGKILL)
    killed = time.monotonic()
    eventually(lambda: leader() == standby, 10, "the standby to take over")
    assert time.monotonic() - killed <= 6  # within one lease TTL
    time.sleep(6 + 1)  # past the dead leader's record leases
    samples = monitor.stop()
    assert min(samples) == PODS, "records vanished during the failover"
    assert cluster_info(gateway, keys, "cluster-1").publisher == standby  # type: ignore[union-attr]
    pods.put_pod(make_pod("orders-new", ip="10.0.1.1"))  # the new leader keeps publishing changes
    eventually(lambda: "orders-new" in etcd_addresses(gateway, keys, "cluster-1"), 5, "change after failover")


def test_file_source_reloads(etcd: LocalEtcd, prefix: str, tmp_path: Path, gateway: EtcdGateway,
                             keys: Keys) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("- {appId: billing, namespace: default, instance: vm-1, address: 192.168.7.10, port: 50002}\n"
                         "- {appId: 'bad.id', namespace: default, instance: vm-2, address: 192.168.7.11}\n")
    process = CliProcess(["publish", "--cluster", "vms", "--source", "file", "--file", str(inventory),
                          "--lease-ttl", "3s", "--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}"],
                         tmp_path / "file.log")
    try:
        eventually(lambda: etcd_addresses(gateway, keys, "vms") == {"vm-1": "192.168.7.10:50002"}, 20, "load")
        assert "inventory.yaml entry 2: appId:" in process.output()  # entries numbered from 1
        inventory.write_text("endpoints:\n- {appId: billing, namespace: default, instance: vm-3, address: 10.1.1.1, "
                             "zone: dc-2}\n")
        eventually(lambda: etcd_addresses(gateway, keys, "vms") == {"vm-3": "10.1.1.1:50002"}, 10, "reload")
        inventory.write_text("{not: [valid")
        time.sleep(1.5)
        assert etcd_addresses(gateway, keys, "vms") == {"vm-3": "10.1.1.1:50002"}  # last good state kept
        assert "keeping the last good state" in process.output()
    finally:
        process.stop()


def test_bad_arguments_are_refused_clearly(tmp_path: Path) -> None:
    for args, fragment in [
        (["--cluster", "Bad_Cluster"], "--cluster"),
        (["--cluster", "c1", "--lease-ttl", "1s"], "--lease-ttl"),
        (["--cluster", "c1", "--source", "file"], "--file"),
        (["--cluster", "c1", "--kubeconfig", str(tmp_path / "missing")], "--kubeconfig"),
        (["--cluster", "c1", "--cluster-uid", "Bad_UID"], "--cluster-uid"),
        (["--cluster", "c1", "--verify-interval", "0s"], "--verify-interval"),
    ]:
        process = CliProcess(["publish", *args], tmp_path / "bad.log")
        assert process.process.wait(30) == 2, process.output()
        assert fragment in process.output()
        assert "Traceback" not in process.output()
