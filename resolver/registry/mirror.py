"""Keeps a :class:`RegistryCache` in step with etcd: list, then watch, forever.

The loop, in the style of a Kubernetes reflector:

1. **List** ``{prefix}/`` (apps, clusters and the registry identity) page by page at one
   revision and replace the cache with it (dropping whatever was not seen again).
2. **Watch** from revision + 1 and apply events.
3. When the watch breaks, **resume** after the last event applied (its ``mod_revision`` + 1;
   before any event, from where the watch started) — never from a response header, which
   during a catch-up carries the store's current revision, not ours. Resume only if etcd is
   still the same history: same cluster id, revision not gone back, and the registry identity
   key (``registry init``) unchanged. Otherwise, or when the revision was **compacted**, go
   back to 1. A changed or vanished identity is a *new history* (a wiped and re-created etcd
   keeps its cluster id): the re-list carries each cluster's old records over until that
   cluster syncs again, so a recovery does not blank every resolver.

The loop around this is supervised (:mod:`resolver.registry.supervised`): backoff on etcd
failures, and any unexpected exception costs a re-list after a backoff, never the thread.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import random
import threading
import time
from collections.abc import Iterator

from resolver.errors import RegistryCompacted
from resolver.etcd.connection import EtcdConnection
from resolver.etcd.multiwatch import MultiWatch, Range
from resolver.etcd.watch import DELETE, WatchEvent
from resolver.observability import metrics
from resolver.records.addresses import DEFAULT_POLICY, AddressPolicy
from resolver.records.schema import RegistryIdentity
from resolver.registry.history_id import read_identity
from resolver.registry.supervised import SupervisedReader

log = logging.getLogger(__name__)



@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic GC while a list builds ~10 objects per record: a 100k-record list makes
    CPython's collector rescan the growing heap dozens of times (~25 % of cold-start time).
    Nothing built here forms cycles, so deferring collection loses nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class RegistryReader(SupervisedReader):
    """One etcd connection's list+watch thread and the full mirror it feeds (``cacheScope=all``)."""

    def __init__(self, connection: EtcdConnection, progress_interval: float = 2.0,
                 policy: AddressPolicy = DEFAULT_POLICY, list_jitter: float = 0.0) -> None:
        super().__init__(connection, progress_interval, policy, "registry-reader")
        self.list_jitter = list_jitter
        """Wait up to this many seconds (uniformly random) before each full list: many full
        mirrors started, or told to re-list, at the same moment spread their lists over this window."""
        self._cluster_id = 0
        self._resume_revision = 0
        self._new_history = False

    def start(self) -> RegistryReader:
        super().start()
        return self

    def would_wait(self, namespace: str, app_id: str, initial_sync_wait: float) -> bool:
        """Only before the first list, and only while ``initial_sync_wait`` since start is not spent:
        the wait is the reader's, not each resolve's, so once it expired resolves fall back at once."""
        del namespace, app_id  # every app is in a full mirror
        return not self.synced and initial_sync_wait - (time.monotonic() - self.started_at) > 0

    def ready_for(self, namespace: str, app_id: str, initial_sync_wait: float,
                  stop: threading.Event | None = None) -> bool:
        """A full mirror is ready for every app once the first list loaded (waiting at most what is
        left of ``initial_sync_wait`` since this reader started)."""
        del namespace, app_id  # every app is in a full mirror
        return self.synced or self._wait_synced_until(self.started_at + initial_sync_wait, stop)

    # -- the scope's part of the loop -----------------------------------------------------

    def _connect(self) -> None:
        self._sync()

    def _follow_stream(self) -> None:
        self._follow(self._resume_revision)

    def _forget_position(self) -> None:
        self._resume_revision = 0

    def _sync(self) -> int:
        """Resume after the last applied event when that is safe, else list; return the revision."""
        if self._resume_revision and self._can_resume():
            self._mark_reachable(f"resumed the watch after revision {self._resume_revision}")
            return self._resume_revision
        self._resume_revision = 0
        if self.list_jitter > 0 and self._stop.wait(random.uniform(0.0, self.list_jitter)):
            return 0
        started = time.monotonic()
        with _no_gc():
            header, pages = self.gateway.list_prefix(self.keys.root)
            revision, self._cluster_id = header
            items = [(key, value) for page in pages for key, value, _ in page]
            self.relists += 1
            metrics.RELISTS.inc()
            known = self.cache.identity
            new_history = self._new_history or (known is not None and self._listed_identity(items) != known)
            stats = self.cache.replace_all(items, revision, new_history=new_history)
        if new_history:
            self.new_histories += 1
            metrics.REGISTRY_NEW_HISTORY.inc()
        self._new_history = False
        self._resume_revision = revision
        self._mark_reachable(f"re-listed at revision {revision}")
        first = not self._synced.is_set()
        self._synced.set()
        if self.cache.identity is None and (first or new_history):
            log.warning("registry %s has no identity key (%s): a wiped and re-created etcd cannot be told "
                        "from the old one; run 'dapr-etcd-resolver registry init' once", self.connection,
                        self.keys.identity())
        log.log(logging.INFO if first or stats.removed or stats.added else logging.DEBUG,
                "registry %s listed at revision %d in %.0f ms: %d endpoints (%d new, %d dropped as stale, "
                "%d invalid skipped)%s", self.connection, revision, (time.monotonic() - started) * 1000,
                stats.endpoints, stats.added, stats.removed, stats.skipped,
                " — a new etcd history: old records kept per cluster until it syncs again" if new_history else "")
        return revision

    def _listed_identity(self, items: list[tuple[bytes, bytes]]) -> RegistryIdentity | None:
        key = self.keys.identity().encode()
        for item_key, value in items:
            if item_key == key:
                try:
                    return RegistryIdentity.from_json(value)
                except Exception:  # an unreadable identity is no identity; the cache counts it
                    return None
        return None

    def _can_resume(self) -> bool:
        """Same etcd history: same cluster, revision not behind ours, same identity key."""
        now = self.gateway.status(self.keys.root)
        if now.cluster_id != self._cluster_id or now.revision < self._resume_revision:
            log.warning("registry %s changed identity or went back in time; re-listing", self.connection)
            return False
        known = self.cache.identity
        if known is None:
            return True
        current = read_identity(self.gateway, self.keys)
        if current != known:
            log.warning("registry %s holds a new history (identity %s, was %s): etcd was wiped or replaced; "
                        "re-listing", self.connection, current.id if current else "missing", known.id)
            self._new_history = True
            return False
        return True

    def _follow(self, revision: int) -> None:
        """Watch from ``revision + 1`` until stopped; raises when the stream breaks.

        ``_resume_revision`` only ever moves to the ``mod_revision`` of an event that has been
        applied, so a stream cut anywhere in a catch-up resumes exactly where it stopped.
        """
        self._resume_revision = revision
        watch = self._watch = MultiWatch(self.gateway, self.progress_interval, self.keys.root,
                                         self._apply_events, self._compacted)
        watch.add(Range(self.keys.root), revision + 1)
        if not self._stop.is_set():
            watch.run()

    def _apply_events(self, _: Range, events: list[WatchEvent]) -> None:
        self._last_contact = time.monotonic()
        self.cache.apply(((e.kind == DELETE, e.key, e.value) for e in events), events[-1].mod_revision)
        self._resume_revision = max(self._resume_revision, events[-1].mod_revision)

    def _compacted(self, _: Range) -> None:
        raise RegistryCompacted(self._resume_revision + 1)
