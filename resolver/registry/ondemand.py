"""``cacheScope=onDemand``: follow only the apps this component is asked about.

In Kubernetes the component runs in *every* application pod, so a full mirror of the registry
in each one multiplies memory, start-up lists and event fan-out by the fleet size, while a pod
calls a handful of apps. This reader knows every cluster (the small ``{prefix}/clusters/``
range: publishers' info and heartbeats, self-registered members) and, for each app it is asked
about, reads that app's range in every cluster at one revision and then watches just those
ranges — all watchers on one multiplexed stream (:mod:`resolver.etcd.multiwatch`).

* The first resolve of an app waits for that read (bounded by the caller's ``initialSyncWait``,
  then the fallback); later resolves are the same dict lookup as with a full mirror.
* Apps not asked about for ``idle_seconds`` are dropped, and at most ``max_apps`` are followed
  (least recently used first out): a caller resolving thousands of random ids cannot grow the
  cache or the watch count without bound.
* A newly seen cluster gets a read and a watcher for every followed app.
* While etcd is unreachable, a new app gets the fallback at once (retried at most every
  ``retry_seconds``); followed apps keep their last known state, and an app first asked about
  during the outage is read as soon as etcd is back.

Consistency rules are the full reader's, per watched range: every watcher resumes after the
last event applied to it; a compacted watcher re-reads its range; a changed or vanished
registry identity, a new cluster id or a revision gone back re-reads everything as one
replacement (a new history carries each cluster's old records until it syncs again, as the full
mirror does). Two invariants make resuming safe, and every read path keeps them:

* a range is in ``_resume`` only once its read has been applied to the cache, and a read that
  fails half-way leaves the ranges it did not finish out of ``_resume``;
* on every resume, each (followed app × known cluster) range missing from ``_resume`` is read
  ("gap filling"), so a read cut by a broken stream is finished, never forgotten.

All reads and all cache writes of etcd data happen under one lock (``_read_lock``), so a first
resolve's read, the watch thread's events and a re-read after reconnecting never interleave.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from resolver.errors import InvalidRecord, RegistryError
from resolver.etcd.connection import EtcdConnection
from resolver.etcd.multiwatch import MultiWatch, Range
from resolver.etcd.retry import attempt_log_level
from resolver.etcd.watch import DELETE, WatchEvent
from resolver.observability import metrics
from resolver.records.addresses import DEFAULT_POLICY, AddressPolicy
from resolver.records.schema import RegistryIdentity
from resolver.registry.entries import AppKey
from resolver.registry.history_id import read_identity
from resolver.registry.supervised import SupervisedReader

log = logging.getLogger(__name__)

MAX_APPS = 256
IDLE_SECONDS = 600.0
RETRY_SECONDS = 1.0


@dataclass
class _Followed:
    ready: threading.Event = field(default_factory=threading.Event)
    last_used: float = field(default_factory=time.monotonic)
    failed_at: float = 0.0


class OnDemandReader(SupervisedReader):
    """The on-demand scope: the reader surface the resolver uses, plus :meth:`follow`."""

    def __init__(self, connection: EtcdConnection, progress_interval: float = 2.0,
                 policy: AddressPolicy = DEFAULT_POLICY, max_apps: int = MAX_APPS,
                 idle_seconds: float = IDLE_SECONDS, retry_seconds: float = RETRY_SECONDS) -> None:
        super().__init__(connection, progress_interval, policy, "registry-ondemand")
        self.max_apps = max_apps
        self.idle_seconds = idle_seconds
        self.retry_seconds = retry_seconds
        self.evictions = 0
        self._lock = threading.Lock()  # guards _apps, _clusters, _resume and the current watch
        self._read_lock = threading.RLock()  # one reader or cache writer at a time (see the module docstring)
        self._apps: OrderedDict[AppKey, _Followed] = OrderedDict()
        self._clusters: set[str] = set()
        self._resume: dict[Range, int] = {}  # every watched range -> revision of the last event applied
        self._cluster_id = 0
        self._identity: RegistryIdentity | None = None
        self._evicted: list[AppKey] = []  # evicted while the read lock was busy; the ticker unfollows them

    def start(self) -> OnDemandReader:
        super().start()
        return self

    @property
    def followed_apps(self) -> int:
        return len(self._apps)

    @property
    def watched_ranges(self) -> int:
        return len(self._resume)

    # -- following apps -------------------------------------------------------------------

    def is_following(self, namespace: str, app_id: str) -> bool:
        """True when the app's records are in the cache (a resolve needs no etcd read)."""
        followed = self._apps.get((namespace, app_id))
        return followed is not None and followed.ready.is_set()

    def would_wait(self, namespace: str, app_id: str, initial_sync_wait: float) -> bool:
        """Until the app's records are in the cache. Unlike the full mirror's, the wait is per app — each
        app is read when first asked about — so ``initial_sync_wait`` counts from that resolve, not from start."""
        del initial_sync_wait
        return not self.is_following(namespace, app_id)

    def ready_for(self, namespace: str, app_id: str, initial_sync_wait: float,
                  stop: threading.Event | None = None) -> bool:
        """Follow the app, waiting at most ``initial_sync_wait`` from now for the first sync and then
        for the app's first read; with ``stop`` set, the sync wait ends at once and nothing is read."""
        if stop is None:
            return self.follow(namespace, app_id, initial_sync_wait)
        deadline = time.monotonic() + initial_sync_wait
        if not self._wait_synced_until(deadline, stop) or stop.is_set():
            return False
        return self.follow(namespace, app_id, max(0.0, deadline - time.monotonic()))

    def follow(self, namespace: str, app_id: str, timeout: float) -> bool:
        """Make sure ``namespace/app_id`` is followed; True once its records are in the cache."""
        key = (namespace, app_id)
        deadline = time.monotonic() + timeout
        with self._lock:
            followed = self._apps.get(key)
            if followed is not None:
                followed.last_used = time.monotonic()
                self._apps.move_to_end(key)
                if followed.ready.is_set():
                    return True
                if followed.failed_at and time.monotonic() - followed.failed_at < self.retry_seconds:
                    return False  # etcd was unreachable a moment ago: the fallback, at once
            else:
                followed = self._apps[key] = _Followed()
            evicted = self._over_limit()
        if not self.wait_synced(deadline - time.monotonic()) or not self._read_lock.acquire(
                timeout=max(0.0, deadline - time.monotonic())):
            followed.failed_at = time.monotonic()
            self._drop_later(evicted)
            return False
        try:
            self._unfollow(evicted)
            if followed.ready.is_set():  # read meanwhile (by a concurrent caller or a re-read)
                return True
            if not self.connected or key not in self._apps:
                followed.failed_at = time.monotonic()
                return False
            self._read_app(key, followed)
        except RegistryError as error:
            followed.failed_at = time.monotonic()
            log.log(attempt_log_level(1), "first read of app %s/%s failed: %s", namespace, app_id, error)
            return False
        finally:
            self._read_lock.release()
        return True

    def _over_limit(self) -> list[AppKey]:
        """Pop the least recently used apps over ``max_apps`` (call with ``_lock`` held)."""
        evicted = []
        while len(self._apps) > self.max_apps:
            evicted.append(self._apps.popitem(last=False)[0])
        self.evictions += len(evicted)
        return evicted

    def _drop_later(self, evicted: list[AppKey]) -> None:
        """Evicted while the read lock was busy: the ticker unfollows them within a second."""
        if evicted:
            with self._lock:
                self._evicted.extend(evicted)

    def _unfollow(self, keys: list[AppKey]) -> None:
        """Stop watching and forget apps already removed from ``_apps`` (call with ``_read_lock`` held)."""
        for key in keys:
            with self._lock:
                if key in self._apps:  # asked about again before this ran: still followed, still watched
                    continue
                ranges = [r for r in (self._app_range(c, key) for c in self._clusters) if r in self._resume]
                for watched in ranges:
                    del self._resume[watched]
                watch = self._watch
            if watch is not None:
                for watched in ranges:
                    watch.remove(watched)
            self.cache.drop_app(*key)

    def _app_range(self, cluster: str, key: AppKey) -> Range:
        return Range(f"{self.keys.cluster_apps(cluster)}{key[0]}/{key[1]}/")

    def _read_app(self, key: AppKey, followed: _Followed) -> None:
        """Read the app's ranges not yet watched, in every known cluster at one revision, then watch them."""
        with self._lock:
            missing = [watched for watched in (self._app_range(c, key) for c in sorted(self._clusters))
                       if watched not in self._resume]
        revision = 0
        for watched in missing:
            header, pages = self.gateway.list_prefix(watched.prefix, at_revision=revision or None)
            revision = revision or header.revision
            self.cache.replace_range(watched.prefix, [(k, v) for page in pages for k, v, _ in page], revision)
            self._watch_from(watched, revision)
        followed.ready.set()
        followed.failed_at = 0.0

    def _watch_from(self, watched: Range, revision: int) -> None:
        with self._lock:
            self._resume[watched] = revision
            watch = self._watch
        if watch is not None:
            watch.add(watched, revision + 1)

    # -- the loop -------------------------------------------------------------------------

    def _connect(self) -> None:
        """Resume every watcher (filling gaps) if etcd is the same history, else read everything again."""
        with self._read_lock:
            status = self.gateway.status(self.keys.root)
            identity = read_identity(self.gateway, self.keys)
            with self._lock:
                resumable = (Range(self.keys.clusters) in self._resume and status.cluster_id == self._cluster_id
                             and status.revision >= max(self._resume.values())
                             and (self._identity is None or identity == self._identity))
            if resumable:
                self._fill_gaps()
            else:
                new_history = self._identity is not None and identity != self._identity
                if self._synced.is_set():
                    log.warning("registry %s: cannot resume (%s); re-reading %d apps", self.connection,
                                "a new history: etcd was wiped or replaced" if new_history
                                else "new cluster, revision gone back or an incomplete read", len(self._apps))
                self._read_everything(new_history, identity)
            self._cluster_id, self._identity = status.cluster_id, identity
            # Inside the lock, before _synced: a first resolve that gets the lock next sees the reader connected.
            self._mark_reachable("resumed every watch" if resumable else "re-read every followed app")
        self._synced.set()

    def _read_everything(self, new_history: bool, identity: RegistryIdentity | None) -> None:
        """Read ``clusters/`` and every followed app in every cluster at one revision; one replacement."""
        with self._lock:
            self._resume.clear()  # nothing may resume until this read is complete
            apps = list(self._apps.items())
        header, pages = self.gateway.list_prefix(self.keys.clusters)
        revision = header.revision
        items = [(k, v) for page in pages for k, v, _ in page]
        clusters = {self._cluster_of(k) for k, _ in items} - {""}
        ranges = {Range(self.keys.clusters): revision}
        for key, _ in apps:
            for cluster in sorted(clusters):
                watched = self._app_range(cluster, key)
                _, app_pages = self.gateway.list_prefix(watched.prefix, at_revision=revision)
                items.extend((k, v) for page in app_pages for k, v, _ in page)
                ranges[watched] = revision
        self.cache.replace_all(items, revision, new_history=new_history)
        self.cache.identity = identity
        with self._lock:
            self._clusters = clusters
            self._resume.update(ranges)
        for _, followed in apps:
            followed.ready.set()
            followed.failed_at = 0.0
        self.relists += 1
        metrics.RELISTS.inc()
        if new_history:
            self.new_histories += 1
            metrics.REGISTRY_NEW_HISTORY.inc()

    def _fill_gaps(self) -> None:
        """Read every (followed app × known cluster) range that a cut read left unwatched."""
        with self._lock:
            apps = list(self._apps.items())
        for key, followed in apps:
            self._read_app(key, followed)

    def _cluster_of(self, key: bytes) -> str:
        try:
            return self.keys.parse_cluster_key(key.decode("utf-8", errors="replace"))[0]
        except InvalidRecord:
            return ""

    def _follow_stream(self) -> None:
        watch = MultiWatch(self.gateway, self.progress_interval, self.keys.root, self._on_events, self._on_compacted)
        with self._read_lock:  # an eviction now either comes first (range not added) or cancels what was added
            with self._lock:
                self._watch = watch
                ranges = dict(self._resume)
            for watched, revision in ranges.items():
                watch.add(watched, revision + 1)
        if not self._stop.is_set():
            watch.run()

    def _on_events(self, watched: Range, events: list[WatchEvent]) -> None:
        with self._read_lock:
            applied = self._resume.get(watched)
            if applied is None:
                return  # a range no longer followed (its app was dropped while the cancel was on its way)
            # Only what is newer than the range's read or last event: a batch taken from a watcher
            # cancelled meanwhile (the app dropped, then asked about and read again) is older.
            events = [e for e in events if e.mod_revision > applied]
            if not events:
                return
            self.cache.apply(((e.kind == DELETE, e.key, e.value) for e in events), events[-1].mod_revision)
            with self._lock:
                self._resume[watched] = events[-1].mod_revision
            if watched.prefix == self.keys.clusters:
                self._add_clusters({self._cluster_of(e.key) for e in events if e.kind != DELETE})

    def _add_clusters(self, seen: set[str]) -> None:
        """Follow the records of clusters seen for the first time, for every followed app."""
        with self._lock:
            new = seen - self._clusters - {""}
            self._clusters |= new  # before the reads: if one fails, gap filling finishes it on resume
            apps = list(self._apps.items())
        for cluster in sorted(new):
            log.info("registry %s: new cluster %s; following its records of %d apps", self.connection,
                     cluster, len(apps))
        if new:
            for key, followed in apps:
                self._read_app(key, followed)

    def _on_compacted(self, watched: Range) -> None:
        """etcd compacted a watcher's start revision: read the range afresh and watch again."""
        log.info("registry %s: watch of %s hit a compacted revision; re-reading it", self.connection, watched.prefix)
        with self._read_lock:
            if watched not in self._resume:
                return  # no longer followed
            header, pages = self.gateway.list_prefix(watched.prefix)
            items = [(k, v) for page in pages for k, v, _ in page]
            self.cache.replace_range(watched.prefix, items, header.revision)
            self._watch_from(watched, header.revision)
            if watched.prefix == self.keys.clusters:
                self._add_clusters({self._cluster_of(k) for k, _ in items})

    def _forget_position(self) -> None:
        with self._read_lock, self._lock:  # not while a first resolve's read is putting its ranges back
            self._resume.clear()

    def _housekeeping(self) -> None:
        """Heartbeats, and dropping apps nobody asked about for ``idle_seconds``."""
        with self._read_lock:  # ending a carry-over deletes records: not in the middle of a read
            self.cache.tick()
        now = time.monotonic()
        with self._lock:
            idle = [key for key, followed in self._apps.items() if now - followed.last_used > self.idle_seconds]
            for key in idle:
                del self._apps[key]
            self.evictions += len(idle)
            dropped, self._evicted = idle + self._evicted, []
        if dropped:
            with self._read_lock:
                self._unfollow(dropped)
