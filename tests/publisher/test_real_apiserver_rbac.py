"""The publisher with exactly the permissions deploy/base grants, against a real kube-apiserver.

The overlay is applied to the server (``kubectl apply --server-side``, as docs/deploy.md says),
the publisher runs as a real ``publish`` process holding a bound token of the overlay's
ServiceAccount, and the server's audit log says what it asked for and what it was answered:
every request allowed, and nothing asked beyond list/watch pods and nodes and get of the
``kube-system`` Namespace. Then each permission is taken away in turn, and the publisher must
say so in its own words (a log line naming what to grant), never with a traceback.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from resolver.demo.processes import CliProcess
from resolver.etcd.gateway import EtcdGateway
from resolver.records.schema import Keys
from tests.conftest import eventually
from tests.support.kube_apiserver import KubeApiServer
from tests.support.kubelet import Kubelet
from tests.support.manifests import kustomize
from tests.support.publishing import cluster_info, etcd_addresses

pytestmark = pytest.mark.xdist_group("kube-apiserver-rbac")

ROOT = Path(__file__).resolve().parents[2]
PUBLISHER = "system:serviceaccount:dapr-nr-system:dapr-etcd-publisher"
ALLOWED = {("list", "pods", ""), ("watch", "pods", ""), ("list", "nodes", ""), ("watch", "nodes", ""),
           ("get", "namespaces", "kube-system")}
"""Everything the publisher may ask of the API server: what publisher-rbac.yaml grants, no more."""


def cluster_role(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "dapr-etcd-publisher")


@pytest.fixture(scope="module")
def applied(kube_api: KubeApiServer) -> list[dict[str, Any]]:
    """The cluster-1 overlay, applied for real (server-side)."""
    objects = kustomize("deploy/overlays/cluster-1")
    out = kube_api.apply(yaml.safe_dump_all(objects))
    assert "clusterrole.rbac.authorization.k8s.io/dapr-etcd-publisher serverside-applied" in out, out
    return objects


@pytest.fixture
def kubeconfig(kube_api: KubeApiServer, applied: list[dict[str, Any]], tmp_path: Path) -> Path:
    """A bound token of the overlay's ServiceAccount, for `spawn` (tests/support/publishing.py)."""
    return kube_api.token_kubeconfig("dapr-nr-system", "dapr-etcd-publisher", tmp_path / "sa.kubeconfig")


def requests_of(events: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    found = set()
    for event in events:
        ref = event.get("objectRef") or {}
        found.add((event["verb"], ref.get("resource", ""), ref.get("name", "") if ref.get("resource") == "namespaces"
                   else ""))
    return found


def test_the_granted_permissions_are_exactly_what_the_publisher_uses(
        kube_api: KubeApiServer, kubelet: Kubelet, spawn: Callable[..., CliProcess], gateway: EtcdGateway,
        keys: Keys) -> None:
    kube_api.ensure_namespace("shop")
    kubelet.label_node("node-1", "eu-1a")
    kubelet.run_pod("orders-a", "10.0.0.1")
    kubelet.run_pod("payments-a", "10.0.0.2", app_id="payments", namespace="shop")
    publisher = spawn(ttl="5s")
    eventually(lambda: etcd_addresses(gateway, keys, "cluster-1") == {
        "orders-a": "10.0.0.1:50002", "payments-a": "10.0.0.2:50002"}, 60, "both namespaces' pods published")
    info = cluster_info(gateway, keys, "cluster-1")
    assert info is not None
    kube_system = kube_api.core().read_namespace("kube-system").metadata
    assert kube_system is not None
    assert info.cluster_uid == kube_system.uid, "the cluster identity is the kube-system Namespace's UID"
    kubelet.run_pod("orders-b", "10.0.0.3")  # the watch, not only the list, carries changes
    eventually(lambda: "orders-b" in etcd_addresses(gateway, keys, "cluster-1"), 30, "a watched pod")
    publisher.stop()

    events = kube_api.audit_events(PUBLISHER)
    refused = [(e["verb"], e.get("requestURI"), e.get("responseStatus", {}).get("code")) for e in events
               if e.get("responseStatus", {}).get("code", 200) >= 400]
    assert not refused, f"requests the server refused: {refused}"
    asked = requests_of(events)
    assert asked <= ALLOWED, f"asked beyond its grant: {sorted(asked - ALLOWED)}"
    assert {("list", "pods", ""), ("watch", "pods", ""), ("get", "namespaces", "kube-system")} <= asked
    assert "Traceback" not in publisher.log_path.read_text()


def _without(role: dict[str, Any], resource: str, verb: str) -> dict[str, Any]:
    reduced = copy.deepcopy(role)
    rules = []
    for rule in reduced["rules"]:
        if resource in rule["resources"] and verb in rule["verbs"]:
            others = [r for r in rule["resources"] if r != resource]
            if others:
                rules.append({**rule, "resources": others})
            if len(rule["verbs"]) > 1:
                rules.append({**rule, "resources": [resource], "verbs": [v for v in rule["verbs"] if v != verb]})
        else:
            rules.append(rule)
    reduced["rules"] = rules
    return reduced


# One permission fewer each: what the publisher says, and whether it still publishes the pods.
FEWER = [
    ("pods", "list", "not allowed to list/watch pods (grant get/list/watch on pods to this service account)", False),
    ("pods", "watch", "not allowed to list/watch pods (grant get/list/watch on pods to this service account)", True),
    ("nodes", "list", "zones stay empty; grant get/list/watch on nodes to publish them", True),
    ("namespaces", "get", "running WITHOUT the one-cluster-one-name guard; grant get on namespaces", True),
]


@pytest.mark.parametrize(("resource", "verb", "said", "publishes"), FEWER,
                         ids=[f"{r}-{v}" for r, v, _, _ in FEWER])
def test_one_permission_fewer_is_named_in_the_publishers_own_words(
        kube_api: KubeApiServer, kubelet: Kubelet, applied: list[dict[str, Any]], spawn: Callable[..., CliProcess],
        gateway: EtcdGateway, keys: Keys, resource: str, verb: str, said: str, publishes: bool) -> None:
    role = cluster_role(applied)
    kubelet.run_pod("orders-a", "10.0.0.1")
    kube_api.apply(yaml.safe_dump(_without(role, resource, verb)), "--force-conflicts")
    try:
        publisher = spawn(ttl="5s")
        eventually(lambda: said in publisher.log_path.read_text(), 60, f"the publisher to say: {said}")
        if publishes:
            eventually(lambda: etcd_addresses(gateway, keys, "cluster-1") == {"orders-a": "10.0.0.1:50002"}, 60,
                       "the pods published all the same")
        else:
            assert etcd_addresses(gateway, keys, "cluster-1") == {}
        assert publisher.alive(), "a missing permission is waited out, not a crash"
        publisher.stop()
        log = publisher.log_path.read_text()
        assert "Traceback" not in log, log
    finally:
        kube_api.apply(yaml.safe_dump(role), "--force-conflicts")
