"""The in-memory view of the registry that every resolve reads.

Shaped for the two things that matter: a resolve is a dict lookup plus a random pick
(~1 µs), and 100k endpoints fit in well under 150 MB. So the cache keeps no record objects,
only ``(namespace, app) → cluster → instance → "host:port"`` (a zone rides inside that string,
:mod:`resolver.registry.zone_index`); per app, an immutable snapshot ``cluster → tuple(addresses)``
and zone map are built on first read after a change and shared by all readers without locking
(the shapes, and how a key/value pair is decoded into them, are :mod:`resolver.registry.entries`).

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
  while publishers re-register, so each cluster's old records are *carried over* until it
  syncs in the new history (:mod:`resolver.registry.carry_over`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping

from resolver.errors import InvalidRecord, RefusedAddress
from resolver.observability import metrics
from resolver.observability.throttle import Throttle
from resolver.records.addresses import DEFAULT_POLICY, AddressPolicy
from resolver.records.schema import ClusterInfo, ConflictMarker, Keys, LastSeen, RegistryIdentity
from resolver.registry.carry_over import Carried, CarryOver
from resolver.registry.entries import (
    EMPTY,
    AppEndpoints,
    AppKey,
    Beat,
    Decoded,
    Endpoint,
    Entry,
    Identity,
    Info,
    ReplaceStats,
    Snapshot,
    Trace,
    collect,
    decode,
    replace_stats,
    stored_values,
)
from resolver.registry.liveness import ClusterLiveness
from resolver.registry.zone_index import NO_ZONES, HostZones, Zones, address_of, stored

log = logging.getLogger(__name__)


class RegistryCache:
    """Thread-safe for one writer and any number of readers."""

    def __init__(self, keys: Keys, policy: AddressPolicy = DEFAULT_POLICY, carry_over: float = 120.0) -> None:
        self.keys = keys
        self.policy = policy
        self.liveness = ClusterLiveness()
        self._lock = threading.Lock()
        self._apps: dict[AppKey, AppEndpoints] = {}
        self._clusters: dict[str, ClusterInfo] = {}
        self._withdrawn: frozenset[str] = frozenset()
        self._carry = CarryOver(carry_over)  # its lock is never taken inside _lock (finish takes _lock inside it)
        self._hosts: HostZones | None = None  # built when zone_of_host is first asked (the consul role)
        self.version = 0
        """Bumped on every change of what lookups see (events, lists, withdrawals): answer caches key on it."""
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
        return EMPTY if app is None else app.snapshot(self._lock, self._withdrawn)

    def zones(self, namespace: str, app_id: str) -> Zones:
        """``host:port → zone`` of one app's endpoints that have a zone: immutable, rebuilt with its snapshot."""
        app = self._apps.get((namespace, app_id))
        return NO_ZONES if app is None else app.zones(self._lock, self._withdrawn)

    def zone_of_host(self, host: str) -> str:
        """The zone of a record whose host is ``host`` (an IP as a socket reports it); "" if none has one.

        The first call builds the index (:class:`~resolver.registry.zone_index.HostZones`), which
        every later change keeps current."""
        hosts = self._hosts
        if hosts is None:
            with self._lock:
                hosts = self._hosts
                if hosts is None:
                    hosts = self._hosts = HostZones(stored_values(self._apps))
        return hosts.get(host)

    def instances(self, namespace: str, app_id: str) -> dict[tuple[str, str], str]:
        """``(cluster, host:port) → instance name`` of one app (the DNS bridge's SRV targets)."""
        app = self._apps.get((namespace, app_id))
        if app is None:
            return {}
        withdrawn = self._withdrawn
        with self._lock:
            return {(cluster, address_of(value)): instance for cluster, instances in app.by_cluster.items()
                    if cluster not in withdrawn for instance, value in instances.items()}

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
        return self._carry.clusters

    def tick(self, now: float | None = None) -> None:
        """Re-judge heartbeats and carried-over records; the reader calls this about once a second."""
        now = time.monotonic() if now is None else now
        for cluster in self._carry.expired(now):
            log.warning("cluster %s did not sync again in the new registry history within %.0fs; "
                        "dropping its old records", cluster, self._carry.seconds)
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
            app.invalidate()

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
                f"{self.keys.apps}{cluster}/{namespace}/{app_id}/{instance}": address_of(value)
                for (namespace, app_id), app in self._apps.items()
                for cluster, instances in app.by_cluster.items()
                for instance, value in instances.items()
            }

    # -- writes ---------------------------------------------------------------------------

    def _decode_or_skip(self, key: bytes, value: bytes) -> Decoded | InvalidRecord:
        """:func:`~resolver.registry.entries.decode`, but every failure — foreseen or not — comes back
        as a value (and is counted and logged)."""
        try:
            return decode(self.keys, self.policy, key, value)
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
        view = collect(items, self._decode_or_skip)
        carried: Carried = {}
        if new_history:
            with self._lock:
                carried = self._carry.carry_into(self._apps, view.apps, view.clusters)
        self.liveness.replace(view.beats)
        self._carry.start(carried)  # never inside _lock: _finish_carry takes _lock while holding the carry lock
        with self._lock:
            old_apps, self._apps = self._apps, view.apps
            self._clusters = view.clusters
            self.identity = view.identity
            self._traces = view.traces
            self.revision = revision
            self.version += 1
            if self._hosts is not None:
                self._hosts = HostZones(stored_values(view.apps))
        return replace_stats(old_apps, view)

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
            carried = self._carry.kept(cluster, (namespace, app_id))  # stay until their cluster syncs
            with self._lock:
                app = self._apps.get((namespace, app_id))
                old = app.by_cluster.pop(cluster, None) if app is not None else None
                if app is not None and old is not None:
                    kept = {instance: value for instance, value in old.items() if instance in carried}
                    if kept:
                        app.by_cluster[cluster] = kept
                    app.invalidate()
                    self._forget_hosts(v for instance, v in old.items() if instance not in kept)
        applied = self.apply(((False, key, value) for key, value in items), max(self.revision, revision))
        if prefix != self.keys.clusters:
            cluster, namespace, app_id, _ = self.keys.parse_endpoint(prefix + "x")
            with self._lock:  # the app is being followed: keep its (possibly empty) entry, so lookups are cheap
                self._apps.setdefault((namespace, app_id), AppEndpoints())
        return applied

    def drop_app(self, namespace: str, app_id: str) -> None:
        """Forget one app entirely (the on-demand scope stopped following it)."""
        with self._lock:
            app = self._apps.pop((namespace, app_id), None)
            if app is not None:
                self._forget_hosts(v for instances in app.by_cluster.values() for v in instances.values())
            self.version += 1

    def _forget_hosts(self, values: Iterable[str]) -> None:
        """These stored values left the cache (call with the lock held)."""
        if self._hosts is not None:
            for value in values:
                self._hosts.replace(value, None)

    def _finish_carry(self, cluster: str) -> None:
        """The cluster synced in the new history (or took too long): drop what it did not re-put."""
        self._carry.finish(cluster, self._delete_endpoint)
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
                if isinstance(decoded, Endpoint) and decoded.updated_at:
                    self._observe_delay(decoded.updated_at)
        self.revision = revision
        if changed:
            self.version += 1
        return changed

    @staticmethod
    def _observe_delay(updated_at: float) -> None:
        """Writer's clock → applied here: how long a change takes to reach this reader (clock skew included)."""
        metrics.EVENT_DELAY.observe(max(0.0, time.time() - updated_at))

    def _put(self, decoded: Entry) -> int:
        if isinstance(decoded, Trace):
            self._traces[(decoded.cluster, decoded.leaf)] = decoded.value
            return 0
        if isinstance(decoded, Beat):
            self.liveness.beat(decoded.cluster, decoded.beat.seq, decoded.beat.lease_ttl)
            return 0
        if isinstance(decoded, Identity):
            self.identity = decoded.identity
            return 0
        if isinstance(decoded, Info):
            with self._lock:
                self._clusters[decoded.cluster] = decoded.info
            if decoded.info.synced_at and decoded.cluster in self.carried_clusters:
                log.info("cluster %s synced in the new registry history; dropping its old records", decoded.cluster)
                self._finish_carry(decoded.cluster)
            return 1
        app_key = (decoded.namespace, decoded.app_id)
        self._carry.confirm(decoded.cluster, app_key, decoded.instance)
        with self._lock:
            app = self._apps.get(app_key)
            if app is None:
                app = self._apps[app_key] = AppEndpoints()
            instances = app.by_cluster.setdefault(decoded.cluster, {})
            value = stored(decoded.address, decoded.zone)
            old = instances.get(decoded.instance)
            if old == value:
                return 0
            instances[decoded.instance] = value
            app.invalidate()
            if self._hosts is not None:
                self._hosts.replace(old, value)
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
        self._carry.confirm(cluster, (namespace, app_id), instance)
        return self._delete_endpoint(cluster, namespace, app_id, instance)

    def _delete_endpoint(self, cluster: str, namespace: str, app_id: str, instance: str) -> int:
        with self._lock:
            app = self._apps.get((namespace, app_id))
            instances = app.by_cluster.get(cluster) if app else None
            value = instances.pop(instance, None) if instances is not None else None
            if app is None or instances is None or value is None:
                return 0
            self._forget_hosts((value,))
            if not instances:
                del app.by_cluster[cluster]
            if not app.by_cluster:
                del self._apps[(namespace, app_id)]
            app.invalidate()
            return 1
