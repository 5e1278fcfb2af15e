"""The in-memory view of the registry that every resolve reads.

Shaped for the two things that matter: a resolve is a dict lookup plus a random pick
(~1 µs), and 100k endpoints fit in well under 150 MB. So the cache keeps no record objects,
only ``(namespace, app) → cluster → instance → "host:port"``; per app, an immutable
snapshot ``cluster → tuple(addresses)`` is built on first read after a change and shared by
all readers without locking.

Writes come from one reader thread: :meth:`RegistryCache.replace_all` after a (re-)list —
everything not seen again is dropped, like Cilium's kvstore marking keys stale on re-list —
and :meth:`RegistryCache.apply` for watch events. Records that do not parse, disagree with
their key or carry an address the policy refuses are skipped and counted — and so is a record
that makes the parser fail in any way nobody foresaw: one bad value written by one cluster
must cost exactly that record, never the reader thread that feeds every resolve.

Two more things shape what a lookup sees:

* **Withdrawn clusters** (heartbeat stood still, see :mod:`resolver.registry.liveness`) are
  left out of every snapshot, though their records stay in the cache (``dump`` still equals etcd).
* **A new history** (a wiped and re-created etcd): a re-list must not blank every resolver
  while publishers re-register, so the old records of a cluster that is not yet synced in the
  new history are *carried over* until its ``syncedAt`` appears there (or ``carry_over``
  seconds pass), then whatever it did not re-put is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from resolver.errors import InvalidRecord, RefusedAddress
from resolver.observability import metrics
from resolver.observability.throttle import Throttle
from resolver.records.addresses import DEFAULT_POLICY, AddressPolicy
from resolver.records.schema import (
    ClusterInfo,
    ConflictMarker,
    Heartbeat,
    Keys,
    LastSeen,
    RegistryIdentity,
    endpoint_entry,
)
from resolver.registry.liveness import ClusterLiveness

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

    def snapshot(self, lock: threading.Lock, withdrawn: frozenset[str]) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is None:
            with lock:
                snapshot = self._snapshot = MappingProxyType({
                    cluster: tuple(sorted(instances.values()))
                    for cluster, instances in self.by_cluster.items() if instances and cluster not in withdrawn
                })
        return snapshot


class _Endpoint(NamedTuple):
    cluster: str
    namespace: str
    app_id: str
    instance: str
    address: str
    updated_at: float


class _Info(NamedTuple):
    cluster: str
    info: ClusterInfo


class _Beat(NamedTuple):
    cluster: str
    beat: Heartbeat


class _Identity(NamedTuple):
    identity: RegistryIdentity


class _Trace(NamedTuple):
    """A cluster's lease-less ``lastseen`` key, or one of its ``conflict/{uid}`` markers."""

    cluster: str
    leaf: str
    value: LastSeen | ConflictMarker


_Decoded = _Endpoint | _Info | _Beat | _Identity | _Trace | None


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

    def __init__(self, keys: Keys, policy: AddressPolicy = DEFAULT_POLICY, carry_over: float = 120.0) -> None:
        self.keys = keys
        self.policy = policy
        self.carry_over = carry_over
        self.liveness = ClusterLiveness()
        self._lock = threading.Lock()
        self._apps: dict[AppKey, AppEndpoints] = {}
        self._clusters: dict[str, ClusterInfo] = {}
        self._withdrawn: frozenset[str] = frozenset()
        self._carried: dict[str, set[tuple[AppKey, str]]] = {}
        self._carry_lock = threading.Lock()  # the reader thread and the ticker both touch _carried
        self.version = 0
        """Bumped on every change of what lookups see (events, lists, withdrawals): answer caches key on it."""
        self._carry_deadline = 0.0
        self._traces: dict[tuple[str, str], LastSeen | ConflictMarker] = {}
        self.identity: RegistryIdentity | None = None
        self.skipped: Counter[str] = Counter()  # reason ("invalid", "refused") -> records skipped
        self.revision = 0
        self._skip_log = Throttle(60.0)

    @property
    def invalid_records(self) -> int:
        """Records skipped for any reason since start (invalid or refused by the address policy)."""
        return sum(self.skipped.values())

    # -- reads ----------------------------------------------------------------------------

    def lookup(self, namespace: str, app_id: str) -> Snapshot:
        """``cluster → addresses`` of one app; empty when the registry has none."""
        app = self._apps.get((namespace, app_id))
        return _EMPTY if app is None else app.snapshot(self._lock, self._withdrawn)

    def instances(self, namespace: str, app_id: str) -> dict[tuple[str, str], str]:
        """``(cluster, host:port) → instance name`` of one app (the DNS bridge's SRV targets)."""
        app = self._apps.get((namespace, app_id))
        if app is None:
            return {}
        withdrawn = self._withdrawn
        with self._lock:
            return {(cluster, address): instance for cluster, instances in app.by_cluster.items()
                    if cluster not in withdrawn for instance, address in instances.items()}

    def clusters(self) -> Mapping[str, ClusterInfo]:
        return dict(self._clusters)

    def last_seen(self) -> dict[str, LastSeen]:
        return {cluster: value for (cluster, leaf), value in list(self._traces.items()) if isinstance(value, LastSeen)}

    def gone_clusters(self) -> list[str]:
        """Clusters that left a ``lastseen`` trace but have no live publisher (no ``info``) now."""
        return sorted(cluster for cluster in self.last_seen() if cluster not in self._clusters)

    def conflicts(self) -> dict[str, int]:
        """Live conflict markers per cluster: publishers refused because another identity holds it."""
        counts: dict[str, int] = {}
        for (cluster, leaf) in list(self._traces):
            if leaf.startswith("conflict/"):
                counts[cluster] = counts.get(cluster, 0) + 1
        return counts

    @property
    def withdrawn(self) -> frozenset[str]:
        """Clusters left out of every answer because their heartbeat stood still."""
        return self._withdrawn

    @property
    def carried_clusters(self) -> frozenset[str]:
        """Clusters whose records from a previous etcd history are still served."""
        return frozenset(self._carried)

    def tick(self, now: float | None = None) -> None:
        """Re-judge heartbeats and carried-over records; the reader calls this about once a second."""
        now = time.monotonic() if now is None else now
        if self._carried and now >= self._carry_deadline:
            with self._carry_lock:
                expired = list(self._carried)
            for cluster in expired:
                log.warning("cluster %s did not sync again in the new registry history within %.0fs; "
                            "dropping its old records", cluster, self.carry_over)
                self._finish_carry(cluster)
        withdrawn = self.liveness.withdrawn()
        if withdrawn != self._withdrawn:
            for cluster in withdrawn - self._withdrawn:
                log.warning("withdrawing cluster %s: its heartbeat has not advanced for longer than its lease "
                            "TTL (its publisher is gone, whatever keeps its lease alive)", cluster)
            for cluster in self._withdrawn - withdrawn:
                log.info("cluster %s is alive again (heartbeat advanced)", cluster)
            with self._lock:
                self._withdrawn = withdrawn
                self._invalidate_all()
                self.version += 1

    def _invalidate_all(self) -> None:
        for app in self._apps.values():
            app._snapshot = None

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

    def app_keys(self) -> list[AppKey]:
        """Every ``(namespace, app_id)`` the cache holds (the DNS bridge's case-insensitive index)."""
        with self._lock:
            return list(self._apps)

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

    def _decode(self, key: bytes, value: bytes) -> _Decoded:
        """Classify a registry key/value; None for keys the cache does not keep (leader, unknown)."""
        text = key.decode("utf-8", errors="replace")
        if text.startswith(self.keys.apps):
            parts = self.keys.parse_endpoint(text)
            return _Endpoint(*parts, *endpoint_entry(value, parts, self.policy))
        if text.startswith(self.keys.clusters):
            cluster, leaf = self.keys.parse_cluster_key(text)
            if leaf == "info":
                return _Info(cluster, ClusterInfo.from_json(value, cluster))
            if leaf == "heartbeat":
                return _Beat(cluster, Heartbeat.from_json(value, cluster))
            if leaf == "lastseen":
                return _Trace(cluster, leaf, LastSeen.from_json(value))
            if leaf.startswith("conflict/"):
                return _Trace(cluster, leaf, ConflictMarker.from_json(value))
            return None
        if text == self.keys.identity():
            return _Identity(RegistryIdentity.from_json(value))
        return None

    def _decode_or_skip(self, key: bytes, value: bytes) -> _Decoded | InvalidRecord:
        """Like :meth:`_decode`, but every failure — foreseen or not — comes back as a value."""
        try:
            return self._decode(key, value)
        except InvalidRecord as error:
            self._skip(key, "refused" if isinstance(error, RefusedAddress) else "invalid", str(error))
            return error
        except Exception as error:  # a parser bug must cost one record, never the reader thread
            self._skip(key, "invalid", f"unexpected {type(error).__name__}: {str(error)[:200]}")
            return InvalidRecord("value", f"unexpected {type(error).__name__}")

    def _skip(self, key: bytes, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        metrics.RECORDS_SKIPPED.labels(reason).inc()
        if self._skip_log.allow(reason):
            log.warning("skipping registry record %s (%s): %s%s", key.decode("utf-8", errors="replace")[:300],
                        reason, message, self._skip_log.suppressed_note(reason))

    def replace_all(self, items: Iterable[tuple[bytes, bytes]], revision: int,
                    new_history: bool = False) -> ReplaceStats:
        """Replace the whole view with a fresh list; whatever was not seen again is dropped.

        With ``new_history`` (etcd was wiped and re-created), the old records of clusters that
        are not yet synced in the new list are carried over instead (see the module docstring).
        """
        apps: dict[AppKey, AppEndpoints] = {}
        clusters: dict[str, ClusterInfo] = {}
        beats: dict[str, tuple[int, float]] = {}
        identity: RegistryIdentity | None = None
        traces: dict[tuple[str, str], LastSeen | ConflictMarker] = {}
        skipped = count = 0
        for key, value in items:
            decoded = self._decode_or_skip(key, value)
            if isinstance(decoded, _Endpoint):
                app = apps.get((decoded.namespace, decoded.app_id))
                if app is None:
                    app = apps[(decoded.namespace, decoded.app_id)] = AppEndpoints()
                app.by_cluster.setdefault(decoded.cluster, {})[decoded.instance] = decoded.address
                count += 1
            elif isinstance(decoded, _Info):
                clusters[decoded.cluster] = decoded.info
            elif isinstance(decoded, _Beat):
                beats[decoded.cluster] = (decoded.beat.seq, decoded.beat.lease_ttl)
            elif isinstance(decoded, _Identity):
                identity = decoded.identity
            elif isinstance(decoded, _Trace):
                traces[(decoded.cluster, decoded.leaf)] = decoded.value
            elif isinstance(decoded, InvalidRecord):
                skipped += 1
        carried = self._carry_into(apps, clusters) if new_history else {}
        self.liveness.replace(beats)
        with self._carry_lock:  # never inside _lock: _finish_carry takes _lock while holding this one
            self._carried = carried
            self._carry_deadline = time.monotonic() + self.carry_over
        with self._lock:
            old_apps, self._apps = self._apps, apps
            self._clusters = clusters
            self.identity = identity
            self._traces = traces
            self.revision = revision
            self.version += 1
        if not old_apps:
            return ReplaceStats(count, count, 0, skipped)
        old_keys = _endpoint_keys(old_apps)
        new_keys = _endpoint_keys(apps)
        return ReplaceStats(count, len(new_keys - old_keys), len(old_keys - new_keys), skipped)

    def _carry_into(self, apps: dict[AppKey, AppEndpoints],
                    clusters: dict[str, ClusterInfo]) -> dict[str, set[tuple[AppKey, str]]]:
        """Copy the old records of clusters not yet synced in the new history into ``apps``."""
        carried: dict[str, set[tuple[AppKey, str]]] = {}
        with self._lock:
            for app_key, old_app in self._apps.items():
                for cluster, instances in old_app.by_cluster.items():
                    info = clusters.get(cluster)
                    if info is not None and info.synced_at:
                        continue
                    app = apps.get(app_key)
                    if app is None:
                        app = apps[app_key] = AppEndpoints()
                    target = app.by_cluster.setdefault(cluster, {})
                    for instance, address in instances.items():
                        if instance not in target:
                            target[instance] = address
                            carried.setdefault(cluster, set()).add((app_key, instance))
        for cluster, entries in carried.items():
            log.warning("registry history changed: serving %d old records of cluster %s until it syncs again",
                        len(entries), cluster)
        return carried

    def replace_range(self, prefix: str, items: Iterable[tuple[bytes, bytes]], revision: int) -> int:
        """Replace what the cache holds under ``prefix`` with a fresh read of that range (on-demand scope).

        ``prefix`` is ``{prefix}/clusters/`` (every cluster's meta keys) or one app's range in one
        cluster, ``{prefix}/apps/{cluster}/{namespace}/{appId}/``. Returns the records applied.
        """
        if prefix == self.keys.clusters:
            with self._lock:
                self._clusters.clear()
                self._traces.clear()
            self.liveness.replace({})
        else:
            cluster, namespace, app_id, _ = self.keys.parse_endpoint(prefix + "x")
            with self._carry_lock:  # records carried over from an old history stay until their cluster syncs
                carried = {instance for app_key, instance in self._carried.get(cluster, ())
                           if app_key == (namespace, app_id)}
            with self._lock:
                app = self._apps.get((namespace, app_id))
                old = app.by_cluster.pop(cluster, None) if app is not None else None
                if app is not None and old is not None:
                    kept = {instance: address for instance, address in old.items() if instance in carried}
                    if kept:
                        app.by_cluster[cluster] = kept
                    app._snapshot = None
        applied = self.apply(((False, key, value) for key, value in items), max(self.revision, revision))
        if prefix != self.keys.clusters:
            cluster, namespace, app_id, _ = self.keys.parse_endpoint(prefix + "x")
            with self._lock:  # the app is being followed: keep its (possibly empty) entry, so lookups are cheap
                self._apps.setdefault((namespace, app_id), AppEndpoints())
        return applied

    def drop_app(self, namespace: str, app_id: str) -> None:
        """Forget one app entirely (the on-demand scope stopped following it)."""
        with self._lock:
            self._apps.pop((namespace, app_id), None)
            self.version += 1

    def _confirm(self, cluster: str, app_key: AppKey, instance: str) -> None:
        """An endpoint was written (or deleted) in the new history: it is no longer a carried-over one."""
        if self._carried:
            with self._carry_lock:
                carried = self._carried.get(cluster)
                if carried is not None:
                    carried.discard((app_key, instance))

    def _finish_carry(self, cluster: str) -> None:
        """The cluster synced in the new history (or took too long): drop what it did not re-put."""
        with self._carry_lock:  # held through the deletes: a concurrent re-put (_confirm) waits, then wins
            for (namespace, app_id), instance in list(self._carried.get(cluster, ())):
                self._delete_endpoint(cluster, namespace, app_id, instance)
            self._carried.pop(cluster, None)  # last: until here _confirm's unlocked check sees work pending
        self.version += 1

    def apply(self, events: Iterable[tuple[bool, bytes, bytes]], revision: int) -> int:
        """Apply watch events ``(is_delete, key, value)``; returns how many changed the view."""
        changed = 0
        for is_delete, key, value in events:
            if is_delete:
                changed += self._delete(key.decode("utf-8", errors="replace"))
                continue
            decoded = self._decode_or_skip(key, value)
            if isinstance(decoded, InvalidRecord):  # a bad value replaces a good one: drop the old one too
                changed += self._delete(key.decode("utf-8", errors="replace"))
            elif decoded is not None:
                changed += self._put(decoded)
                if isinstance(decoded, _Endpoint) and decoded.updated_at:
                    self._observe_delay(decoded.updated_at)
        self.revision = revision
        if changed:
            self.version += 1
        return changed

    @staticmethod
    def _observe_delay(updated_at: float) -> None:
        """Writer's clock → applied here: how long a change takes to reach this reader (clock skew included)."""
        metrics.EVENT_DELAY.observe(max(0.0, time.time() - updated_at))

    def _put(self, decoded: _Endpoint | _Info | _Beat | _Identity | _Trace) -> int:
        if isinstance(decoded, _Trace):
            self._traces[(decoded.cluster, decoded.leaf)] = decoded.value
            return 0
        if isinstance(decoded, _Beat):
            self.liveness.beat(decoded.cluster, decoded.beat.seq, decoded.beat.lease_ttl)
            return 0
        if isinstance(decoded, _Identity):
            self.identity = decoded.identity
            return 0
        if isinstance(decoded, _Info):
            with self._lock:
                self._clusters[decoded.cluster] = decoded.info
            if decoded.info.synced_at and decoded.cluster in self.carried_clusters:
                log.info("cluster %s synced in the new registry history; dropping its old records", decoded.cluster)
                self._finish_carry(decoded.cluster)
            return 1
        app_key = (decoded.namespace, decoded.app_id)
        self._confirm(decoded.cluster, app_key, decoded.instance)
        with self._lock:
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
            if leaf == "heartbeat":
                self.liveness.forget(cluster)
                return 0
            if self._traces.pop((cluster, leaf), None) is not None:
                return 0
            with self._lock:
                return 1 if leaf == "info" and self._clusters.pop(cluster, None) is not None else 0
        if key == self.keys.identity():
            self.identity = None
            return 0
        try:
            cluster, namespace, app_id, instance = self.keys.parse_endpoint(key)
        except InvalidRecord:
            return 0
        self._confirm(cluster, (namespace, app_id), instance)
        return self._delete_endpoint(cluster, namespace, app_id, instance)

    def _delete_endpoint(self, cluster: str, namespace: str, app_id: str, instance: str) -> int:
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
