"""The registry's etcd key schema and record formats (docs/registry-schema.md) — a stable, public API.

Keys::

    {prefix}/registry/identity                              -> RegistryIdentity JSON (no lease)
    {prefix}/apps/{cluster}/{namespace}/{appId}/{instance}   -> EndpointRecord JSON
    {prefix}/clusters/{cluster}/info                        -> ClusterInfo JSON
    {prefix}/clusters/{cluster}/leader                      -> LeaderClaim JSON (the leader's lease)
    {prefix}/clusters/{cluster}/heartbeat                   -> Heartbeat JSON (owner's lease)
    {prefix}/clusters/{cluster}/lastseen                    -> LastSeen JSON (no lease)
    {prefix}/clusters/{cluster}/conflict/{clusterUid}       -> ConflictMarker JSON (short lease)
    {prefix}/clusters/{cluster}/members/{instance}          -> MemberMarker JSON (the sidecar's lease)

Cluster first, so each cluster owns one contiguous range that etcd RBAC can grant to that
cluster's publisher alone. Every range prefix ends in ``/`` so ``cluster-1`` never matches
``cluster-10``. Parsing is strict: a record whose JSON disagrees with its key is refused
(:class:`~resolver.errors.InvalidRecord`) and the reader skips it.

Every value is untrusted input written by some cluster: JSON is parsed strictly by the one
decoder of :mod:`.strict` (no NaN or Infinity, no number that overflows to infinity, no
duplicate keys — a record must not be able to say one address to one parser and another to the
next) and numbers are range-checked, so no value can raise anything but
:class:`~resolver.errors.InvalidRecord` in a reader. Unknown keys under ``clusters/{cluster}/``
are ignored: a newer publisher may write more.

This module defines the key layout and the endpoint record (the data every resolve reads); the
formats of the values writers coordinate through live in :mod:`.coordination` and are
re-exported here, so ``resolver.records.schema`` stays the one place to import any format from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from resolver.errors import InvalidRecord, RefusedAddress, ValidationError
from resolver.records import names
from resolver.records.addresses import DEFAULT_POLICY, AddressPolicy, parse_host
from resolver.records.coordination import (
    MAX_COUNT,
    MAX_LEASE_TTL,
    ClusterInfo,
    ConflictMarker,
    Heartbeat,
    IdentityClaim,
    LastSeen,
    LeaderClaim,
    MemberMarker,
    RegistryIdentity,
)
from resolver.records.strict import (
    MAX_FIELD,
    MAX_RECORD_BYTES,
    MAX_TIMESTAMP,
    bounded_field,
    dump_record,
    number_field,
    raw_decode,
    record_object,
    string_field,
)

__all__ = [
    "MAX_COUNT",
    "MAX_LEASE_TTL",
    "MAX_RECORD_BYTES",
    "MAX_TIMESTAMP",
    "ClusterInfo",
    "ConflictMarker",
    "EndpointRecord",
    "Heartbeat",
    "IdentityClaim",
    "Keys",
    "LastSeen",
    "LeaderClaim",
    "MemberMarker",
    "RegistryIdentity",
    "endpoint_entry",
]


@dataclass(frozen=True)
class Keys:
    """Builds and parses the keys under one registry prefix (e.g. ``/dapr/nr/v1``)."""

    prefix: str

    @property
    def root(self) -> str:
        return f"{self.prefix}/"

    @property
    def apps(self) -> str:
        return f"{self.prefix}/apps/"

    @property
    def clusters(self) -> str:
        return f"{self.prefix}/clusters/"

    def cluster_apps(self, cluster: str) -> str:
        """The range one cluster's publisher owns for endpoint records."""
        return f"{self.apps}{names.check_label(cluster, 'cluster')}/"

    def cluster_meta(self, cluster: str) -> str:
        """The range one cluster's publisher owns for its info and leader keys."""
        return f"{self.clusters}{names.check_label(cluster, 'cluster')}/"

    def endpoint(self, cluster: str, namespace: str, app_id: str, instance: str) -> str:
        names.check_app_id(app_id, "appId")
        names.check_label(namespace, "namespace")
        names.check_subdomain(instance, "instance")
        return f"{self.cluster_apps(cluster)}{namespace}/{app_id}/{instance}"

    def info(self, cluster: str) -> str:
        return f"{self.cluster_meta(cluster)}info"

    def leader(self, cluster: str) -> str:
        return f"{self.cluster_meta(cluster)}leader"

    def heartbeat(self, cluster: str) -> str:
        return f"{self.cluster_meta(cluster)}heartbeat"

    def member(self, cluster: str, instance: str) -> str:
        """A self-registered sidecar's announcement of its cluster (for readers that follow clusters/)."""
        return f"{self.cluster_meta(cluster)}members/{names.check_subdomain(instance, 'instance')}"

    def lastseen(self, cluster: str) -> str:
        return f"{self.cluster_meta(cluster)}lastseen"

    def conflict(self, cluster: str, cluster_uid: str) -> str:
        return f"{self.cluster_meta(cluster)}conflict/{names.check_subdomain(cluster_uid, 'clusterUid')}"

    def identity(self) -> str:
        """The registry's identity key: a new history (a wiped etcd) shows as a new or missing id."""
        return f"{self.prefix}/registry/identity"

    def parse_endpoint(self, key: str) -> tuple[str, str, str, str]:
        """``(cluster, namespace, app_id, instance)`` of an endpoint key, validated."""
        if not key.startswith(self.apps):
            raise InvalidRecord("key", f"{key!r} is not under {self.apps!r}")
        match = names.ENDPOINT_PATH.fullmatch(key, len(self.apps))
        if match is not None and len(match.group(4)) <= names.SUBDOMAIN_MAX:
            return match.group(1, 2, 3, 4)  # type: ignore[return-value]
        parts = key[len(self.apps) :].split("/")
        if len(parts) != 4:
            raise InvalidRecord("key", f"{key!r} is not {self.apps}<cluster>/<namespace>/<appId>/<instance>")
        cluster, namespace, app_id, instance = parts
        try:
            names.check_label(cluster, "cluster")
            names.check_label(namespace, "namespace")
            names.check_app_id(app_id, "appId")
            names.check_subdomain(instance, "instance")
        except ValidationError as error:
            raise InvalidRecord("key", f"{key!r}: {error}") from None
        return cluster, namespace, app_id, instance

    def parse_cluster_key(self, key: str) -> tuple[str, str]:
        """``(cluster, leaf)`` of a key under ``{prefix}/clusters/``, e.g. ``("c1", "info")``."""
        if not key.startswith(self.clusters):
            raise InvalidRecord("key", f"{key!r} is not under {self.clusters!r}")
        cluster, slash, leaf = key[len(self.clusters) :].partition("/")
        if not slash or not leaf:
            raise InvalidRecord("key", f"{key[:300]!r} is not {self.clusters}<cluster>/<leaf>")
        try:
            names.check_label(cluster, "cluster")
        except ValidationError as error:
            raise InvalidRecord("key", f"{key[:300]!r}: {error}") from None
        return cluster, leaf


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """One Dapr sidecar's internal gRPC endpoint, as published under its endpoint key.

    ``updated_at`` is not part of equality: the publisher compares records to skip rewriting
    unchanged values, and a fresh timestamp alone is not a change.
    """

    app_id: str
    namespace: str
    cluster: str
    instance: str
    address: str
    port: int
    node: str = ""
    zone: str = ""
    updated_at: float = 0.0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EndpointRecord):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def _identity(self) -> tuple[str, str, str, str, str, int, str, str]:
        return (self.app_id, self.namespace, self.cluster, self.instance,
                self.address, self.port, self.node, self.zone)

    def validate(self) -> EndpointRecord:
        """Raise :class:`ValidationError` naming the bad field; return self when valid."""
        names.check_app_id(self.app_id, "appId")
        names.check_label(self.namespace, "namespace")
        names.check_label(self.cluster, "cluster")
        names.check_subdomain(self.instance, "instance")
        parse_host(self.address)  # shape only; the address policy is the caller's choice
        names.check_port(self.port, "port")
        return self

    @property
    def host_port(self) -> str:
        """The address daprd dials: ``host:port``, IPv6 in brackets."""
        return names.join_host_port(self.address, self.port)

    def key(self, keys: Keys) -> str:
        return keys.endpoint(self.cluster, self.namespace, self.app_id, self.instance)

    def to_json(self) -> bytes:
        return dump_record({
            "appId": self.app_id, "namespace": self.namespace, "cluster": self.cluster,
            "instance": self.instance, "address": self.address, "port": self.port,
            "node": self.node, "zone": self.zone,
            "updatedAt": self.updated_at or round(time.time(), 3),
        })

    @classmethod
    def from_json(cls, raw: bytes, key_parts: tuple[str, str, str, str] | None = None,
                  policy: AddressPolicy = DEFAULT_POLICY) -> EndpointRecord:
        """Parse and validate a record; with ``key_parts`` also check it agrees with its key.

        Raises :class:`RefusedAddress` when the record is well formed but ``policy`` refuses
        its address, :class:`InvalidRecord` for anything else wrong with it.
        """
        obj = record_object(raw)
        try:
            record = cls(
                app_id=string_field(obj, "appId"), namespace=string_field(obj, "namespace"),
                cluster=string_field(obj, "cluster"), instance=string_field(obj, "instance"),
                address=string_field(obj, "address"), port=names.check_port(obj.get("port"), "port"),
                node=bounded_field(obj, "node"), zone=bounded_field(obj, "zone"),
                updated_at=number_field(obj, "updatedAt", MAX_TIMESTAMP),
            ).validate()
        except InvalidRecord:
            raise
        except ValidationError as error:
            raise InvalidRecord(error.field, error.message) from None
        if key_parts is not None:
            own = (record.cluster, record.namespace, record.app_id, record.instance)
            if own != key_parts:
                raise InvalidRecord("key", f"record says {'/'.join(own)} but its key says {'/'.join(key_parts)}")
        refusal = policy.host_refusal(record.cluster, record.address)
        if refusal is not None:
            raise RefusedAddress("address", refusal)
        return record


def endpoint_entry(raw: bytes, key_parts: tuple[str, str, str, str],
                   policy: AddressPolicy = DEFAULT_POLICY) -> tuple[str, str, float]:
    """``(host:port, zone, updatedAt)`` of a record under an already-validated key — the reader's fast path.

    Same strictness as :meth:`EndpointRecord.from_json` (identity fields must equal the key's,
    which was validated when parsed; address, port, node, zone and updatedAt are checked, and
    the address passes ``policy``), without building a record: a cold start with 100k records
    spends most of its time here. Anything the fast checks refuse goes through
    :meth:`EndpointRecord.from_json` for a precise error.
    """
    if len(raw) <= MAX_RECORD_BYTES:
        try:
            text = raw.decode()
            obj, end = raw_decode(text)  # ~1 µs faster than json.loads(bytes) per record
        except (ValueError, UnicodeDecodeError, RecursionError):
            obj, end, text = None, 0, ""
        if type(obj) is dict and end == len(text):
            address, port = obj.get("address"), obj.get("port")
            cluster, namespace, app_id, instance = key_parts
            node, zone, updated = obj.get("node", ""), obj.get("zone", ""), obj.get("updatedAt", 0)
            if (type(port) is int and 0 < port < 65536 and type(address) is str
                    and names.IPV4_OR_HOSTNAME.fullmatch(address) is not None
                    and obj.get("appId") == app_id and obj.get("instance") == instance
                    and obj.get("namespace") == namespace and obj.get("cluster") == cluster
                    and type(node) is str and type(zone) is str and len(node) <= MAX_FIELD
                    and len(zone) <= MAX_FIELD and type(updated) in (int, float) and 0 <= updated <= MAX_TIMESTAMP
                    and policy.host_refusal(cluster, address) is None):
                return f"{address}:{port}", zone, float(updated)
    record = EndpointRecord.from_json(raw, key_parts, policy)
    return record.host_port, record.zone, record.updated_at
