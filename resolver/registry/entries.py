"""What the cache keeps, and what one registry key/value pair becomes before it is kept.

Split from :mod:`resolver.registry.cache` along the line between *meaning* and *state*: this
module knows the key layout and the record formats (:mod:`resolver.records.schema`) and holds
no state, so decoding a value is a pure function of the prefix, the address policy and the
bytes; the cache decides what a decoded entry does to its view (and counts what failed).

The cache keeps no record objects — 100k endpoints must fit in well under 150 MB — only
``(namespace, app) → cluster → instance → "host:port"`` (:class:`AppEndpoints`), and per app an
immutable snapshot ``cluster → tuple(addresses)`` built on first read after a change and shared
by all readers without locking.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from resolver.records.addresses import AddressPolicy
from resolver.records.schema import (
    ClusterInfo,
    ConflictMarker,
    Heartbeat,
    Keys,
    LastSeen,
    RegistryIdentity,
    endpoint_entry,
)

AppKey = tuple[str, str]  # (namespace, app_id)
Snapshot = Mapping[str, tuple[str, ...]]  # cluster -> addresses
EMPTY: Snapshot = MappingProxyType({})


class AppEndpoints:
    """All instances of one (namespace, app) across clusters."""

    __slots__ = ("_snapshot", "by_cluster")

    def __init__(self) -> None:
        self.by_cluster: dict[str, dict[str, str]] = {}
        self._snapshot: Snapshot | None = None

    def snapshot(self, lock: threading.Lock, withdrawn: frozenset[str]) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is None:
            with lock:
                snapshot = self._snapshot = MappingProxyType({
                    cluster: tuple(sorted(instances.values()))
                    for cluster, instances in self.by_cluster.items() if instances and cluster not in withdrawn
                })
        return snapshot

    def invalidate(self) -> None:
        """The app changed (or what lookups may see of it did): the next read builds a new snapshot."""
        self._snapshot = None


class Endpoint(NamedTuple):
    cluster: str
    namespace: str
    app_id: str
    instance: str
    address: str
    updated_at: float


class Info(NamedTuple):
    cluster: str
    info: ClusterInfo


class Beat(NamedTuple):
    cluster: str
    beat: Heartbeat


class Identity(NamedTuple):
    identity: RegistryIdentity


class Trace(NamedTuple):
    """A cluster's lease-less ``lastseen`` key, or one of its ``conflict/{uid}`` markers."""

    cluster: str
    leaf: str
    value: LastSeen | ConflictMarker


Entry = Endpoint | Info | Beat | Identity | Trace
Decoded = Entry | None


def decode(keys: Keys, policy: AddressPolicy, key: bytes, value: bytes) -> Decoded:
    """Classify a registry key/value; None for keys the cache does not keep (leader, unknown).

    Raises :class:`~resolver.errors.InvalidRecord` (:class:`~resolver.errors.RefusedAddress`
    when ``policy`` refuses the address) for a value that does not parse or disagrees with its key.
    """
    text = key.decode("utf-8", errors="replace")
    if text.startswith(keys.apps):
        parts = keys.parse_endpoint(text)
        return Endpoint(*parts, *endpoint_entry(value, parts, policy))
    if text.startswith(keys.clusters):
        cluster, leaf = keys.parse_cluster_key(text)
        if leaf == "info":
            return Info(cluster, ClusterInfo.from_json(value, cluster))
        if leaf == "heartbeat":
            return Beat(cluster, Heartbeat.from_json(value, cluster))
        if leaf == "lastseen":
            return Trace(cluster, leaf, LastSeen.from_json(value))
        if leaf.startswith("conflict/"):
            return Trace(cluster, leaf, ConflictMarker.from_json(value))
        return None
    if text == keys.identity():
        return Identity(RegistryIdentity.from_json(value))
    return None
