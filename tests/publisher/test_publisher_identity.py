"""One cluster name, one owner: real etcd, real publishers, the fake API server.

The guard lives in etcd; Kubernetes only lends each cluster its identity (the kube-system
Namespace's UID). A second fake is a second cluster with another UID in milliseconds, so the
fake serves here; the real server's UIDs (one per cluster, and none without permission to read
kube-system) are read in test_real_apiserver_sources.py and test_real_apiserver_rbac.py.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from resolver.demo.processes import CliProcess
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.publisher.agent import PublisherAgent
from resolver.publisher.cluster_ownership import file_cluster_uid
from resolver.records.schema import ClusterInfo, ConflictMarker, EndpointRecord, Keys
from tests.conftest import eventually
from tests.support.fake_kube import FakeKubeApi, make_pod
from tests.support.publishing import etcd_addresses

pytestmark = pytest.mark.registry  # also run against etcd 3.4 in CI (README's test command)

Start = Callable[..., PublisherAgent]


def _revisions(gateway: EtcdGateway, keys: Keys) -> dict[str, int]:
    """mod_revision of every key of cluster-1 (records and info): any write by the intruder changes one."""
    found: dict[str, int] = {}
    for prefix in (keys.cluster_apps("cluster-1"), keys.info("cluster-1")):
        def listing(client: Any, prefix: str = prefix) -> list[Any]:
            return list(client.get_prefix(prefix))

        for _, meta in gateway.call("list", listing):
            found[meta.key.decode()] = int(meta.mod_revision)
    return found


@pytest.fixture
def other_kube(tmp_path: Path) -> Iterator[tuple[FakeKubeApi, Path]]:
    api = FakeKubeApi(bookmark_interval=0.3)  # another cluster: another kube-system UID
    api.put_pod(make_pod("intruder", ip="10.9.0.1"))
    yield api, api.kubeconfig(tmp_path / "other-kubeconfig")
    api.close()


@pytest.mark.parametrize("leader_elect", [False, True], ids=["plain", "leader-elect"])
def test_a_second_cluster_with_the_same_name_refuses_and_leaves_the_first_untouched(
        kube: FakeKubeApi, other_kube: tuple[FakeKubeApi, Path], publisher: Start, gateway: EtcdGateway,
        keys: Keys, leader_elect: bool, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(3):
        kube.put_pod(make_pod(f"orders-{i}", ip=f"10.0.0.{i + 1}"))
    first = publisher(leader_elect=leader_elect)
    before = _revisions(gateway, keys)
    with caplog.at_level(logging.ERROR):
        second = publisher(kubeconfig=str(other_kube[1]), leader_elect=leader_elect, wait=False)
        assert second.failed.wait(10), "the second publisher did not refuse"
    assert second.cluster_uid == other_kube[0].kube_system_uid != first.cluster_uid
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "'cluster-1'" in errors[0] and first.cluster_uid in errors[0] and second.cluster_uid in errors[0]
    assert "--cluster" in errors[0] and "--cluster-uid" in errors[0]  # the fix
    marker = ConflictMarker.from_json(gateway.get(keys.conflict("cluster-1", second.cluster_uid)) or b"{}")
    assert (marker.cluster, marker.cluster_uid) == ("cluster-1", second.cluster_uid)
    assert not second.synced.is_set()
    assert _revisions(gateway, keys) == before  # not one write to the first cluster's keys
    assert sorted(etcd_addresses(gateway, keys, "cluster-1")) == ["orders-0", "orders-1", "orders-2"]
    info = ClusterInfo.from_json(gateway.get(keys.info("cluster-1")) or b"{}")
    assert info.cluster_uid == first.cluster_uid


def test_a_second_replica_of_the_same_cluster_and_a_previous_release_info_are_compatible(
        kube: FakeKubeApi, publisher: Start, gateway: EtcdGateway, keys: Keys) -> None:
    lease = gateway.grant(30)
    old = ClusterInfo(cluster="cluster-1", publisher="old-release", version="0.0.9", started_at=1.0, synced_at=2.0)
    gateway.put(keys.info("cluster-1"), old.to_json(), lease=lease)  # no clusterUid: the previous release
    kube.put_pod(make_pod("orders-0"))
    first = publisher(leader_elect=True)
    standby = publisher(leader_elect=True, wait=False)  # same cluster, same identity
    assert not first.failed.is_set() and not standby.failed.is_set()
    assert ClusterInfo.from_json(gateway.get(keys.info("cluster-1")) or b"{}").cluster_uid == first.cluster_uid
    first.stop()  # the standby takes over
    eventually(standby.synced.is_set, 15, "the standby to take over")
    assert not standby.failed.is_set()
    gateway.revoke(lease)


def test_file_identity_is_machine_id_and_path_never_the_host_name(tmp_path: Path) -> None:
    machine = tmp_path / "machine-id"
    machine.write_text("0123456789abcdef0123456789abcdef\n")
    a = file_cluster_uid(tmp_path / "a.yaml", machine)
    assert a == file_cluster_uid(tmp_path / "a.yaml", machine)  # stable across restarts
    assert a != file_cluster_uid(tmp_path / "b.yaml", machine)
    machine.write_text("fedcba9876543210fedcba9876543210\n")
    assert a != file_cluster_uid(tmp_path / "a.yaml", machine)
    assert socket.gethostname() not in a
    assert file_cluster_uid(tmp_path / "a.yaml", tmp_path / "absent")  # no machine-id: the path alone


def test_the_refusing_process_exits_non_zero_naming_both_identities(
        kube: FakeKubeApi, etcd: LocalEtcd, prefix: str, kubeconfig: Path, tmp_path: Path, gateway: EtcdGateway,
        keys: Keys) -> None:
    kube.put_pod(make_pod("orders-0"))
    common = ["publish", "--cluster", "cluster-1", "--kubeconfig", str(kubeconfig), "--lease-ttl", "3s",
              "--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}"]
    first = CliProcess([*common, "--cluster-uid", "cluster-a-uid"], tmp_path / "first.log")
    try:
        eventually(lambda: etcd_addresses(gateway, keys, "cluster-1") == {"orders-0": "10.0.0.1:50002"}, 20,
                   "the first publisher")
        second = CliProcess([*common, "--cluster-uid", "cluster-b-uid"], tmp_path / "second.log")
        code = eventually(second.process.poll, 20, "the second publisher to exit")
        output = (tmp_path / "second.log").read_text()
        assert code == 3, output
        assert "Traceback" not in output
        line = next(line for line in output.splitlines() if "cluster-b-uid" in line and "ERROR" in line)
        assert "cluster-a-uid" in line and "--cluster-uid cluster-a-uid" in line
        assert json.loads(gateway.get(keys.conflict("cluster-1", "cluster-b-uid")) or b"{}")["clusterUid"] == \
            "cluster-b-uid"
        assert first.alive()
    finally:
        first.stop()


def test_two_identities_racing_for_one_name_cannot_both_publish(gateway: EtcdGateway, keys: Keys) -> None:
    """Both read-only checks find the name free; the first ``info`` write (compare-and-put) decides."""
    from resolver.publisher.cluster_ownership import find_conflict
    from resolver.writer.writer import RegistryWriter

    winner = ClusterInfo(cluster="cluster-1", publisher="pub-b", version="0", started_at=1.0, cluster_uid="uid-b")
    checks: list[str] = []

    def check_then_lose_the_race() -> BaseException | None:
        problem = find_conflict(gateway, "cluster-1", "uid-a")
        if not checks:  # the name is free now — and the other identity writes its info right after
            gateway.put(keys.info("cluster-1"), winner.to_json(), lease=gateway.grant(30))
        checks.append("free" if problem is None else "held")
        return problem

    refused: list[BaseException] = []
    mine = ClusterInfo(cluster="cluster-1", publisher="pub-a", version="0", started_at=1.0, cluster_uid="uid-a")
    writer = RegistryWriter(gateway, "cluster-1", 5.0, info=mine, claim_check=check_then_lose_the_race,
                            on_refused=refused.append)
    writer.replace([EndpointRecord("orders", "default", "cluster-1", "o-1", "10.0.0.1", 50002)])
    writer.start()
    try:
        eventually(lambda: refused, 10, "the slower identity to refuse")
        assert checks == ["free", "held"], "passed the read-only check, then lost the compare-and-put"
        assert "uid-a" in str(refused[0]) and "uid-b" in str(refused[0])
        assert ClusterInfo.from_json(gateway.get(keys.info("cluster-1")) or b"{}").cluster_uid == "uid-b"
        assert etcd_addresses(gateway, keys, "cluster-1") == {}, "not one record written by the loser"
    finally:
        writer.stop()


def test_a_lost_info_key_taken_by_another_identity_is_refused_before_any_repair(gateway: EtcdGateway,
                                                                                keys: Keys) -> None:
    """The verify loop re-claims a vanished ``info`` first; finding the name taken, it writes nothing more."""
    from resolver.publisher.cluster_ownership import find_conflict
    from resolver.writer.writer import RegistryWriter

    refused: list[BaseException] = []
    mine = ClusterInfo(cluster="cluster-1", publisher="pub-a", version="0", started_at=1.0, cluster_uid="uid-a")
    writer = RegistryWriter(gateway, "cluster-1", 5.0, info=mine, verify_interval=0.3,
                            claim_check=lambda: find_conflict(gateway, "cluster-1", "uid-a"),
                            on_refused=refused.append)
    writer.replace([EndpointRecord("orders", "default", "cluster-1", "o-1", "10.0.0.1", 50002)])
    writer.start()
    try:
        eventually(lambda: writer.synced_at and etcd_addresses(gateway, keys, "cluster-1"), 10, "published")
        taker = ClusterInfo(cluster="cluster-1", publisher="pub-b", version="0", started_at=1.0, cluster_uid="uid-b")
        gateway.delete(keys.apps + "cluster-1/default/orders/o-1")  # drift the verify loop would repair...
        gateway.put(keys.info("cluster-1"), taker.to_json(), lease=gateway.grant(30))  # ...but the name is taken
        eventually(lambda: refused, 10, "the refusal")
        assert "uid-b" in str(refused[0])
        assert etcd_addresses(gateway, keys, "cluster-1") == {}, "no repair after the name was taken"
        assert ClusterInfo.from_json(gateway.get(keys.info("cluster-1")) or b"{}").cluster_uid == "uid-b"
    finally:
        writer.stop()
