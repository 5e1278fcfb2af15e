"""Pod → endpoint record, exactly as README "The publisher" says; bad pods are skipped with a reason, never raised."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.publisher.pods import pod_endpoint, slim_pod
from tests.support.fake_kube import make_pod

ZONES = {"node-1": "zone-a"}


def test_a_ready_pod_publishes_its_ip_and_internal_port() -> None:
    found = pod_endpoint(make_pod("orders-1", ip="10.1.2.3", port=50010), "c1", ZONES)
    assert found.record is not None
    assert (found.record.app_id, found.record.namespace, found.record.cluster, found.record.instance) == \
        ("orders", "default", "c1", "orders-1")
    assert (found.record.address, found.record.port, found.record.node, found.record.zone) == \
        ("10.1.2.3", 50010, "node-1", "zone-a")


def test_port_precedence_container_port_then_annotation_then_default() -> None:
    annotated = make_pod("a", annotations={"dapr.io/internal-grpc-port": "50099"})
    assert pod_endpoint(annotated, "c", {}).record.port == 50099  # type: ignore[union-attr]
    both = make_pod("b", port=50011, annotations={"dapr.io/internal-grpc-port": "50099"})
    assert pod_endpoint(both, "c", {}).record.port == 50011  # type: ignore[union-attr]
    assert pod_endpoint(make_pod("c"), "c", {}).record.port == 50002  # type: ignore[union-attr]


def test_app_id_from_annotation_when_label_missing() -> None:
    pod = make_pod("a", app_id=None, annotations={"dapr.io/app-id": "billing"})
    assert pod_endpoint(pod, "c", {}).record.app_id == "billing"  # type: ignore[union-attr]


def test_ipv6_pod() -> None:
    found = pod_endpoint(make_pod("v6", ip="fd00::17"), "c", {})
    assert found.record is not None and found.record.host_port == "[fd00::17]:50002"


@pytest.mark.parametrize(("pod", "reason", "code"), [
    (make_pod("a", ready=False), "not ready", ""),
    (make_pod("a", terminating=True), "terminating", ""),
    (make_pod("a", annotations={"nameresolution.dapr.io/export": "false"}), "opted out", ""),
    (make_pod("a", annotations={"nameresolution.dapr.io/export": "False"}), "opted out", ""),
    (make_pod("a", ip=None), "no pod IP", "no_ip"),
    (make_pod("a", app_id=None), "no dapr.io/app-id", "no_app_id"),
    (make_pod("a", app_id="bad.id"), "invalid appId", "invalid_appid"),
    (make_pod("a", app_id="x/../y"), "invalid appId", "invalid_appid"),
    (make_pod("Bad_Name"), "invalid instance", "invalid_instance"),
    (make_pod("a", namespace="Bad NS"), "invalid namespace", "invalid_namespace"),
    (make_pod("a", annotations={"dapr.io/internal-grpc-port": "http"}), "is not a port", "bad_port"),
    (make_pod("a", port=70000), "invalid port", "invalid_port"),
    (make_pod("a", ip="not-an-ip!"), "invalid address", "invalid_address"),
])
def test_skips(pod, reason: str, code: str) -> None:
    found = pod_endpoint(pod, "c", {})
    assert found.record is None
    assert reason in found.reason
    assert found.code == code


def test_export_true_is_published() -> None:
    assert pod_endpoint(make_pod("a", annotations={"nameresolution.dapr.io/export": "true"}), "c", {}).record


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children,
                                                                                        max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(["metadata", "spec", "status", "metadata.labels", "metadata.annotations",
                             "spec.containers", "status.conditions", "status.podIP", "metadata.name"]),
       garbage=_json)
def test_any_malformed_pod_is_skipped_or_published_never_raised(path: str, garbage: object) -> None:
    pod = copy.deepcopy(make_pod("orders-1"))
    target = pod
    *parents, leaf = path.split(".")
    for part in parents:
        target = target[part]
    target[leaf] = garbage
    found = pod_endpoint(pod, "c", {})
    if found.record is not None:
        found.record.validate()
    assert pod_endpoint(slim_pod(pod), "c", {}) == found, "a slimmed pod must be judged exactly as the whole one"


def test_slimming_keeps_what_decides_and_drops_the_bulk() -> None:
    pod = make_pod("orders-1", port=50010, annotations={"dapr.io/internal-grpc-port": "50020"})
    pod["metadata"]["managedFields"] = [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]
    pod["status"]["containerStatuses"] = [{"name": "daprd", "ready": True}]
    slim = slim_pod(pod)
    assert "managedFields" not in slim["metadata"] and "containerStatuses" not in slim["status"]
    assert [c["name"] for c in slim["spec"]["containers"]] == ["daprd"]
    assert pod_endpoint(slim, "c", ZONES) == pod_endpoint(pod, "c", ZONES)


def _dual_stack(name: str, ips: list[str]) -> dict[str, object]:
    pod = make_pod(name, ip=ips[0])
    pod["status"]["podIPs"] = [{"ip": ip} for ip in ips]
    return pod


def test_dual_stack_publishes_every_family_and_keeps_the_first_instance_name() -> None:
    found = pod_endpoint(_dual_stack("orders-1", ["10.1.2.3", "fd00::17"]), "c1", ZONES)
    assert [(r.instance, r.address) for r in found.records] == [("orders-1", "10.1.2.3"), ("orders-1-v6", "fd00::17")]
    v6_first = pod_endpoint(_dual_stack("orders-2", ["fd00::18", "10.1.2.4"]), "c1", ZONES)
    assert [(r.instance, r.address) for r in v6_first.records] == [("orders-2", "fd00::18"),
                                                                    ("orders-2-v4", "10.1.2.4")]


@pytest.mark.parametrize("ip", ["127.0.0.1", "0.0.0.0", "169.254.169.254", "::1", "::ffff:127.0.0.1", "fd00:ec2::254",
                                "224.0.0.1", "100.100.100.200"])
def test_refused_addresses_are_not_published_and_say_why(ip: str) -> None:
    found = pod_endpoint(make_pod("evil", ip=ip), "c1", ZONES)
    assert found.records == ()
    assert [address for address, _ in found.refused] == [ip] and found.refused[0][1]


def test_one_refused_family_leaves_the_other_published() -> None:
    from resolver.records.addresses import AddressPolicy

    policy = AddressPolicy.from_spec("c1=10.1.0.0/16")
    found = pod_endpoint(_dual_stack("orders-1", ["10.1.2.3", "fd00::17"]), "c1", ZONES, policy)
    assert [r.address for r in found.records] == ["10.1.2.3"]
    assert found.refused[0][0] == "fd00::17" and "clusterCIDRs" in found.refused[0][1]
    outside = pod_endpoint(make_pod("orders-2", ip="10.2.0.1"), "c1", ZONES, policy)
    assert outside.records == () and "outside clusterCIDRs" in outside.refused[0][1]
