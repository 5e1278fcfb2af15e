"""The values under ``{prefix}/clusters/{cluster}/`` and ``{prefix}/registry/``: how writers coordinate.

Endpoint records (:mod:`.schema`) say where sidecars are; the values here say who publishes a
cluster and whether it is alive (:class:`ClusterInfo`, :class:`Heartbeat`, :class:`LastSeen`),
which replica leads (:class:`LeaderClaim`), which cluster identity holds a name
(:class:`IdentityClaim`, :class:`ConflictMarker`), which self-registered sidecars announce a
cluster (:class:`MemberMarker`) and which etcd history this is (:class:`RegistryIdentity`).

Each format is a frozen dataclass with ``to_json`` (what this release writes, checked against
``docs/schema/*.json`` by the tests) and ``from_json`` (strict, :class:`~resolver.errors.InvalidRecord`
for anything wrong), so no writer builds a value as a loose dict and no reader picks a field out
of one: the format has one definition. :mod:`.schema` re-exports them all, its stable public API.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from resolver.errors import InvalidRecord, ValidationError
from resolver.records import names
from resolver.records.strict import (
    MAX_TIMESTAMP,
    bounded_field,
    dump_record,
    number_field,
    record_object,
    string_field,
)

MAX_LEASE_TTL = 3600.0
"""The longest ``leaseTTL`` a cluster may claim; the DNS bridge derives answer TTLs from it."""
MAX_COUNT = 10_000_000
"""The largest endpoint count an ``info`` may claim."""


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """What a cluster's publisher says about itself; present while the publisher is alive.

    ``synced_at`` is 0 until the publisher's first full list has been written: the
    per-cluster "synced" barrier readers and operators can wait for. ``cluster_uid`` is the
    publisher's cluster identity ("" from publishers of the previous release: compatible
    with any identity).
    """

    cluster: str
    publisher: str
    version: str
    started_at: float
    synced_at: float = 0.0
    endpoints: int = 0
    lease_ttl: float = 0.0
    cluster_uid: str = ""

    def to_json(self) -> bytes:
        obj: dict[str, Any] = {
            "cluster": self.cluster, "publisher": self.publisher, "version": self.version,
            "startedAt": self.started_at, "syncedAt": self.synced_at or None,
            "endpoints": self.endpoints, "leaseTTL": self.lease_ttl,
        }
        if self.cluster_uid:
            obj["clusterUid"] = self.cluster_uid
        return dump_record(obj)

    @classmethod
    def from_json(cls, raw: bytes, cluster_from_key: str | None = None) -> ClusterInfo:
        obj = record_object(raw)
        info = cls(
            cluster=string_field(obj, "cluster"), publisher=bounded_field(obj, "publisher"),
            version=bounded_field(obj, "version"), started_at=number_field(obj, "startedAt", MAX_TIMESTAMP),
            synced_at=number_field(obj, "syncedAt", MAX_TIMESTAMP),
            endpoints=int(number_field(obj, "endpoints", MAX_COUNT)),
            lease_ttl=number_field(obj, "leaseTTL", MAX_LEASE_TTL), cluster_uid=bounded_field(obj, "clusterUid"),
        )
        if cluster_from_key is not None and info.cluster != cluster_from_key:
            raise InvalidRecord("cluster", f"info says {info.cluster[:80]!r} but its key says {cluster_from_key!r}")
        return info


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Proof of life a foreign credential cannot fake: only the owning publisher may write it.

    Lease keep-alive is not covered by etcd's key RBAC, so any credential can keep another
    cluster's lease (and records) alive; a reader therefore also requires this key, inside
    the cluster's own RBAC range, to keep advancing (see :mod:`resolver.registry.liveness`).
    """

    cluster: str
    cluster_uid: str
    publisher: str
    seq: int
    at: float
    lease_ttl: float

    def to_json(self) -> bytes:
        return dump_record({"cluster": self.cluster, "clusterUid": self.cluster_uid, "publisher": self.publisher,
                            "seq": self.seq, "at": self.at, "leaseTTL": self.lease_ttl})

    @classmethod
    def from_json(cls, raw: bytes, cluster_from_key: str | None = None) -> Heartbeat:
        obj = record_object(raw)
        beat = cls(cluster=string_field(obj, "cluster"), cluster_uid=bounded_field(obj, "clusterUid"),
                   publisher=bounded_field(obj, "publisher"), seq=int(number_field(obj, "seq", 2.0**62)),
                   at=number_field(obj, "at", MAX_TIMESTAMP), lease_ttl=number_field(obj, "leaseTTL", MAX_LEASE_TTL))
        if beat.lease_ttl <= 0:
            raise InvalidRecord("leaseTTL", "must be a positive number of seconds")
        if cluster_from_key is not None and beat.cluster != cluster_from_key:
            raise InvalidRecord("cluster", f"heartbeat says {beat.cluster[:80]!r} but its key says "
                                           f"{cluster_from_key!r}")
        return beat


@dataclass(frozen=True, slots=True)
class LastSeen:
    """A lease-less trace of a cluster, so ``status`` can say it *was* there after it vanished."""

    cluster: str
    cluster_uid: str
    publisher: str
    at: float
    endpoints: int
    reason: str = "running"

    def to_json(self) -> bytes:
        return dump_record({"cluster": self.cluster, "clusterUid": self.cluster_uid, "publisher": self.publisher,
                            "at": self.at, "endpoints": self.endpoints, "reason": self.reason})

    @classmethod
    def from_json(cls, raw: bytes) -> LastSeen:
        obj = record_object(raw)
        return cls(cluster=string_field(obj, "cluster"), cluster_uid=bounded_field(obj, "clusterUid"),
                   publisher=bounded_field(obj, "publisher"), at=number_field(obj, "at", MAX_TIMESTAMP),
                   endpoints=int(number_field(obj, "endpoints", MAX_COUNT)),
                   reason=bounded_field(obj, "reason") or "running")


@dataclass(frozen=True, slots=True)
class ConflictMarker:
    """A publisher's claim on a cluster name another identity holds (it refused to write)."""

    cluster: str
    cluster_uid: str
    publisher: str
    at: float

    def to_json(self) -> bytes:
        return dump_record({"cluster": self.cluster, "clusterUid": self.cluster_uid, "publisher": self.publisher,
                            "at": self.at})

    @classmethod
    def from_json(cls, raw: bytes) -> ConflictMarker:
        obj = record_object(raw)
        return cls(cluster=string_field(obj, "cluster"), cluster_uid=bounded_field(obj, "clusterUid"),
                   publisher=bounded_field(obj, "publisher"), at=number_field(obj, "at", MAX_TIMESTAMP))


@dataclass(frozen=True, slots=True)
class LeaderClaim:
    """The value of ``clusters/{cluster}/leader``: which publisher replica leads, since when, for whom.

    Created only if absent, on the leader's own lease (:mod:`resolver.publisher.election`).
    ``cluster_uid`` is "" when the cluster-identity guard is off; the key is then omitted.
    """

    identity: str
    since: float
    cluster_uid: str = ""

    def to_json(self) -> bytes:
        claim: dict[str, Any] = {"identity": self.identity, "since": self.since}
        if self.cluster_uid:
            claim["clusterUid"] = self.cluster_uid
        # json.dumps' default layout, not dump_record's: byte for byte what every release so far wrote.
        return json.dumps(claim).encode()

    @classmethod
    def new(cls, identity: str, cluster_uid: str = "") -> LeaderClaim:
        """A claim made now (``since`` is this moment's wall-clock time)."""
        return cls(identity, time.time(), cluster_uid)

    @classmethod
    def from_json(cls, raw: bytes) -> LeaderClaim:
        obj = record_object(raw)
        return cls(identity=bounded_field(obj, "identity", required=True),
                   since=number_field(obj, "since", MAX_TIMESTAMP), cluster_uid=bounded_field(obj, "clusterUid"))


@dataclass(frozen=True, slots=True)
class MemberMarker:
    """The value of ``clusters/{cluster}/members/{instance}``: a self-registered sidecar announcing its cluster.

    Written on the sidecar's own lease next to its endpoint record, so readers that follow only
    ``clusters/`` (``cacheScope=onDemand``) learn the cluster exists; it vanishes with the sidecar.
    """

    cluster: str
    instance: str
    app_id: str
    namespace: str

    def to_json(self) -> bytes:
        # Compact, in this order, unsorted: byte for byte what every release so far wrote.
        return json.dumps({"cluster": self.cluster, "instance": self.instance, "appId": self.app_id,
                           "namespace": self.namespace}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes, key_parts: tuple[str, str] | None = None) -> MemberMarker:
        """Parse and validate a marker; with ``key_parts`` (cluster, instance) also check it agrees with its key."""
        obj = record_object(raw)
        try:
            marker = cls(cluster=names.check_label(string_field(obj, "cluster"), "cluster"),
                         instance=names.check_subdomain(string_field(obj, "instance"), "instance"),
                         app_id=string_field(obj, "appId", required=False),
                         namespace=string_field(obj, "namespace", required=False))
            if marker.app_id:
                names.check_app_id(marker.app_id, "appId")
            if marker.namespace:
                names.check_label(marker.namespace, "namespace")
        except InvalidRecord:
            raise
        except ValidationError as error:
            raise InvalidRecord(error.field, error.message) from None
        if key_parts is not None and (marker.cluster, marker.instance) != key_parts:
            raise InvalidRecord("key", f"marker says {marker.cluster}/{marker.instance} but its key says "
                                       f"{'/'.join(key_parts)}")
        return marker


@dataclass(frozen=True, slots=True)
class IdentityClaim:
    """The cluster identity a live ``info``, ``leader`` or ``heartbeat`` value holds a cluster name for.

    The one-cluster-one-name guard reads only this part of those values, whatever else they
    say (:mod:`resolver.publisher.cluster_ownership`, :mod:`resolver.writer.claim`).
    ``cluster_uid`` "" is no claim (a publisher of the previous release: compatible with any).
    """

    cluster_uid: str
    holder: str = ""
    """Who wrote the value (a publisher or leader identity), for the conflict message only."""

    @classmethod
    def from_json(cls, raw: bytes, holder_field: str = "publisher") -> IdentityClaim:
        """The claim of one value: strict JSON and a bounded ``clusterUid`` string, or :class:`InvalidRecord`.

        ``holder_field`` names the writer's field (``publisher``; ``identity`` in a leader
        claim). A holder that is not a short string is dropped rather than refusing the value:
        it only decorates a message, and refusing would hide the identity the guard exists for.
        """
        obj = record_object(raw)
        holder = obj.get(holder_field)
        return cls(bounded_field(obj, "clusterUid"), holder[:names.SUBDOMAIN_MAX] if isinstance(holder, str) else "")


@dataclass(frozen=True, slots=True)
class RegistryIdentity:
    """The registry's identity: a random id created once per etcd history (``registry init``)."""

    id: str
    created_at: float

    def to_json(self) -> bytes:
        return dump_record({"id": self.id, "createdAt": self.created_at})

    @classmethod
    def new(cls) -> RegistryIdentity:
        return cls(secrets.token_hex(16), round(time.time(), 3))

    @classmethod
    def from_json(cls, raw: bytes) -> RegistryIdentity:
        obj = record_object(raw)
        identity = bounded_field(obj, "id")
        if not identity:
            raise InvalidRecord("id", "must not be empty")
        return cls(identity, number_field(obj, "createdAt", MAX_TIMESTAMP))
