"""The registry key schema and record formats: strict, and nothing escapes its prefix."""

from __future__ import annotations

import json

import pytest

from resolver.errors import InvalidRecord, ValidationError
from resolver.records import names
from resolver.records.schema import MAX_RECORD_BYTES, ClusterInfo, EndpointRecord, Keys

KEYS = Keys("/dapr/nr/v1")


def test_key_layout_is_cluster_first_and_ranges_end_in_slash() -> None:
    assert KEYS.endpoint("cluster-1", "default", "orders", "orders-abc") == \
        "/dapr/nr/v1/apps/cluster-1/default/orders/orders-abc"
    assert KEYS.cluster_apps("cluster-1") == "/dapr/nr/v1/apps/cluster-1/"
    assert not KEYS.endpoint("cluster-10", "d", "a", "i").startswith(KEYS.cluster_apps("cluster-1"))
    assert KEYS.info("cluster-1") == "/dapr/nr/v1/clusters/cluster-1/info"
    assert KEYS.leader("cluster-1") == "/dapr/nr/v1/clusters/cluster-1/leader"
    assert KEYS.parse_endpoint("/dapr/nr/v1/apps/c/ns/app_1/pod.a") == ("c", "ns", "app_1", "pod.a")


@pytest.mark.parametrize("app_id", ["a", "orders", "Orders_v2", "a-b_c", "x" * 63])
def test_valid_app_ids(app_id: str) -> None:
    assert names.check_app_id(app_id) == app_id


@pytest.mark.parametrize("app_id", ["", "-a", "a-", "a.b", "a/b", "../x", "a b", "x" * 64, "é", "a\n"])
def test_invalid_app_ids(app_id: str) -> None:
    with pytest.raises(ValidationError, match=r"^id: "):
        names.check_app_id(app_id)


@pytest.mark.parametrize(("segment", "value"), [
    ("namespace", "Default"), ("namespace", "a/b"), ("namespace", "a.b"), ("cluster", "-c"),
    ("instance", "Pod"), ("instance", "a..b"), ("instance", "a/b"), ("appId", "a.b"),
])
def test_keys_refuse_segments_that_could_escape(segment: str, value: str) -> None:
    parts = {"cluster": "c", "namespace": "ns", "app_id": "app", "instance": "i"}
    parts[{"appId": "app_id"}.get(segment, segment)] = value
    with pytest.raises(ValidationError):
        KEYS.endpoint(**parts)


def test_record_round_trip_and_equality_ignores_timestamp() -> None:
    record = EndpointRecord("orders", "default", "c1", "orders-1", "fd00::1", 50002, node="n1", zone="z1")
    parsed = EndpointRecord.from_json(record.to_json(), ("c1", "default", "orders", "orders-1"))
    assert parsed == record and parsed.updated_at > 0
    assert parsed.host_port == "[fd00::1]:50002"
    assert set(json.loads(record.to_json())) == {"appId", "namespace", "cluster", "instance", "address", "port",
                                                 "node", "zone", "updatedAt"}


@pytest.mark.parametrize(("raw", "fragment"), [
    (b"not json", "not JSON"),
    (b"[1]", "expected a JSON object"),
    (b'{"appId": "a"}', "namespace: missing"),
    (b'{"appId":"a","namespace":"d","cluster":"c","instance":"i","address":"1.2.3.4","port":"80"}', "port"),
    (b'{"appId":"a","namespace":"d","cluster":"c","instance":"i","address":"1.2.3.4","port":0}', "port"),
    (b'{"appId":"a","namespace":"d","cluster":"c","instance":"i","address":"1.2.3.4:5","port":5}', "address"),
    (b'{"appId":"a","namespace":"d","cluster":"c","instance":"i","address":"h","port":5,"zone":7}', "zone"),
    (b'{"appId":"a","namespace":"d","cluster":"c","instance":"i","address":"h","port":5,"updatedAt":"x"}',
     "updatedAt"),
    (b"\xff\xfe", "not JSON"),
    (b"{" + b" " * MAX_RECORD_BYTES + b"}", "larger than"),
])
def test_bad_records_are_refused(raw: bytes, fragment: str) -> None:
    with pytest.raises(InvalidRecord, match=fragment):
        EndpointRecord.from_json(raw)


def test_record_must_agree_with_its_key() -> None:
    record = EndpointRecord("orders", "default", "c1", "orders-1", "10.0.0.1", 50002)
    with pytest.raises(InvalidRecord, match="its key says"):
        EndpointRecord.from_json(record.to_json(), ("c2", "default", "orders", "orders-1"))


def test_cluster_info_round_trip() -> None:
    info = ClusterInfo("c1", "pub-1", "0.1.0", 100.0, synced_at=0.0, endpoints=3, lease_ttl=15)
    assert ClusterInfo.from_json(info.to_json(), "c1") == info
    with pytest.raises(InvalidRecord, match="its key says"):
        ClusterInfo.from_json(info.to_json(), "c2")


def test_sanitize_subdomain() -> None:
    assert names.sanitize_subdomain("10.0.0.7-50002") == "10.0.0.7-50002"
    assert names.sanitize_subdomain("FD00::1-50002") == "fd00--1-50002"
    assert names.sanitize_subdomain("--") == "instance"
    names.check_subdomain(names.sanitize_subdomain("_weird_.Host..x-"), "instance")
