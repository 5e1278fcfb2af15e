"""``cacheScope=onDemand``: follow only the apps this component is asked about.

In Kubernetes the component runs in *every* application pod, so a full mirror of the registry
in each one multiplies memory, start-up lists and event fan-out by the fleet size, while a pod
calls a handful of apps. This reader knows every cluster (the small ``{prefix}/clusters/``
range: publishers' info and heartbeats, self-registered members) and, for each app it is asked
about, reads that app's range in every cluster at one revision and then watches just those
ranges — all watchers on one multiplexed stream (:mod:`resolver.registry.multiwatch`).

* The first resolve of an app waits for that read (bounded by the caller's ``initialSyncWait``,
  then the fallback); later resolves are the same dict lookup as with a full mirror.
* Apps not asked about for ``idle_seconds`` are dropped, and at most ``max_apps`` are followed
  (least recently used first out): a caller resolving thousands of random ids cannot grow the
  cache or the watch count without bound.
* A newly seen cluster gets a read and a watcher for every followed app.
* Consistency rules are the full reader's: every watcher resumes after the last event applied
  to it; a compacted watcher re-reads its range; a changed or vanished registry identity, a new
  cluster id or a revision gone back re-reads everything. (A new history replaces records at
  once here; the full mirror's per-cluster carry-over is not implemented for this scope.)
* While etcd is unreachable, a new app gets the fallback at once (retried at most every
  ``retry_seconds``); followed apps keep their last known state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from resolver.config import EtcdConnection
from resolver.errors import InvalidRecord, RegistryError
from resolver.observability import metrics
from resolver.registry.addresses import DEFAULT_POLICY, AddressPolicy
from resolver.registry.cache import AppKey
from resolver.registry.identity import read_identity
from resolver.registry.multiwatch import MultiWatch, Range
from resolver.registry.retry import attempt_log_level
from resolver.registry.schema import RegistryIdentity
from resolver.registry.supervised import SupervisedReader
from resolver.registry.watch import DELETE, WatchEvent

log = logging.getLogger(__name__)

MAX_APPS = 256
IDLE_SECONDS = 600.0
RETRY_SECONDS = 1.0


@dataclass
class _Followed:
    ready: threading.Event = field(default_factory=threading.Event)
    last_used: float = field(default_factory=time.monotonic)
    failed_at: float = 0.0
    reading: bool = False  # one caller reads; concurrent first resolves wait for it


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
        self._lock = threading.Lock()
        self._apps: OrderedDict[AppKey, _Followed] = OrderedDict()
        self._clusters: set[str] = set()
        self._resume: dict[Range, int] = {}  # every watched range -> revision of the last event applied
        self._cluster_id = 0
        self._identity: RegistryIdentity | None = None

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

    def ready_for(self, namespace: str, app_id: str, initial_sync_wait: float) -> bool:
        """The resolver's entry point: follow the app, waiting at most ``initial_sync_wait``."""
        return self.follow(namespace, app_id, initial_sync_wait)

    def follow(self, namespace: str, app_id: str, timeout: float) -> bool:
        """Make sure ``namespace/app_id`` is followed; True once its records are in the cache."""
        key = (namespace, app_id)
        now = time.monotonic()
        with self._lock:
            followed = self._apps.get(key)
            if followed is not None:
                followed.last_used = now
                self._apps.move_to_end(key)
                if followed.ready.is_set():
                    return True
                if followed.failed_at and now - followed.failed_at < self.retry_seconds:
                    return False  # etcd was unreachable a moment ago: the fallback, at once
            else:
                followed = self._apps[key] = _Followed()
                self._evict_over_limit()
            reader = not followed.reading
            followed.reading = True
        if not reader:
            return followed.ready.wait(max(0.0, timeout))
        try:
            if not self.wait_synced(timeout - (time.monotonic() - now)) or not self.connected:
                followed.failed_at = time.monotonic()
                return False
            self._read_app(key, followed)
        except RegistryError as error:
            followed.failed_at = time.monotonic()
            log.log(attempt_log_level(1), "first read of app %s/%s failed: %s", namespace, app_id, error)
            return False
        finally:
            followed.reading = False
        return True

    def _evict_over_limit(self) -> None:
        while len(self._apps) > self.max_apps:
            key, _ = self._apps.popitem(last=False)
            self._unfollow(key)

    def _unfollow(self, key: AppKey) -> None:
        namespace, app_id = key
        self.evictions += 1
        for cluster in list(self._clusters):
            watched = self._app_range(cluster, key)
            self._resume.pop(watched, None)
            watch = self._watch
            if watch is not None:
                watch.remove(watched)
        self.cache.drop_app(namespace, app_id)

    def _app_range(self, cluster: str, key: AppKey) -> Range:
        return Range(f"{self.keys.cluster_apps(cluster)}{key[0]}/{key[1]}/")

    def _read_app(self, key: AppKey, followed: _Followed, clusters: list[str] | None = None) -> None:
        """Read the app's range in every (or the given) cluster at one revision, then watch from there."""
        targets = sorted(self._clusters) if clusters is None else clusters
        revision = 0
        for cluster in targets:
            watched = self._app_range(cluster, key)
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
        """Resume every watcher if etcd is the same history, else read everything again."""
        status = self.gateway.status(self.keys.root)
        identity = read_identity(self.gateway, self.keys)
        same = (self._resume and status.cluster_id == self._cluster_id
                and status.revision >= max(self._resume.values(), default=0)
                and (self._identity is None or identity == self._identity))
        if not same:
            if self._resume:
                log.warning("registry %s: cannot resume (new history, new cluster or revision gone back); "
                            "re-reading %d apps", self.connection, len(self._apps))
                if self._identity is not None and identity != self._identity:
                    self.new_histories += 1
                    metrics.REGISTRY_NEW_HISTORY.inc()
            self._read_everything()
        self._cluster_id, self._identity = status.cluster_id, identity
        self._mark_reachable("re-read every followed app" if not same else "resumed every watch")

    def _read_everything(self) -> None:
        self._resume.clear()
        header, pages = self.gateway.list_prefix(self.keys.clusters)
        items = [(k, v) for page in pages for k, v, _ in page]
        self._clusters = {self._cluster_of(k) for k, _ in items} - {""}
        self.cache.replace_range(self.keys.clusters, items, header.revision)
        self._resume[Range(self.keys.clusters)] = header.revision
        self.relists += 1
        metrics.RELISTS.inc()
        for key, followed in list(self._apps.items()):
            if followed.ready.is_set():
                self._read_app(key, followed)
        self._synced.set()

    def _cluster_of(self, key: bytes) -> str:
        try:
            return self.keys.parse_cluster_key(key.decode("utf-8", errors="replace"))[0]
        except InvalidRecord:
            return ""

    def _follow_stream(self) -> None:
        watch = MultiWatch(self.gateway, self.progress_interval, self.keys.root, self._on_events, self._on_compacted)
        with self._lock:
            self._watch = watch
            ranges = dict(self._resume)
        for watched, revision in ranges.items():
            watch.add(watched, revision + 1)
        if not self._stop.is_set():
            watch.run()

    def _on_events(self, watched: Range, events: list[WatchEvent]) -> None:
        self.cache.apply(((e.kind == DELETE, e.key, e.value) for e in events), events[-1].mod_revision)
        with self._lock:
            if watched in self._resume:
                self._resume[watched] = max(self._resume[watched], events[-1].mod_revision)
        if watched.prefix == self.keys.clusters:
            new = {self._cluster_of(e.key) for e in events if e.kind != DELETE} - self._clusters - {""}
            for cluster in sorted(new):
                log.info("registry %s: new cluster %s; following its records of %d apps", self.connection,
                         cluster, len(self._apps))
                self._clusters.add(cluster)
                for key, followed in list(self._apps.items()):
                    if followed.ready.is_set():
                        self._read_app(key, followed, [cluster])

    def _on_compacted(self, watched: Range) -> None:
        """etcd compacted a watcher's start revision: read the range afresh and watch again."""
        log.info("registry %s: watch of %s hit a compacted revision; re-reading it", self.connection, watched.prefix)
        header, pages = self.gateway.list_prefix(watched.prefix)
        self.cache.replace_range(watched.prefix, [(k, v) for page in pages for k, v, _ in page], header.revision)
        self._watch_from(watched, header.revision)

    def _forget_position(self) -> None:
        self._resume.clear()

    def _housekeeping(self) -> None:
        """Heartbeats, and dropping apps nobody asked about for ``idle_seconds``."""
        self.cache.tick()
        now = time.monotonic()
        with self._lock:
            idle = [key for key, followed in self._apps.items() if now - followed.last_used > self.idle_seconds]
            for key in idle:
                del self._apps[key]
        for key in idle:
            self._unfollow(key)
