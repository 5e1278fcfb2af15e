"""What the cache keeps, and what one registry key/value pair becomes before it is kept.

Split from :mod:`resolver.registry.cache` along the line between *meaning* and *state*: this
module knows the key layout and the record formats (:mod:`resolver.records.schema`) and holds
no state, so decoding a value is a pure function of the prefix, the address policy and the
bytes; the cache decides what a decoded entry does to its view (and counts what failed).

The cache keeps no record objects — 100k endpoints must fit in well under 150 MB — only
``(namespace, app) → cluster → instance → "host:port"`` (:class:`AppEndpoints`; an endpoint with
a zone stores ``"host:port\\0zone"`` in that one string, :mod:`resolver.registry.zone_index`),
and per app an immutable snapshot ``cluster → tuple(addresses)`` and zone map ``address → zone``,
both built on first read after a change and shared by all readers without locking.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from operator import contains
from types import MappingProxyType
from typing import NamedTuple

from resolver.errors import InvalidRecord
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
from resolver.registry.zone_index import NO_ZONES, ZONE_MARK, Zones, address_of, split, stored

AppKey = tuple[str, str]  # (namespace, app_id)
Snapshot = Mapping[str, tuple[str, ...]]  # cluster -> addresses
EMPTY: Snapshot = MappingProxyType({})


class AppEndpoints:
    """All instances of one (namespace, app) across clusters."""

    __slots__ = ("_snapshot", "_zones", "by_cluster")

    def __init__(self) -> None:
        self.by_cluster: dict[str, dict[str, str]] = {}
        """cluster → instance → stored value (:func:`~resolver.registry.zone_index.stored`)."""
        self._snapshot: Snapshot | None = None
        self._zones: Zones | None = None

    def snapshot(self, lock: threading.Lock, withdrawn: frozenset[str]) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is None:
            with lock:
                snapshot = self._build(withdrawn)
        return snapshot

    def zones(self, lock: threading.Lock, withdrawn: frozenset[str]) -> Zones:
        """``address → zone`` of the endpoints in :meth:`snapshot` that have a zone (immutable).

        Built only when asked (a zone-aware resolve), so processes that never ask never hold one;
        its keys are the snapshot's own address strings."""
        zones = self._zones
        if zones is None:
            with lock:
                snapshot = self._snapshot
                if snapshot is None:
                    snapshot = self._build(withdrawn)
                found: dict[str, str] = {}
                for cluster, addresses in snapshot.items():
                    values = sorted(self.by_cluster.get(cluster, {}).values())  # the order _build gave addresses
                    if not any(map(contains, values, repeat(ZONE_MARK))):
                        continue
                    pairs: Iterable[tuple[str, str]] = map(split, values)
                    if len(values) == len(addresses):  # always: both come from one dict under the lock
                        pairs = ((address, zone) for address, (_, zone) in zip(addresses, pairs, strict=True))
                    found.update((address, zone) for address, zone in pairs if zone)
                zones = self._zones = MappingProxyType(found) if found else NO_ZONES
        return zones

    def _build(self, withdrawn: frozenset[str]) -> Snapshot:
        """The snapshot (call with the lock held). Stored values sort like their addresses, so
        sorting them sorts the snapshot; a cluster without zones keeps the stored strings
        themselves (no copy)."""
        clusters: dict[str, tuple[str, ...]] = {}
        for cluster, instances in self.by_cluster.items():
            if not instances or cluster in withdrawn:
                continue
            values = sorted(instances.values())
            if any(map(contains, values, repeat(ZONE_MARK))):
                clusters[cluster] = tuple(address_of(value) for value in values)
            else:
                clusters[cluster] = tuple(values)
        self._snapshot = snapshot = MappingProxyType(clusters)
        return snapshot

    def invalidate(self) -> None:
        """The app changed (or what lookups may see of it did): the next read builds a new snapshot."""
        self._snapshot = None
        self._zones = None


class Endpoint(NamedTuple):
    cluster: str
    namespace: str
    app_id: str
    instance: str
    address: str
    zone: str
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


@dataclass
class View:
    """Everything one full list decoded to, before the cache swaps it in whole."""

    apps: dict[AppKey, AppEndpoints] = field(default_factory=dict)
    clusters: dict[str, ClusterInfo] = field(default_factory=dict)
    beats: dict[str, tuple[int, float]] = field(default_factory=dict)
    identity: RegistryIdentity | None = None
    traces: dict[tuple[str, str], LastSeen | ConflictMarker] = field(default_factory=dict)
    endpoints: int = 0
    skipped: int = 0


def collect(items: Iterable[tuple[bytes, bytes]], decoder: Callable[[bytes, bytes], Decoded | InvalidRecord]) -> View:
    """Decode a full list into a :class:`View` (one loop, no call per record: a cold start runs it 100k times)."""
    view = View()
    apps = view.apps
    for key, value in items:
        decoded = decoder(key, value)
        if isinstance(decoded, Endpoint):
            app = apps.get((decoded.namespace, decoded.app_id))
            if app is None:
                app = apps[(decoded.namespace, decoded.app_id)] = AppEndpoints()
            app.by_cluster.setdefault(decoded.cluster, {})[decoded.instance] = stored(decoded.address, decoded.zone)
            view.endpoints += 1
        elif isinstance(decoded, Info):
            view.clusters[decoded.cluster] = decoded.info
        elif isinstance(decoded, Beat):
            view.beats[decoded.cluster] = (decoded.beat.seq, decoded.beat.lease_ttl)
        elif isinstance(decoded, Identity):
            view.identity = decoded.identity
        elif isinstance(decoded, Trace):
            view.traces[(decoded.cluster, decoded.leaf)] = decoded.value
        elif isinstance(decoded, InvalidRecord):
            view.skipped += 1
    return view


def stored_values(apps: Mapping[AppKey, AppEndpoints]) -> list[str]:
    """Every stored value of ``apps`` (to build a :class:`~resolver.registry.zone_index.HostZones`)."""
    return [value for app in apps.values() for instances in app.by_cluster.values() for value in instances.values()]


@dataclass(frozen=True)
class ReplaceStats:
    endpoints: int
    added: int
    removed: int
    skipped: int


def replace_stats(old_apps: Mapping[AppKey, AppEndpoints], view: View) -> ReplaceStats:
    """What a full list changed: endpoints it holds, added and removed since ``old_apps``, records skipped."""
    if not old_apps:
        return ReplaceStats(view.endpoints, view.endpoints, 0, view.skipped)
    old_keys, new_keys = _endpoint_keys(old_apps), _endpoint_keys(view.apps)
    return ReplaceStats(view.endpoints, len(new_keys - old_keys), len(old_keys - new_keys), view.skipped)


def _endpoint_keys(apps: Mapping[AppKey, AppEndpoints]) -> set[tuple[AppKey, str, str]]:
    return {(key, cluster, instance) for key, app in apps.items()
            for cluster, instances in app.by_cluster.items() for instance in instances}
