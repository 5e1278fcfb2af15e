"""The in-memory view of the registry that every resolve reads.

Shaped for the two things that matter: a resolve is a dict lookup plus a random pick
(~1 µs), and 100k endpoints fit in well under 150 MB. So the cache keeps no record objects,
only ``(namespace, app) → cluster → instance → "host:port"``; per app, an immutable
snapshot ``cluster → tuple(addresses)`` is built on first read after a change and shared by
all readers without locking.

Writes come from one reader thread: :meth:`RegistryCache.replace_all` after a (re-)list —
everything not seen again is dropped, like Cilium's kvstore marking keys stale on re-list —
and :meth:`RegistryCache.apply` for watch events. Records that do not parse or disagree with
their key are skipped and counted, never fatal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from resolver.errors import InvalidRecord
from resolver.registry.schema import ClusterInfo, Keys, endpoint_address

log = logging.getLogger(__name__)

AppKey = tuple[str, str]  # (namespace, app_id)
Snapshot = Mapping[str, tuple[str, ...]]  # cluster -> addresses
_EMPTY: Snapshot = MappingProxyType({})


class AppEndpoints:
    """All instances of one (namespace, app) across clusters."""

    __slots__ = ("_snapshot", "by_cluster")

    def __init__(self) -> None:
        self.by_cluster: dict[str, dict[str, str]] = {}
        self._snapshot: Snapshot | None = None

    def snapshot(self, lock: threading.Lock) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is None:
            with lock:
                snapshot = self._snapshot = MappingProxyType({
                    cluster: tuple(sorted(instances.values()))
                    for cluster, instances in self.by_cluster.items() if instances
                })
        return snapshot


class _Endpoint(NamedTuple):
    cluster: str
    namespace: str
    app_id: str
    instance: str
    address: str


class _Info(NamedTuple):
    cluster: str
    info: ClusterInfo


@dataclass(frozen=True)
class ReplaceStats:
    endpoints: int
    added: int
    removed: int
    skipped: int


def _endpoint_keys(apps: dict[AppKey, AppEndpoints]) -> set[tuple[AppKey, str, str]]:
    return {(key, cluster, instance) for key, app in apps.items()
            for cluster, instances in app.by_cluster.items() for instance in instances}


class RegistryCache:
    """Thread-safe for one writer and any number of readers."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self._lock = threading.Lock()
        self._apps: dict[AppKey, AppEndpoints] = {}
        self._clusters: dict[str, ClusterInfo] = {}
        self.invalid_records = 0
        self.revision = 0

    # -- reads ----------------------------------------------------------------------------

    def lookup(self, namespace: str, app_id: str) -> Snapshot:
        """``cluster → addresses`` of one app; empty when the registry has none."""
        app = self._apps.get((namespace, app_id))
        return _EMPTY if app is None else app.snapshot(self._lock)

    def instances(self, namespace: str, app_id: str) -> dict[tuple[str, str], str]:
        """``(cluster, host:port) → instance name`` of one app (the DNS bridge's SRV targets)."""
        app = self._apps.get((namespace, app_id))
        if app is None:
            return {}
        with self._lock:
            return {(cluster, address): instance for cluster, instances in app.by_cluster.items()
                    for instance, address in instances.items()}

    def clusters(self) -> Mapping[str, ClusterInfo]:
        return dict(self._clusters)

    def endpoint_count(self) -> int:
        with self._lock:
            return sum(len(i) for app in self._apps.values() for i in app.by_cluster.values())

    def counts_by_cluster(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            for app in self._apps.values():
                for cluster, instances in app.by_cluster.items():
                    counts[cluster] = counts.get(cluster, 0) + len(instances)
        return counts

    def app_count(self) -> int:
        return len(self._apps)

    def dump(self) -> dict[str, str]:
        """Every endpoint as ``key → host:port`` (for convergence checks and debugging)."""
        with self._lock:
            return {
                f"{self.keys.apps}{cluster}/{namespace}/{app_id}/{instance}": address
                for (namespace, app_id), app in self._apps.items()
                for cluster, instances in app.by_cluster.items()
                for instance, address in instances.items()
            }

    # -- writes ---------------------------------------------------------------------------

    def _decode(self, key: bytes, value: bytes) -> _Endpoint | _Info | None:
        """Classify a registry key/value; None for keys the cache does not keep (leader keys)."""
        text = key.decode("utf-8", errors="replace")
        if text.startswith(self.keys.apps):
            parts = self.keys.parse_endpoint(text)
            return _Endpoint(*parts, endpoint_address(value, parts))
        if text.startswith(self.keys.clusters):
            cluster, leaf = self.keys.parse_cluster_key(text)
            if leaf == "info":
                return _Info(cluster, ClusterInfo.from_json(value, cluster))
        return None

    def _skip(self, key: bytes, error: InvalidRecord) -> None:
        self.invalid_records += 1
        log.warning("skipping registry record %s: %s", key.decode("utf-8", errors="replace")[:300], error)

    def replace_all(self, items: Iterable[tuple[bytes, bytes]], revision: int) -> ReplaceStats:
        """Replace the whole view with a fresh list; whatever was not seen again is dropped."""
        apps: dict[AppKey, AppEndpoints] = {}
        clusters: dict[str, ClusterInfo] = {}
        skipped = count = 0
        for key, value in items:
            try:
                decoded = self._decode(key, value)
            except InvalidRecord as error:
                self._skip(key, error)
                skipped += 1
                continue
            if isinstance(decoded, _Endpoint):
                app = apps.get((decoded.namespace, decoded.app_id))
                if app is None:
                    app = apps[(decoded.namespace, decoded.app_id)] = AppEndpoints()
                app.by_cluster.setdefault(decoded.cluster, {})[decoded.instance] = decoded.address
                count += 1
            elif isinstance(decoded, _Info):
                clusters[decoded.cluster] = decoded.info
        with self._lock:
            old_apps, self._apps = self._apps, apps
            self._clusters = clusters
            self.revision = revision
        if not old_apps:
            return ReplaceStats(count, count, 0, skipped)
        old_keys = _endpoint_keys(old_apps)
        new_keys = _endpoint_keys(apps)
        return ReplaceStats(count, len(new_keys - old_keys), len(old_keys - new_keys), skipped)

    def apply(self, events: Iterable[tuple[bool, bytes, bytes]], revision: int) -> int:
        """Apply watch events ``(is_delete, key, value)``; returns how many changed the view."""
        changed = 0
        for is_delete, key, value in events:
            text = key.decode("utf-8", errors="replace")
            try:
                changed += self._delete(text) if is_delete else self._put(key, value)
            except InvalidRecord as error:
                self._skip(key, error)
                if not is_delete:  # a bad value replaces a good one: drop the old endpoint too
                    changed += self._delete(text)
        self.revision = revision
        return changed

    def _put(self, key: bytes, value: bytes) -> int:
        decoded = self._decode(key, value)
        if decoded is None:
            return 0
        with self._lock:
            if isinstance(decoded, _Info):
                self._clusters[decoded.cluster] = decoded.info
                return 1
            app_key = (decoded.namespace, decoded.app_id)
            app = self._apps.get(app_key)
            if app is None:
                app = self._apps[app_key] = AppEndpoints()
            instances = app.by_cluster.setdefault(decoded.cluster, {})
            if instances.get(decoded.instance) == decoded.address:
                return 0
            instances[decoded.instance] = decoded.address
            app._snapshot = None
            return 1

    def _delete(self, key: str) -> int:
        if key.startswith(self.keys.clusters):
            try:
                cluster, leaf = self.keys.parse_cluster_key(key)
            except InvalidRecord:
                return 0
            with self._lock:
                return 1 if leaf == "info" and self._clusters.pop(cluster, None) is not None else 0
        try:
            cluster, namespace, app_id, instance = self.keys.parse_endpoint(key)
        except InvalidRecord:
            return 0
        with self._lock:
            app = self._apps.get((namespace, app_id))
            instances = app.by_cluster.get(cluster) if app else None
            if app is None or instances is None or instances.pop(instance, None) is None:
                return 0
            if not instances:
                del app.by_cluster[cluster]
            if not app.by_cluster:
                del self._apps[(namespace, app_id)]
            app._snapshot = None
            return 1
