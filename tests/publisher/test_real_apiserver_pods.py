"""The publisher's pod scenarios against a real kube-apiserver (the in-process agent, real etcd).

The same scenarios tests/publisher/test_publisher.py plays against the HTTP fake, here with the
server nobody on this project wrote: its validation, its watch cache, its bookmarks, its graceful
deletion, its ``410 Gone``. The test plays the kubelet (tests/support/kubelet.py). The publisher
reaches the server through a TCP proxy the test can cut, as a network partition would.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from resolver.etcd.gateway import EtcdGateway
from resolver.publisher import kube_source
from resolver.records.schema import Keys
from tests.conftest import eventually
from tests.support.kube_apiserver import KubeApiServer, through
from tests.support.kubelet import Kubelet
from tests.support.publishing import etcd_addresses, etcd_records
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.xdist_group("kube-apiserver-pods")

ADMIN = "test-admin"


@pytest.fixture
def kubeconfig(kube_api: KubeApiServer, proxy: TcpProxy, tmp_path: Path) -> Path:
    """The admin kubeconfig, through the proxy (the publisher's permissions are test_real_apiserver_rbac's)."""
    path = tmp_path / "publisher.kubeconfig"
    path.write_text(kube_api.admin_kubeconfig.read_text())
    return through(path, proxy)


def published(gateway: EtcdGateway, keys: Keys) -> dict[str, str]:
    return etcd_addresses(gateway, keys, "cluster-1")


def test_ready_flapping_termination_and_opt_out_follow(kubelet: Kubelet, publisher, gateway: EtcdGateway,
                                                       keys: Keys) -> None:
    kubelet.run_pod("orders-a", "10.0.0.1")
    kubelet.run_pod("orders-b", "10.0.0.2", ready=False)
    publisher()
    assert published(gateway, keys) == {"orders-a": "10.0.0.1:50002"}
    for _ in range(5):  # the kubelet's readiness probe flaps
        kubelet.set_status("orders-b", "10.0.0.2", ready=True)
        kubelet.set_status("orders-b", "10.0.0.2", ready=False)
    kubelet.set_status("orders-b", "10.0.0.2", ready=True)
    eventually(lambda: published(gateway, keys) == {"orders-a": "10.0.0.1:50002", "orders-b": "10.0.0.2:50002"},
               30, "the last of the flaps")

    kubelet.delete("orders-b", grace_seconds=30)  # the server marks it; the pod still exists
    marked = kubelet.core.read_namespaced_pod("orders-b", "default").metadata
    assert marked is not None and marked.deletion_timestamp is not None
    assert marked.deletion_grace_period_seconds == 30
    eventually(lambda: "orders-b" not in published(gateway, keys), 30, "a terminating pod withdrawn at once")
    kubelet.finish_deletion("orders-b")

    kubelet.annotate("orders-a", {"nameresolution.dapr.io/export": "false"})
    eventually(lambda: published(gateway, keys) == {}, 30, "opted out")
    kubelet.annotate("orders-a", {"nameresolution.dapr.io/export": None})
    eventually(lambda: published(gateway, keys) == {"orders-a": "10.0.0.1:50002"}, 30, "opted back in")


def test_internal_port_rules_and_dual_stack(kubelet: Kubelet, publisher, gateway: EtcdGateway, keys: Keys) -> None:
    kubelet.run_pod("named-port", "10.0.0.1", port=50010)
    kubelet.run_pod("annotated", "10.0.0.2", annotations={"dapr.io/internal-grpc-port": "50020"})
    kubelet.run_pod("both", "10.0.0.3", port=50030, annotations={"dapr.io/internal-grpc-port": "50020"})
    kubelet.run_pod("default-port", "10.0.0.4")
    kubelet.run_pod("dual", ["10.0.0.5", "fd00::5"])
    kubelet.run_pod("no-app-id", "10.0.0.6", app_id=None)
    publisher()
    records = etcd_records(gateway, keys, "cluster-1")
    assert published(gateway, keys) == {"named-port": "10.0.0.1:50010", "annotated": "10.0.0.2:50020",
                                        "both": "10.0.0.3:50030", "default-port": "10.0.0.4:50002",
                                        "dual": "10.0.0.5:50002", "dual-v6": "[fd00::5]:50002"}
    assert {r.instance for r in records.values() if r.app_id == "orders"} == set(published(gateway, keys))


def test_500_pods_created_at_once_are_all_published(kubelet: Kubelet, publisher, gateway: EtcdGateway,
                                                    keys: Keys) -> None:
    publisher()
    kubelet.run_pods([(f"burst-{i}", f"10.1.{i // 250}.{i % 250 + 1}") for i in range(500)])
    eventually(lambda: len(published(gateway, keys)) == 500, 120, "500 records")
    assert published(gateway, keys)["burst-499"] == "10.1.1.250:50002"


def _watch_requests(kube_api: KubeApiServer) -> list[dict[str, list[str]]]:
    return [parse_qs(urlparse(event["requestURI"]).query) for event in kube_api.audit_events(ADMIN)
            if event["verb"] == "watch" and (event.get("objectRef") or {}).get("resource") == "pods"
            and event["stage"] == "ResponseStarted"]


def test_a_compacted_version_gets_a_real_410_and_the_relist_reconciles(
        kube_api: KubeApiServer, kubelet: Kubelet, publisher, proxy: TcpProxy, gateway: EtcdGateway, keys: Keys,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The cut is silent on the publisher's side (as a partition is): its silence timeout notices it."""
    monkeypatch.setattr(kube_source, "WATCH_SILENCE_SECONDS", 3.0)  # 90 s in production
    for i in range(4):
        kubelet.run_pod(f"orders-{i}", f"10.0.0.{i + 1}")
    agent = publisher()
    reflector = agent.source.pods[0]
    proxy.cut()  # a partition: the publisher's watch breaks and its retries fail
    kubelet.finish_deletion("orders-0")
    kubelet.finish_deletion("orders-1")
    kubelet.run_pod("orders-9", "10.0.0.9")
    kube_api.etcd.etcdctl("compact", str(kube_api.etcd_revision()))
    kube_api.restart()  # its watch cache starts again at the compacted revision: older versions are gone
    proxy.restore()
    eventually(lambda: sorted(published(gateway, keys)) == ["orders-2", "orders-3", "orders-9"], 60,
               "the re-list reconciles what vanished while cut off")
    assert reflector.relists == 2, "the old resourceVersion was answered 410 Gone and the publisher re-listed"


def test_an_api_server_restart_mid_watch_loses_no_record(kube_api: KubeApiServer, kubelet: Kubelet, publisher,
                                                         gateway: EtcdGateway, keys: Keys) -> None:
    for i in range(3):
        kubelet.run_pod(f"orders-{i}", f"10.0.0.{i + 1}")
    publisher()
    kube_api.stop()
    assert len(published(gateway, keys)) == 3, "records stay while the API server is down"
    kube_api.start()
    kubelet.run_pod("orders-3", "10.0.0.4")
    kubelet.finish_deletion("orders-0")
    eventually(lambda: sorted(published(gateway, keys)) == ["orders-1", "orders-2", "orders-3"], 60,
               "changes after the restart")


def test_bookmarks_keep_the_watch_version_fresh(kube_api: KubeApiServer, kubelet: Kubelet, publisher,
                                                monkeypatch: pytest.MonkeyPatch, gateway: EtcdGateway,
                                                keys: Keys) -> None:
    """Pods without a sidecar change, so no event reaches the publisher; bookmarks still carry the version.

    The server sends a bookmark about once a minute and 2 s before a watch's ``timeoutSeconds``
    (k8s.io/apiserver's cacheWatcher.nextBookmarkTime); a 5 s watch makes that quick to see.
    """
    monkeypatch.setattr(kube_source, "WATCH_SECONDS", 5)
    kubelet.run_pod("orders-a", "10.0.0.1")
    publisher()
    listed_at = kube_api.etcd_revision()
    for i in range(5):
        kubelet.run_pod(f"plain-{i}", f"10.0.1.{i + 1}", sidecar=False)
    moved_on = kube_api.etcd_revision()
    assert moved_on > listed_at

    def resumed_past_the_plain_pods() -> bool:
        versions = [int(q["resourceVersion"][0]) for q in _watch_requests(kube_api) if "resourceVersion" in q]
        return any(v >= moved_on for v in versions)

    eventually(resumed_past_the_plain_pods, 90, "a watch resumed from a bookmark's resourceVersion")
    assert all(q.get("allowWatchBookmarks") == ["true"] for q in _watch_requests(kube_api))
    assert published(gateway, keys) == {"orders-a": "10.0.0.1:50002"}
