"""The publisher's Kubernetes side against a real kube-apiserver: what it lists, watches, skips and is refused.

These scenarios were played against the HTTP fake (tests/support/fake_kube.py) until a real
server could play them: the initial sync, pod changes test_real_apiserver_pods.py does not
make, zones from node labels, the namespaces filter, pods with bad data, a dropped and a
silent watch stream, two clusters side by side, and the publisher short of one permission.

The publisher runs in-process as a ServiceAccount of its own (a bound token; a ClusterRole
granting what deploy/base grants, cut down by the permission tests), so the server's audit
log tells its requests from the test's. It reaches the server through a TCP proxy the test
can drop (every open connection ends) or stall (every open connection silent, as half-open TCP).

What differed from the fake: the server refuses a label value with a ``/`` (the fake stored the
hostile app id ``../../clusters/cluster-2/info`` as a label; here it comes as the annotation the
publisher falls back to), and it deletes a pod bound to a node only gracefully (the fake was
handed a ``deletionTimestamp``; test_real_apiserver_pods plays the real sequence).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from kubernetes import client as k8s
from prometheus_client import REGISTRY

from resolver.etcd.gateway import EtcdGateway
from resolver.publisher import kube_source
from resolver.records.schema import Keys
from tests.conftest import eventually, put_record, record
from tests.support.kube_apiserver import KubeApiServer, running, through
from tests.support.kubelet import Kubelet, pod_manifest
from tests.support.publishing import cluster_info, etcd_addresses, etcd_records
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.xdist_group("kube-apiserver-sources")

ACCOUNT = "sources-publisher"
PUBLISHER = f"system:serviceaccount:default:{ACCOUNT}"
GRANTS: dict[str, dict[str, Any]] = {
    "pods": {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    "nodes": {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
    "namespaces": {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["kube-system"], "verbs": ["get"]},
}
"""deploy/base/publisher-rbac.yaml's rules, one resource each (test_real_apiserver_rbac applies the file itself)."""


def grant(kube_api: KubeApiServer, *resources: str) -> None:
    """The publisher's ClusterRole, with only the rules for ``resources``."""
    kube_api.apply(yaml.safe_dump({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                   "metadata": {"name": ACCOUNT}, "rules": [GRANTS[r] for r in resources]}),
                   "--force-conflicts")


@pytest.fixture(scope="module")
def account(kube_api: KubeApiServer) -> None:
    """The publisher's ServiceAccount, bound to its ClusterRole (every grant)."""
    kube_api.apply(yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ACCOUNT, "namespace": "default"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": ACCOUNT},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ACCOUNT},
         "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": "default"}]}]))
    grant(kube_api, *GRANTS)


@pytest.fixture
def role(kube_api: KubeApiServer, account: None) -> Iterator[Callable[..., None]]:
    """Takes grants away from the publisher's ClusterRole (every grant is given back after the test)."""
    changed = []

    def only(*resources: str) -> None:
        changed.append(resources)
        grant(kube_api, *resources)

    yield only
    if changed:
        grant(kube_api, *GRANTS)


@pytest.fixture
def kubeconfig(kube_api: KubeApiServer, account: None, proxy: TcpProxy, tmp_path: Path) -> Path:
    """The ServiceAccount's bound token, through the proxy."""
    return through(kube_api.token_kubeconfig("default", ACCOUNT, tmp_path / "publisher.kubeconfig"), proxy)


@pytest.fixture(scope="module")
def other_kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    """A second cluster's API server: another etcd, another kube-system UID."""
    yield from running(tmp_path_factory.mktemp("other-kube-apiserver"))


def published(gateway: EtcdGateway, keys: Keys, cluster: str = "cluster-1") -> dict[str, str]:
    return etcd_addresses(gateway, keys, cluster)


def requests(kube_api: KubeApiServer, verb: str, resource: str, code: int | None = None) -> list[dict[str, Any]]:
    """The publisher's completed requests, as the server's audit log has them."""
    return [e for e in kube_api.audit_events(PUBLISHER) if e["verb"] == verb and e["stage"] == "ResponseComplete"
            and (e.get("objectRef") or {}).get("resource") == resource
            and (code is None or e.get("responseStatus", {}).get("code") == code)]


def relist_by_a_410(kube_api: KubeApiServer, proxy: TcpProxy, while_cut: Callable[[], None]) -> None:
    """Cut the publisher off, change things, compact the server's etcd and restart it: the
    publisher's resourceVersion is gone when it comes back (as test_real_apiserver_pods shows)."""
    proxy.drop(refuse=True)  # the open connections end (a cut would leave a watch silent till its read timeout)
    while_cut()
    kube_api.etcd.etcdctl("compact", str(kube_api.etcd_revision()))
    kube_api.restart()
    proxy.restore()


def test_initial_sync_publishes_exactly_the_ready_dapr_pods(kube_api: KubeApiServer, kubelet: Kubelet, publisher,
                                                           gateway: EtcdGateway, keys: Keys) -> None:
    kube_api.ensure_namespace("shop")
    kubelet.label_node("node-1", "eu-1a")
    kubelet.run_pod("orders-a", "10.0.0.1")
    kubelet.run_pod("orders-b", "10.0.0.2", port=50010)
    kubelet.run_pod("orders-c", "10.0.0.3", ready=False)
    kubelet.run_pod("plain", "10.0.0.4", sidecar=False)  # no Dapr sidecar: the server does not even send it
    kubelet.run_pod("private", "10.0.0.5", annotations={"nameresolution.dapr.io/export": "false"})
    kubelet.run_pod("payments-a", "fd00::5", app_id="payments", namespace="shop")
    lists = len(requests(kube_api, "list", "pods"))
    started = time.time()
    agent = publisher()
    assert published(gateway, keys) == {"orders-a": "10.0.0.1:50002", "orders-b": "10.0.0.2:50010",
                                        "payments-a": "[fd00::5]:50002"}
    assert etcd_records(gateway, keys, "cluster-1")[keys.endpoint("cluster-1", "default", "orders", "orders-a")] \
        .zone == "eu-1a"
    info = cluster_info(gateway, keys, "cluster-1")
    assert info is not None and info.endpoints == 3 and info.lease_ttl == 5
    assert info.synced_at >= started - 1
    kube_system = kube_api.core().read_namespace("kube-system").metadata
    assert kube_system is not None and agent.cluster_uid == info.cluster_uid == kube_system.uid
    eventually(lambda: len(requests(kube_api, "list", "pods")) > lists, 10, "the list in the audit log")
    listed = requests(kube_api, "list", "pods")[lists:]
    assert len(listed) == 1, "one list, then watches"
    query = parse_qs(urlparse(listed[0]["requestURI"]).query)
    assert query["labelSelector"] == ["dapr.io/sidecar-injected=true"], "the server does the selecting"


def raw(manifest: dict[str, Any]) -> Any:
    """A manifest as the client takes it (it sends a dict as it is)."""
    return manifest


def _label(kubelet: Kubelet, name: str, labels: dict[str, str]) -> None:
    kubelet.core.patch_namespaced_pod(name, "default", {"metadata": {"labels": labels}})


def test_a_new_pod_a_new_ip_the_selector_and_the_app_id_label_follow(kubelet: Kubelet, publisher,
                                                                     gateway: EtcdGateway, keys: Keys) -> None:
    """What test_real_apiserver_pods does not change: readiness, termination and opt-out are its."""
    kubelet.run_pod("orders-a", "10.0.0.1")
    publisher()
    kubelet.run_pod("orders-b", "10.0.0.2")
    eventually(lambda: published(gateway, keys) == {"orders-a": "10.0.0.1:50002", "orders-b": "10.0.0.2:50002"},
               30, "a new pod")
    kubelet.set_status("orders-b", "10.0.0.22")  # a new sandbox, a new IP
    eventually(lambda: published(gateway, keys).get("orders-b") == "10.0.0.22:50002", 30, "the new IP")
    _label(kubelet, "orders-a", {"dapr.io/sidecar-injected": "false"})
    eventually(lambda: "orders-a" not in published(gateway, keys), 30, "the selector drops it: the server says DELETED")
    _label(kubelet, "orders-a", {"dapr.io/sidecar-injected": "true"})
    eventually(lambda: "orders-a" in published(gateway, keys), 30, "it matches again: ADDED")
    _label(kubelet, "orders-a", {"dapr.io/app-id": "orders-v2"})
    eventually(lambda: sorted(etcd_records(gateway, keys, "cluster-1")) == sorted([
        keys.endpoint("cluster-1", "default", "orders-v2", "orders-a"),
        keys.endpoint("cluster-1", "default", "orders", "orders-b")]), 30, "an app id change moves the key")
    kubelet.finish_deletion("orders-a")
    kubelet.finish_deletion("orders-b")
    eventually(lambda: published(gateway, keys) == {}, 30, "deleted")


def test_the_zone_follows_the_node_labels(kube_api: KubeApiServer, kubelet: Kubelet, publisher,
                                          gateway: EtcdGateway, keys: Keys) -> None:
    kubelet.label_node("node-7", "z1")
    kubelet.run_pod("orders-a", "10.0.0.1", node="node-7")
    publisher()
    key = keys.endpoint("cluster-1", "default", "orders", "orders-a")

    def zone() -> str:
        return etcd_records(gateway, keys, "cluster-1")[key].zone

    assert zone() == "z1"
    kubelet.label_node("node-7", "z2")
    eventually(lambda: zone() == "z2", 30, "the new zone")
    kube_api.core().delete_node("node-7")
    eventually(lambda: zone() == "", 30, "no node, no zone")


def test_without_permission_to_read_nodes_zones_stay_empty(role: Callable[..., None], kubelet: Kubelet, publisher,
                                                           gateway: EtcdGateway, keys: Keys) -> None:
    role("pods", "namespaces")
    kubelet.label_node("node-1", "eu-1a")
    kubelet.run_pod("orders-a", "10.0.0.1")
    publisher()
    assert [(r.instance, r.zone) for r in etcd_records(gateway, keys, "cluster-1").values()] == [("orders-a", "")]


def test_a_forbidden_pod_list_is_retried_until_the_role_is_fixed(
        kube_api: KubeApiServer, role: Callable[..., None], kubelet: Kubelet, publisher, gateway: EtcdGateway,
        keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube_source, "FORBIDDEN_RETRY_SECONDS", 0.5)  # 5 s in production
    role("nodes", "namespaces")
    kubelet.run_pod("orders-a", "10.0.0.1")
    refused = len(requests(kube_api, "list", "pods", 403))
    agent = publisher(wait=False)
    eventually(lambda: len(requests(kube_api, "list", "pods", 403)) >= refused + 2, 30, "refused lists, retried")
    assert not agent.synced.is_set() and published(gateway, keys) == {}
    role(*GRANTS)  # the operator fixes the ClusterRole
    assert agent.synced.wait(30)
    assert published(gateway, keys) == {"orders-a": "10.0.0.1:50002"}


def test_without_permission_to_read_kube_system_the_guard_is_off_with_one_warning(
        role: Callable[..., None], kubelet: Kubelet, publisher, caplog: pytest.LogCaptureFixture) -> None:
    role("pods", "nodes")
    kubelet.run_pod("orders-a", "10.0.0.1")
    with caplog.at_level(logging.WARNING):
        agent = publisher()
    assert agent.cluster_uid == ""
    warnings = [r.getMessage() for r in caplog.records if "kube-system" in r.getMessage()]
    assert len(warnings) == 1 and "--cluster-uid" in warnings[0] and "namespaces" in warnings[0], warnings
    assert "403" in warnings[0] or "Forbidden" in warnings[0], warnings


def test_the_namespaces_filter(kube_api: KubeApiServer, kubelet: Kubelet, publisher, gateway: EtcdGateway,
                               keys: Keys) -> None:
    for namespace in ("team-a", "team-b", "team-c"):
        kube_api.ensure_namespace(namespace)
    kubelet.run_pod("a", "10.0.0.1", namespace="team-a")
    kubelet.run_pod("b", "10.0.0.2", namespace="team-b")
    kubelet.run_pod("c", "10.0.0.3", namespace="team-c")
    before = len(kube_api.audit_events(PUBLISHER))
    publisher(namespaces=("team-a", "team-b"))
    assert sorted(published(gateway, keys)) == ["a", "b"]
    kubelet.run_pod("c2", "10.0.0.4", namespace="team-c")
    kubelet.run_pod("b2", "10.0.0.5", namespace="team-b")
    eventually(lambda: sorted(published(gateway, keys)) == ["a", "b", "b2"], 30, "b2 only")
    asked = {(e.get("objectRef") or {}).get("namespace") for e in kube_api.audit_events(PUBLISHER)[before:]
             if (e.get("objectRef") or {}).get("resource") == "pods"}
    assert asked == {"team-a", "team-b"}, f"pods asked for beyond the namespaces: {asked}"


def test_pods_with_bad_data_are_skipped_counted_and_never_written(kubelet: Kubelet, publisher, gateway: EtcdGateway,
                                                                 keys: Keys) -> None:
    def skipped(code: str) -> float:
        return REGISTRY.get_sample_value("dapr_nr_publisher_skipped_total", {"reason": code}) or 0.0

    hostile = "../../clusters/cluster-2/info"
    with pytest.raises(k8s.ApiException) as refused:  # the fake took it as a label; no real server does
        kubelet.core.create_namespaced_pod("default", raw(pod_manifest("evil-label", app_id=hostile)))
    assert refused.value.status == 422
    before = skipped("invalid_appid"), skipped("no_ip")
    # Annotations are free text: the annotation the publisher falls back to carries it.
    kubelet.run_pod("evil", "10.0.0.1", app_id=None, annotations={"dapr.io/app-id": hostile})
    kubelet.core.create_namespaced_pod("default", raw(pod_manifest("noip")))  # Ready, yet no IP: the server allows it
    kubelet.core.patch_namespaced_pod_status("noip", "default", {"status": {
        "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
    kubelet.run_pod("good", "10.0.0.3")
    publisher()
    assert list(published(gateway, keys)) == ["good"]
    assert skipped("invalid_appid") == before[0] + 1
    assert skipped("no_ip") == before[1] + 1
    _, pages = gateway.list_prefix(keys.root)
    # Only its own ranges — and, without RBAC, the registry identity if no 'registry init' created it.
    assert all(k.decode().startswith((keys.cluster_apps("cluster-1"), keys.cluster_meta("cluster-1")))
               or k.decode() == keys.identity() for page in pages for k, _, _ in page)


def test_a_dropped_stream_resumes_from_its_version_without_relisting(kube_api: KubeApiServer, kubelet: Kubelet,
                                                                     publisher, proxy: TcpProxy,
                                                                     gateway: EtcdGateway, keys: Keys) -> None:
    kubelet.run_pod("orders-0", "10.0.0.1")
    lists = len(requests(kube_api, "list", "pods"))
    reflector = publisher().source.pods[0]
    proxy.drop()  # every open connection ends mid-stream; new ones go through
    kubelet.run_pod("orders-1", "10.0.0.2")
    eventually(lambda: "orders-1" in published(gateway, keys), 30, "the event after the drop")
    assert reflector.resumes >= 1, "the drop was noticed"
    assert reflector.relists == 1 and len(requests(kube_api, "list", "pods")) == lists + 1, "resumed, not re-listed"


def test_a_silent_watch_is_noticed_and_resumed_from_the_last_version(
        kubelet: Kubelet, publisher, proxy: TcpProxy, gateway: EtcdGateway, keys: Keys,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Half-open TCP: the stream stays open but nothing (not even a bookmark) arrives.

    Only the watch's read timeout can notice it: the watch itself lasts 300 s. An idle real
    watch is silent too between bookmarks (about one a minute), so at a 1.5 s bound the
    publisher also resumes idle watches; what this shows is that a stalled one costs no more.
    """
    monkeypatch.setattr(kube_source, "WATCH_SILENCE_SECONDS", 1.5)  # production: 90 s (bookmarks ~60 s)
    caplog.set_level(logging.INFO, logger="resolver.publisher.kube_source")
    kubelet.run_pod("orders-0", "10.0.0.1")
    reflector = publisher().source.pods[0]
    assert reflector.silence == 1.5
    resumed = reflector.resumes
    proxy.stall()  # the open stream goes silent without closing
    went_silent = time.monotonic()
    kubelet.run_pod("orders-1", "10.0.0.2")
    eventually(lambda: "orders-1" in published(gateway, keys), 30, "the event, over a new watch")
    # by the 1.5 s silence bound, not the 300 s watch: generous for a loaded machine
    assert time.monotonic() - went_silent <= 1.5 + 8.5
    assert reflector.resumes > resumed and reflector.relists == 1  # resumed from the last resourceVersion
    eventually(lambda: any("answers pod requests again" in r.getMessage() and "resumed the watch" in r.getMessage()
                           for r in caplog.records), 10, "a recovery line")


def test_a_stopped_publisher_says_nothing_more_when_its_watches_end(
        kubelet: Kubelet, publisher, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Stopping does not close an open watch: it ends at its read timeout (or when the server goes),
    which a stopped source must not report as a failure. The fake closed every stream at the end
    of each test, so the warnings went unseen; a real server's open watches outlive the test and
    their warnings spilled into the next tests' logs."""
    monkeypatch.setattr(kube_source, "WATCH_SILENCE_SECONDS", 1.5)
    kubelet.run_pod("orders-0", "10.0.0.1")
    agent = publisher()
    source = agent.source
    assert isinstance(source, kube_source.KubernetesSource)
    caplog.set_level(logging.DEBUG, logger="resolver.publisher.kube_source")
    agent.stop()
    caplog.clear()
    eventually(lambda: not any(thread.is_alive() for thread in source._threads), 30, "the source's threads to end")
    assert [r.getMessage() for r in caplog.records if r.name == "resolver.publisher.kube_source"] == []


def test_unchanged_values_are_not_rewritten_by_events_or_a_relist(kube_api: KubeApiServer, kubelet: Kubelet,
                                                                  publisher, proxy: TcpProxy, gateway: EtcdGateway,
                                                                  keys: Keys) -> None:
    for i in range(3):
        kubelet.run_pod(f"orders-{i}", f"10.0.0.{i + 1}")
    reflector = publisher().source.pods[0]
    key = keys.endpoint("cluster-1", "default", "orders", "orders-0")

    def mod_revision() -> int:
        return int(gateway.call("get", lambda c: c.get(key))[1].mod_revision)

    before = mod_revision()
    _label(kubelet, "orders-0", {"unrelated": "change"})  # MODIFIED: a new resourceVersion, the same record
    kubelet.set_status("orders-0", "10.0.0.1")  # the kubelet reports the same status again
    relist_by_a_410(kube_api, proxy, lambda: _label(kubelet, "orders-1", {"unrelated": "while-cut"}))
    eventually(lambda: reflector.relists == 2, 60, "the re-list")
    kubelet.run_pod("orders-9", "10.0.0.9")  # events arrive in order: once this one is in, the others were handled
    eventually(lambda: "orders-9" in published(gateway, keys), 30, "a later event")
    assert mod_revision() == before


def test_two_clusters_side_by_side(kube_api: KubeApiServer, other_kube_api: KubeApiServer, kubelet: Kubelet,
                                   publisher, proxy: TcpProxy, gateway: EtcdGateway, keys: Keys) -> None:
    other = Kubelet(other_kube_api.core())
    try:
        put_record(gateway, keys, record("ghost", cluster="cluster-1", address="10.9.9.9"))  # from a previous run
        kubelet.run_pod("orders-1", "10.1.0.1")
        kubelet.run_pod("orders-1b", "10.1.0.2")
        other.run_pod("orders-2", "10.2.0.1")
        first = publisher("cluster-1")
        second = publisher("cluster-2", kubeconfig=str(other_kube_api.admin_kubeconfig))
        assert published(gateway, keys) == {"orders-1": "10.1.0.1:50002", "orders-1b": "10.1.0.2:50002"}
        uids = [api.core().read_namespace("kube-system").metadata.uid  # type: ignore[union-attr]
                for api in (kube_api, other_kube_api)]
        assert [first.cluster_uid, second.cluster_uid] == uids and uids[0] != uids[1], "one identity per cluster"
        relist_by_a_410(kube_api, proxy, lambda: kubelet.finish_deletion("orders-1b"))  # cluster-1 re-lists ...
        eventually(lambda: first.source.pods[0].relists == 2, 60, "cluster-1's re-list")
        eventually(lambda: published(gateway, keys) == {"orders-1": "10.1.0.1:50002"}, 30, "reconciled")
        other.run_pod("orders-2b", "10.2.0.2")
        eventually(lambda: published(gateway, keys, "cluster-2") == {"orders-2": "10.2.0.1:50002",
                                                                     "orders-2b": "10.2.0.2:50002"}, 30,
                   "... touching only its own; cluster-2 follows its own server")
        assert second.source.pods[0].relists == 1
        assert cluster_info(gateway, keys, "cluster-1") is not None
        assert cluster_info(gateway, keys, "cluster-2") is not None
    finally:
        other.delete_all(sorted(other.namespaces))
