"""The registry key schema and record formats: strict, and nothing escapes its prefix."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # comes with kubernetes-validate (test extra)
import pytest
import yaml

from resolver.component.self_registration import self_record
from resolver.errors import InvalidRecord, ValidationError
from resolver.etcd.gateway import EtcdGateway
from resolver.publisher.cluster_ownership import find_conflict
from resolver.publisher.election import LeaderElection
from resolver.records import names, strict
from resolver.records.schema import (
    MAX_RECORD_BYTES,
    ClusterInfo,
    ConflictMarker,
    EndpointRecord,
    Heartbeat,
    IdentityClaim,
    Keys,
    LastSeen,
    LeaderClaim,
    MemberMarker,
    RegistryIdentity,
)
from resolver.writer.claim import holder
from resolver.writer.sidecar import SelfRegistration
from tests.conftest import eventually

KEYS = Keys("/dapr/nr/v1")
SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schema"


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
    (b"not json", "not valid JSON"),
    (b"[1]", "expected a JSON object"),
    (b'{"appId": "a"}', "namespace: missing"),
    (b'{"appId":"a","namespace":"d","cluster":"c","instance":"i","address":"1.2.3.4","port":"80"}', "port"),
    (b'{"appId":"a","namespace":"d","cluster":"c","instance":"i","address":"1.2.3.4","port":0}', "port"),
    (b'{"appId":"a","namespace":"d","cluster":"c","instance":"i","address":"1.2.3.4:5","port":5}', "address"),
    (b'{"appId":"a","namespace":"d","cluster":"c","instance":"i","address":"h","port":5,"zone":7}', "zone"),
    (b'{"appId":"a","namespace":"d","cluster":"c","instance":"i","address":"h","port":5,"updatedAt":"x"}',
     "updatedAt"),
    (b"\xff\xfe", "not valid JSON"),
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


# -- JSON Schemas: what the code writes, through its real encoders ------------------------------------------------


def _schema(name: str) -> dict[str, object]:
    return json.loads((SCHEMAS / name).read_text())


def _conforms(raw: bytes, name: str) -> None:
    schema = _schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(raw), schema, cls=jsonschema.Draft202012Validator)


def _written_by_the_encoders() -> dict[str, list[bytes]]:
    """One or more values per documented format, each built by the format's own encoder."""
    now = time.time()
    return {
        "endpoint.json": [EndpointRecord("orders", "default", "cluster-1", "orders-7d9f-a1", "10.1.0.11", 50002,
                                         "node-1", "eu-1a").to_json(),
                          EndpointRecord("vm_app", "shop", "vms", "vm-1.example", "db.example.com", 3500).to_json(),
                          self_record("vms", "billing", "", "10.0.0.7", 50002).to_json()],
        "cluster-info.json": [ClusterInfo("cluster-1", "pub-a", "0.2.0", now).to_json(),
                              ClusterInfo("cluster-1", "pub-a", "0.2.0", now, now, 12, 15, "1" * 32).to_json()],
        "heartbeat.json": [Heartbeat("cluster-1", "1" * 32, "pub-a", 7, now, 15).to_json()],
        "lastseen.json": [LastSeen("cluster-1", "1" * 32, "pub-a", now, 12, "withdrawn").to_json()],
        "conflict.json": [ConflictMarker("cluster-1", "f" * 32, "pub-b", now).to_json()],
        "registry-identity.json": [RegistryIdentity.new().to_json()],
        "leader.json": [LeaderClaim.new("pub-a-123", "1" * 32).to_json(), LeaderClaim.new("pub-a-123").to_json()],
        "member.json": [MemberMarker("vms", "10-0-0-7-50002", "billing", "default").to_json()],
    }


def test_every_registry_value_the_code_writes_matches_its_json_schema() -> None:
    written = _written_by_the_encoders()
    assert set(written) == {path.name for path in SCHEMAS.glob("*.json")}, "a format without a schema, or vice versa"
    for name, values in written.items():
        for raw in values:
            _conforms(raw, name)
    bad = json.loads(written["endpoint.json"][0]) | {"port": 70000}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _schema("endpoint.json"), cls=jsonschema.Draft202012Validator)


@pytest.mark.registry
def test_what_the_leader_election_and_self_registration_put_in_etcd_matches_the_schema(
        gateway: EtcdGateway, keys: Keys) -> None:
    """Not the encoders alone: the values the running code puts in etcd, read back."""
    elected = threading.Event()
    election = LeaderElection(gateway, "cluster-1", 15, "pub-a-123", elected.set, lambda: None,
                              cluster_uid="1" * 32).start()
    try:
        assert elected.wait(10), "never elected"
        raw = gateway.get(keys.leader("cluster-1"))
        assert raw is not None
        _conforms(raw, "leader.json")
        claim = LeaderClaim.from_json(raw)
        assert (claim.identity, claim.cluster_uid) == ("pub-a-123", "1" * 32) and claim.since > 0
    finally:
        election.stop()
    record = self_record("vms", "billing", "default", "10.0.0.7", 50002)
    registration = SelfRegistration(gateway, record, ttl=5).start()
    try:
        member = eventually(lambda: gateway.get(keys.member("vms", record.instance)), 10, "the member marker")
        assert member is not None
        _conforms(member, "member.json")
        assert MemberMarker.from_json(member, ("vms", record.instance)) == \
            MemberMarker("vms", record.instance, "billing", "default")
        endpoint = eventually(lambda: gateway.get(record.key(keys)), 10, "the endpoint record")
        assert endpoint is not None
        _conforms(endpoint, "endpoint.json")
    finally:
        registration.stop()


# -- the leader claim, the member marker and the identity claim ----------------------------------------------------


def test_leader_claim_round_trips_and_keeps_the_bytes_every_release_wrote() -> None:
    claim = LeaderClaim("pub-a-123", 1700000000.5, "uid-1")
    assert claim.to_json() == b'{"identity": "pub-a-123", "since": 1700000000.5, "clusterUid": "uid-1"}'
    assert LeaderClaim("pub-a-123", 1700000000.5).to_json() == b'{"identity": "pub-a-123", "since": 1700000000.5}'
    assert LeaderClaim.from_json(claim.to_json()) == claim
    assert LeaderClaim.from_json(LeaderClaim("p", 1.0).to_json()).cluster_uid == ""
    assert abs(LeaderClaim.new("p").since - time.time()) < 5


def test_member_marker_round_trips_and_keeps_the_bytes_every_release_wrote() -> None:
    marker = MemberMarker("vms", "10-0-0-7-50002", "billing", "default")
    assert marker.to_json() == b'{"cluster":"vms","instance":"10-0-0-7-50002","appId":"billing","namespace":"default"}'
    assert MemberMarker.from_json(marker.to_json(), ("vms", "10-0-0-7-50002")) == marker
    assert MemberMarker.from_json(b'{"cluster":"vms","instance":"i-1"}') == MemberMarker("vms", "i-1", "", "")
    with pytest.raises(InvalidRecord, match="its key says"):
        MemberMarker.from_json(marker.to_json(), ("other", "10-0-0-7-50002"))


@pytest.mark.parametrize(("decode", "raw", "fragment"), [
    (LeaderClaim.from_json, b'{"identity":"a","identity":"b"}', "duplicate key 'identity'"),
    (LeaderClaim.from_json, b'{"identity":"a","since":NaN}', "NaN is not a finite number"),
    (LeaderClaim.from_json, b'{"identity":"a","since":1e999}', "not a finite number"),
    (LeaderClaim.from_json, b'{"since":1}', "identity: missing"),
    (LeaderClaim.from_json, b'{"identity":"a","since":-1}', "since"),
    (LeaderClaim.from_json, b'["identity"]', "expected a JSON object, got list"),
    (LeaderClaim.from_json, b'{"identity":"' + b"x" * 300 + b'"}', "identity: longer than 253"),
    (MemberMarker.from_json, b'{"cluster":"vms","instance":"i","instance":"j"}', "duplicate key 'instance'"),
    (MemberMarker.from_json, b'{"cluster":"VMS","instance":"i"}', "cluster"),
    (MemberMarker.from_json, b'{"cluster":"vms","instance":"a/b"}', "instance"),
    (MemberMarker.from_json, b'{"cluster":"vms","instance":"i","appId":"a.b"}', "appId"),
    (MemberMarker.from_json, b'{"instance":"i"}', "cluster: missing"),
    (IdentityClaim.from_json, b'{"clusterUid":"a","clusterUid":"b"}', "duplicate key 'clusterUid'"),
    (IdentityClaim.from_json, b'{"clusterUid":7}', "clusterUid: expected a string"),
    (IdentityClaim.from_json, b'{"clusterUid":"a","at":Infinity}', "Infinity is not a finite number"),
    (IdentityClaim.from_json, b"null", "expected a JSON object, got NoneType"),
])
def test_coordination_values_are_strictly_decoded(decode: Any, raw: bytes, fragment: str) -> None:
    with pytest.raises(InvalidRecord, match=fragment):
        decode(raw)


def test_the_identity_claim_reads_what_info_leader_and_heartbeat_write() -> None:
    info = ClusterInfo("c1", "pub-a", "0.2.0", 1.0, cluster_uid="uid-a").to_json()
    assert IdentityClaim.from_json(info) == IdentityClaim("uid-a", "pub-a")
    leader = LeaderClaim("pub-a-1", 1.0, "uid-a").to_json()
    assert IdentityClaim.from_json(leader, "identity") == IdentityClaim("uid-a", "pub-a-1")
    assert IdentityClaim.from_json(Heartbeat("c1", "uid-a", "pub-a", 1, 1.0, 15).to_json()).cluster_uid == "uid-a"
    previous_release = ClusterInfo("c1", "pub-a", "0.1.0", 1.0).to_json()
    assert IdentityClaim.from_json(previous_release) == IdentityClaim("", "pub-a")
    assert IdentityClaim.from_json(b'{"clusterUid":"uid-a","publisher":7}') == IdentityClaim("uid-a", "")


def test_the_write_guard_and_the_conflict_check_read_the_identity_strictly() -> None:
    assert holder(ClusterInfo("c1", "pub-a", "0.2.0", 1.0, cluster_uid="uid-a").to_json()) == "uid-a"
    assert holder(None) == holder(b"") == holder(b"not json") == ""
    # One value, two identities: Python's json would say "uid-b"; a strict reader says nothing.
    assert holder(b'{"clusterUid":"uid-a","clusterUid":"uid-b"}') == ""
    stored = {KEYS.leader("c1"): LeaderClaim("pub-b-7", 1.0, "uid-b").to_json(),
              KEYS.info("c1"): b'{"clusterUid":"uid-c","clusterUid":"uid-a"}'}
    gateway: Any = SimpleNamespace(connection=SimpleNamespace(prefix=KEYS.prefix), get=stored.get)
    conflict = find_conflict(gateway, "c1", "uid-a")
    assert conflict is not None and (conflict.theirs, conflict.holder) == ("uid-b", "pub-b-7")
    del stored[KEYS.leader("c1")]
    assert find_conflict(gateway, "c1", "uid-a") is None


# -- the one strict decoder ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "fragment"), [
    ('{"a": 1, "b": {"c": 2, "c": 3}}', "policies: duplicate key 'c'"),
    ('{"a": NaN}', "policies: NaN is not a finite number"),
    ('{"a": -Infinity}', "policies: -Infinity is not a finite number"),
    ('{"a": 1e400}', "policies: number 1e400 is not a finite number"),
    ("[" * 100_000, "policies: nested deeper than the JSON parser can follow"),
    ("{", "policies: not valid JSON"),
    (b"\xff", "policies: not valid JSON: not UTF-8"),
], ids=["duplicate", "NaN", "Infinity", "overflow", "deep", "broken", "not-utf8"])
def test_the_strict_json_decoder_names_the_document_and_the_offending_key(text: str | bytes, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        strict.decode_json(text, "policies")


def test_the_strict_json_decoder_checks_depth_and_objects_when_asked() -> None:
    assert strict.decode_json('[{"a": [1.5, "x"]}]', "d") == [{"a": [1.5, "x"]}]
    with pytest.raises(ValidationError, match="nested deeper than 2 levels"):
        strict.decode_json('[[["x"]]]', "d", max_depth=2)
    assert strict.decode_json('"[[[["', "d", max_depth=1) == "[[[["  # brackets in strings do not count
    with pytest.raises(ValidationError, match="d: expected a JSON object, got list"):
        strict.decode_object("[]", "d")


def test_the_strict_yaml_loader_names_the_duplicate_key_and_its_line() -> None:
    with pytest.raises(ValidationError, match=r"^inv\.yaml: duplicate key 'address' at line 3$"):
        strict.load_yaml("- appId: a\n  address: 10.0.0.1\n  address: 10.0.0.2\n", "inv.yaml")
    for base in (yaml.SafeLoader, strict.FAST_SAFE_LOADER):
        with pytest.raises(ValidationError, match="duplicate key 'endpoints' at line 2"):
            strict.load_yaml("endpoints: []\nendpoints: [{}]\n", "inv.yaml", base=base)
        # what a merge brings in may be overridden: that is what merging is for
        assert strict.load_yaml("b: &b {x: 1, y: 2}\nc: {<<: *b, x: 3}\n", "c.yaml", base=base)["c"] == \
            {"x": 3, "y": 2}
    with pytest.raises(ValidationError, match=r"c\.yaml: not valid YAML at line 2"):
        strict.load_yaml("a: [1,\n", "c.yaml")
