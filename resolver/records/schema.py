"""The registry's etcd key schema and record formats (DESIGN §3) — a stable, public API.

Keys::

    {prefix}/registry/identity                              -> RegistryIdentity JSON (no lease)
    {prefix}/apps/{cluster}/{namespace}/{appId}/{instance}   -> EndpointRecord JSON
    {prefix}/clusters/{cluster}/info                        -> ClusterInfo JSON
    {prefix}/clusters/{cluster}/leader                      -> publisher leader election
    {prefix}/clusters/{cluster}/heartbeat                   -> Heartbeat JSON (owner's lease)
    {prefix}/clusters/{cluster}/lastseen                    -> LastSeen JSON (no lease)
    {prefix}/clusters/{cluster}/conflict/{clusterUid}       -> ConflictMarker JSON (short lease)
    {prefix}/clusters/{cluster}/members/{instance}          -> a self-registered sidecar's marker (its lease)

Cluster first, so each cluster owns one contiguous range that etcd RBAC can grant to that
cluster's publisher alone. Every range prefix ends in ``/`` so ``cluster-1`` never matches
``cluster-10``. Parsing is strict: a record whose JSON disagrees with its key is refused
(:class:`~resolver.errors.InvalidRecord`) and the reader skips it.

Every value is untrusted input written by some cluster: JSON is parsed strictly (no NaN or
Infinity, no number that overflows to infinity, no duplicate keys — a record must not be able to
say one address to one parser and another to the next) and numbers are range-checked, so no
value can raise anything but :class:`~resolver.errors.InvalidRecord` in a reader. Unknown
keys under ``clusters/{cluster}/`` are ignored: a newer publisher may write more.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from resolver.errors import InvalidRecord, RefusedAddress, ValidationError
from resolver.records import names
from resolver.records.addresses import DEFAULT_POLICY, AddressPolicy, parse_host

MAX_RECORD_BYTES = 4096
"""Registry values larger than this are refused: a record is ~200 bytes; 4 KiB leaves room."""
MAX_LEASE_TTL = 3600.0
"""The longest ``leaseTTL`` a cluster may claim; the DNS bridge derives answer TTLs from it."""
MAX_COUNT = 10_000_000
"""The largest endpoint count an ``info`` may claim."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in registry records")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} overflows")
    return value


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {duplicate[:40]!r}")
    return obj


_STRICT = json.JSONDecoder(object_pairs_hook=_unique_object, parse_float=_finite_float,
                           parse_constant=_refuse_constant)
_raw_decode = _STRICT.raw_decode


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


def _load_object(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidRecord("value", f"{len(raw)} bytes is larger than the {MAX_RECORD_BYTES}-byte limit")
    try:
        value = _STRICT.decode(raw.decode("utf-8"))
    except RecursionError:
        raise InvalidRecord("value", "nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidRecord("value", f"not JSON: {str(error)[:120]}") from None
    if not isinstance(value, dict):
        raise InvalidRecord("value", f"expected a JSON object, got {type(value).__name__}")
    return value


def _string(obj: dict[str, Any], field: str, required: bool = True) -> str:
    if field not in obj:
        if required:
            raise InvalidRecord(field, "missing")
        return ""
    value = obj[field]
    if not isinstance(value, str):
        raise InvalidRecord(field, f"expected a string, got {type(value).__name__}")
    return value


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


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
        return _dump({
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
        obj = _load_object(raw)
        try:
            record = cls(
                app_id=_string(obj, "appId"), namespace=_string(obj, "namespace"),
                cluster=_string(obj, "cluster"), instance=_string(obj, "instance"),
                address=_string(obj, "address"), port=names.check_port(obj.get("port"), "port"),
                node=_bounded_string(obj, "node"), zone=_bounded_string(obj, "zone"),
                updated_at=_number(obj, "updatedAt", MAX_TIMESTAMP),
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


MAX_TIMESTAMP = 1e11
"""Timestamps (unix seconds) above this (the year 5138) are refused rather than trusted."""
_MAX_FIELD = 253


def _number(obj: dict[str, Any], field: str, high: float) -> float:
    """A finite number in ``[0, high]`` (absent or null: 0); anything else is an invalid record."""
    value = obj.get(field)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRecord(field, f"expected a number, got {type(value).__name__}")
    if not 0 <= value <= high:  # compares huge ints exactly; never converts them first
        raise InvalidRecord(field, f"{str(value)[:40]} is outside 0-{high:g}")
    return float(value)


def _bounded_string(obj: dict[str, Any], field: str) -> str:
    value = _string(obj, field, required=False)
    if len(value) > _MAX_FIELD:
        raise InvalidRecord(field, f"longer than {_MAX_FIELD} characters")
    return value


def endpoint_entry(raw: bytes, key_parts: tuple[str, str, str, str],
                   policy: AddressPolicy = DEFAULT_POLICY) -> tuple[str, float]:
    """The ``host:port`` and ``updatedAt`` of a record under an already-validated key — the reader's fast path.

    Same strictness as :meth:`EndpointRecord.from_json` (identity fields must equal the key's,
    which was validated when parsed; address, port, node, zone and updatedAt are checked, and
    the address passes ``policy``), without building a record: a cold start with 100k records
    spends most of its time here. Anything the fast checks refuse goes through
    :meth:`EndpointRecord.from_json` for a precise error.
    """
    if len(raw) <= MAX_RECORD_BYTES:
        try:
            text = raw.decode()
            obj, end = _raw_decode(text)  # ~1 µs faster than json.loads(bytes) per record
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
                    and type(node) is str and type(zone) is str and len(node) <= _MAX_FIELD
                    and len(zone) <= _MAX_FIELD and type(updated) in (int, float) and 0 <= updated <= MAX_TIMESTAMP
                    and policy.host_refusal(cluster, address) is None):
                return f"{address}:{port}", float(updated)
    record = EndpointRecord.from_json(raw, key_parts, policy)
    return record.host_port, record.updated_at


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
        return _dump(obj)

    @classmethod
    def from_json(cls, raw: bytes, cluster_from_key: str | None = None) -> ClusterInfo:
        obj = _load_object(raw)
        info = cls(
            cluster=_string(obj, "cluster"), publisher=_bounded_string(obj, "publisher"),
            version=_bounded_string(obj, "version"), started_at=_number(obj, "startedAt", MAX_TIMESTAMP),
            synced_at=_number(obj, "syncedAt", MAX_TIMESTAMP), endpoints=int(_number(obj, "endpoints", MAX_COUNT)),
            lease_ttl=_number(obj, "leaseTTL", MAX_LEASE_TTL), cluster_uid=_bounded_string(obj, "clusterUid"),
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
        return _dump({"cluster": self.cluster, "clusterUid": self.cluster_uid, "publisher": self.publisher,
                      "seq": self.seq, "at": self.at, "leaseTTL": self.lease_ttl})

    @classmethod
    def from_json(cls, raw: bytes, cluster_from_key: str | None = None) -> Heartbeat:
        obj = _load_object(raw)
        beat = cls(cluster=_string(obj, "cluster"), cluster_uid=_bounded_string(obj, "clusterUid"),
                   publisher=_bounded_string(obj, "publisher"), seq=int(_number(obj, "seq", 2.0**62)),
                   at=_number(obj, "at", MAX_TIMESTAMP), lease_ttl=_number(obj, "leaseTTL", MAX_LEASE_TTL))
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
        return _dump({"cluster": self.cluster, "clusterUid": self.cluster_uid, "publisher": self.publisher,
                      "at": self.at, "endpoints": self.endpoints, "reason": self.reason})

    @classmethod
    def from_json(cls, raw: bytes) -> LastSeen:
        obj = _load_object(raw)
        return cls(cluster=_string(obj, "cluster"), cluster_uid=_bounded_string(obj, "clusterUid"),
                   publisher=_bounded_string(obj, "publisher"), at=_number(obj, "at", MAX_TIMESTAMP),
                   endpoints=int(_number(obj, "endpoints", MAX_COUNT)),
                   reason=_bounded_string(obj, "reason") or "running")


@dataclass(frozen=True, slots=True)
class ConflictMarker:
    """A publisher's claim on a cluster name another identity holds (it refused to write)."""

    cluster: str
    cluster_uid: str
    publisher: str
    at: float

    def to_json(self) -> bytes:
        return _dump({"cluster": self.cluster, "clusterUid": self.cluster_uid, "publisher": self.publisher,
                      "at": self.at})

    @classmethod
    def from_json(cls, raw: bytes) -> ConflictMarker:
        obj = _load_object(raw)
        return cls(cluster=_string(obj, "cluster"), cluster_uid=_bounded_string(obj, "clusterUid"),
                   publisher=_bounded_string(obj, "publisher"), at=_number(obj, "at", MAX_TIMESTAMP))


@dataclass(frozen=True, slots=True)
class RegistryIdentity:
    """The registry's identity: a random id created once per etcd history (``registry init``)."""

    id: str
    created_at: float

    def to_json(self) -> bytes:
        return _dump({"id": self.id, "createdAt": self.created_at})

    @classmethod
    def new(cls) -> RegistryIdentity:
        return cls(secrets.token_hex(16), round(time.time(), 3))

    @classmethod
    def from_json(cls, raw: bytes) -> RegistryIdentity:
        obj = _load_object(raw)
        identity = _bounded_string(obj, "id")
        if not identity:
            raise InvalidRecord("id", "must not be empty")
        return cls(identity, _number(obj, "createdAt", MAX_TIMESTAMP))
