"""The publisher agent in-process: the real kubernetes client against the fake API server, real etcd."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import Keys
from tests.conftest import eventually, make_settings, put_record, record
from tests.support.fake_kube import FakeKubeApi, make_node, make_pod
from tests.support.publishing import cluster_info, etcd_addresses, etcd_records

pytestmark = pytest.mark.registry  # also run against etcd 3.4 in CI (README's test command)


def test_initial_sync_publishes_exactly_the_ready_dapr_pods(kube: FakeKubeApi, publisher, gateway: EtcdGateway,
                                                           keys: Keys) -> None:
    kube.put_node(make_node("node-1", zone="eu-1a"))
    kube.put_pod(make_pod("orders-a", ip="10.0.0.1"))
    kube.put_pod(make_pod("orders-b", ip="10.0.0.2", port=50010))
    kube.put_pod(make_pod("orders-c", ip="10.0.0.3", ready=False))
    kube.put_pod(make_pod("plain", ip="10.0.0.4", sidecar=False))  # no Dapr sidecar: not selected at all
    kube.put_pod(make_pod("private", ip="10.0.0.5", annotations={"nameresolution.dapr.io/export": "false"}))
    kube.put_pod(make_pod("payments-a", app_id="payments", namespace="shop", ip="fd00::5"))
    started = time.time()
    publisher()
    assert etcd_addresses(gateway, keys, "cluster-1") == {
        "orders-a": "10.0.0.1:50002", "orders-b": "10.0.0.2:50010", "payments-a": "[fd00::5]:50002"}
    assert etcd_records(gateway, keys, "cluster-1")[keys.endpoint("cluster-1", "default", "orders", "orders-a")] \
        .zone == "eu-1a"
    info = cluster_info(gateway, keys, "cluster-1")
    assert info is not None and info.endpoints == 3 and info.lease_ttl == 5
    assert info.synced_at >= started - 1
    assert kube.requests["list pods"] == 1


def test_pod_changes_follow(kube: FakeKubeApi, publisher, gateway: EtcdGateway, keys: Keys) -> None:
    kube.put_pod(make_pod("orders-a", ip="10.0.0.1"))
    publisher()

    def now() -> dict[str, str]:
        return etcd_addresses(gateway, keys, "cluster-1")

    kube.put_pod(make_pod("orders-b", ip="10.0.0.2"))
    eventually(lambda: now() == {"orders-a": "10.0.0.1:50002", "orders-b": "10.0.0.2:50002"}, 5, "add")
    kube.put_pod(make_pod("orders-b", ip="10.0.0.22"))
    eventually(lambda: now().get("orders-b") == "10.0.0.22:50002", 5, "IP change")
    kube.put_pod(make_pod("orders-b", ip="10.0.0.22", ready=False))
    eventually(lambda: "orders-b" not in now(), 5, "not ready")
    kube.put_pod(make_pod("orders-b", ip="10.0.0.22"))
    eventually(lambda: "orders-b" in now(), 5, "ready again")
    kube.put_pod(make_pod("orders-b", ip="10.0.0.22", terminating=True))
    eventually(lambda: "orders-b" not in now(), 5, "terminating")
    kube.put_pod(make_pod("orders-a", ip="10.0.0.1", annotations={"nameresolution.dapr.io/export": "false"}))
    eventually(lambda: now() == {}, 5, "opt-out")
    kube.put_pod(make_pod("orders-a", ip="10.0.0.1"))
    eventually(lambda: now() == {"orders-a": "10.0.0.1:50002"}, 5, "opt back in")
    kube.put_pod(make_pod("orders-a", ip="10.0.0.1", labels={"dapr.io/sidecar-injected": "false"}))
    eventually(lambda: now() == {}, 5, "label removed: the selector drops it")
    kube.put_pod(make_pod("orders-a", ip="10.0.0.1", app_id="orders-v2"))
    eventually(lambda: list(etcd_records(gateway, keys, "cluster-1"))
               == [keys.endpoint("cluster-1", "default", "orders-v2", "orders-a")], 5, "app id change moves the key")
    kube.delete_pod("default", "orders-a")
    eventually(lambda: now() == {}, 5, "delete")


def test_410_relist_reconciles_what_vanished_while_disconnected(kube: FakeKubeApi, publisher, gateway: EtcdGateway,
                                                                keys: Keys) -> None:
    for i in range(5):
        kube.put_pod(make_pod(f"orders-{i}", ip=f"10.0.0.{i + 1}"))
    agent = publisher()
    reflector = agent.source.pods[0]
    kube.paused = True  # the watch stalls: events stop flowing
    kube.delete_pod("default", "orders-0")
    kube.delete_pod("default", "orders-1")
    kube.put_pod(make_pod("orders-9", ip="10.0.0.9"))
    kube.compact()  # ... for longer than the API server's event window
    kube.paused = False
    kube.drop_watches()  # then the stream drops; resuming from the old version gets 410 Gone
    eventually(lambda: sorted(etcd_addresses(gateway, keys, "cluster-1")) == ["orders-2", "orders-3", "orders-4",
                                                                             "orders-9"], 10, "reconcile")
    assert reflector.relists == 2


def test_stream_drop_resumes_without_relisting(kube: FakeKubeApi, publisher, gateway: EtcdGateway,
                                               keys: Keys) -> None:
    kube.put_pod(make_pod("orders-0"))
    agent = publisher()
    kube.drop_watches()
    kube.put_pod(make_pod("orders-1", ip="10.0.0.2"))
    eventually(lambda: "orders-1" in etcd_addresses(gateway, keys, "cluster-1"), 10, "event after the drop")
    assert agent.source.pods[0].relists == 1


def test_initial_sync_deletes_leftovers_but_never_other_clusters(kube: FakeKubeApi, publisher, gateway: EtcdGateway,
                                                                 keys: Keys) -> None:
    put_record(gateway, keys, record("ghost", cluster="cluster-1", address="10.9.9.9"))  # from a previous run
    put_record(gateway, keys, record("theirs", cluster="cluster-10", address="10.8.8.8"))  # cluster-1 is a prefix!
    kube.put_pod(make_pod("orders-a"))
    publisher()
    assert list(etcd_addresses(gateway, keys, "cluster-1")) == ["orders-a"]
    assert list(etcd_addresses(gateway, keys, "cluster-10")) == ["theirs-10-8-8-8"]


def test_two_clusters_side_by_side(tmp_path: Path, publisher, gateway: EtcdGateway, keys: Keys) -> None:
    apis = [FakeKubeApi(bookmark_interval=0.3) for _ in range(2)]
    try:
        for n, api in enumerate(apis, start=1):
            api.put_pod(make_pod(f"orders-{n}", ip=f"10.{n}.0.1"))
        first = publisher("cluster-1", kubeconfig=str(apis[0].kubeconfig(tmp_path / "k1")))
        publisher("cluster-2", kubeconfig=str(apis[1].kubeconfig(tmp_path / "k2")))
        apis[0].expire_watches()  # cluster-1 re-lists and reconciles ...
        eventually(lambda: first.source.pods[0].relists == 2, 10, "re-list")
        apis[1].put_pod(make_pod("orders-2b", ip="10.2.0.2"))
        eventually(lambda: len(etcd_addresses(gateway, keys, "cluster-2")) == 2, 5, "cluster-2 change")
        assert etcd_addresses(gateway, keys, "cluster-1") == {"orders-1": "10.1.0.1:50002"}  # ... touching only its own
        assert cluster_info(gateway, keys, "cluster-1") is not None
        assert cluster_info(gateway, keys, "cluster-2") is not None
    finally:
        for api in apis:
            api.close()


def test_unchanged_values_are_not_rewritten(kube: FakeKubeApi, publisher, gateway: EtcdGateway, keys: Keys) -> None:
    for i in range(3):
        kube.put_pod(make_pod(f"orders-{i}", ip=f"10.0.0.{i + 1}"))
    agent = publisher()
    key = keys.endpoint("cluster-1", "default", "orders", "orders-0")

    def mod_revision() -> int:
        return int(gateway.call("get", lambda c: c.get(key))[1].mod_revision)

    before = mod_revision()
    kube.put_pod(make_pod("orders-0", ip="10.0.0.1", labels={"unrelated": "change"}))  # same record
    kube.expire_watches()
    eventually(lambda: agent.source.pods[0].relists == 2, 10, "re-list")
    time.sleep(0.3)  # give a (wrong) rewrite the chance to happen
    assert mod_revision() == before


def test_lease_revoked_externally_is_re_registered(kube: FakeKubeApi, publisher, gateway: EtcdGateway,
                                                   keys: Keys) -> None:
    kube.put_pod(make_pod("orders-a"))
    publisher(lease_ttl=3.0)
    key = keys.endpoint("cluster-1", "default", "orders", "orders-a")
    lease = gateway.call("get", lambda c: c.get(key))[1].lease_id
    gateway.revoke(lease)
    assert gateway.get(key) is None
    eventually(lambda: gateway.get(key) is not None and gateway.get(keys.info("cluster-1")) is not None, 10,
               "re-registration")


def test_etcd_restart(kube: FakeKubeApi, publisher, tmp_path: Path, prefix: str) -> None:
    own = LocalEtcd(tmp_path / "etcd").start()
    settings = make_settings(own.endpoint, prefix, etcdTimeout="1s")
    gateway = EtcdGateway(settings.etcd)
    keys = Keys(prefix)
    try:
        kube.put_pod(make_pod("orders-a"))
        publisher(settings_override=settings, lease_ttl=4.0)
        own.kill()
        kube.put_pod(make_pod("orders-b", ip="10.0.0.2"))  # happens while etcd is down
        time.sleep(1.0)
        own.start()
        eventually(lambda: sorted(etcd_addresses(gateway, keys, "cluster-1")) == ["orders-a", "orders-b"], 20,
                   "convergence after the restart")
    finally:
        gateway.close()
        own.cleanup()


def test_zone_follows_node_labels_and_works_without_node_permission(kube: FakeKubeApi, publisher,
                                                                     gateway: EtcdGateway, keys: Keys) -> None:
    kube.put_node(make_node("node-1", zone="z1"))
    kube.put_pod(make_pod("orders-a"))
    publisher()
    key = keys.endpoint("cluster-1", "default", "orders", "orders-a")
    assert etcd_records(gateway, keys, "cluster-1")[key].zone == "z1"
    kube.put_node(make_node("node-1", zone="z2"))
    eventually(lambda: etcd_records(gateway, keys, "cluster-1")[key].zone == "z2", 5, "zone change")


def test_no_node_permission_leaves_zone_empty(kube: FakeKubeApi, publisher, gateway: EtcdGateway, keys: Keys) -> None:
    kube.forbidden.add("nodes")
    kube.put_pod(make_pod("orders-a"))
    publisher()
    records = etcd_records(gateway, keys, "cluster-1")
    assert [r.zone for r in records.values()] == [""]


def test_namespaces_filter(kube: FakeKubeApi, publisher, gateway: EtcdGateway, keys: Keys) -> None:
    kube.put_pod(make_pod("a", namespace="team-a"))
    kube.put_pod(make_pod("b", namespace="team-b", ip="10.0.0.2"))
    kube.put_pod(make_pod("c", namespace="team-c", ip="10.0.0.3"))
    publisher(namespaces=("team-a", "team-b"))
    assert sorted(etcd_addresses(gateway, keys, "cluster-1")) == ["a", "b"]
    kube.put_pod(make_pod("c2", namespace="team-c", ip="10.0.0.4"))
    kube.put_pod(make_pod("b2", namespace="team-b", ip="10.0.0.5"))
    eventually(lambda: sorted(etcd_addresses(gateway, keys, "cluster-1")) == ["a", "b", "b2"], 5, "b2 only")


def test_invalid_pods_are_skipped_counted_and_never_written(kube: FakeKubeApi, publisher, gateway: EtcdGateway,
                                                            keys: Keys) -> None:
    def skipped(code: str) -> float:
        return REGISTRY.get_sample_value("dapr_nr_publisher_skipped_total", {"reason": code}) or 0.0

    before = skipped("invalid_appid"), skipped("no_ip")
    kube.put_pod(make_pod("evil", app_id="../../clusters/cluster-2/info"))
    kube.put_pod(make_pod("noip", ip=None))
    kube.put_pod(make_pod("good"))
    publisher()
    assert list(etcd_addresses(gateway, keys, "cluster-1")) == ["good"]
    assert skipped("invalid_appid") == before[0] + 1
    assert skipped("no_ip") == before[1] + 1
    _, pages = gateway.list_prefix(keys.root)
    # Only its own ranges — and, without RBAC, the registry identity if no 'registry init' created it.
    assert all(k.decode().startswith((keys.cluster_apps("cluster-1"), keys.cluster_meta("cluster-1")))
               or k.decode() == keys.identity() for page in pages for k, _, _ in page)


def test_forbidden_pods_are_retried_until_rbac_is_fixed(kube: FakeKubeApi, publisher, gateway: EtcdGateway,
                                                        keys: Keys) -> None:
    kube.forbidden.add("pods")
    kube.put_pod(make_pod("orders-a"))
    agent = publisher(wait=False)
    eventually(lambda: kube.requests["list pods"] >= 1, 10, "a refused list")
    assert not agent.synced.is_set()
    kube.forbidden.discard("pods")  # the operator fixes the ClusterRole
    assert agent.synced.wait(15)
    assert list(etcd_addresses(gateway, keys, "cluster-1")) == ["orders-a"]
