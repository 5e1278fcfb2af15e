"""Keeps a :class:`RegistryCache` in step with etcd: list, then watch, forever.

The loop, in the style of a Kubernetes reflector:

1. **List** ``{prefix}/`` (apps and clusters) page by page at one revision and replace the
   cache with it (dropping whatever was not seen again).
2. **Watch** from revision + 1 and apply events.
3. When the watch breaks, **resume** from the last revision seen — if etcd is still the same
   cluster and has not gone back in time (a restored or wiped etcd); otherwise, or when the
   revision was **compacted**, go back to 1.

Connection failures retry with capped exponential backoff and jitter (tenacity). Nothing
here ever raises to the caller: while etcd is unreachable the cache keeps its last state,
``connected`` is False and :meth:`RegistryReader.unreachable_for` grows (``staleAfter`` uses it).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import random
import threading
import time
from collections.abc import Iterator

from resolver.config import EtcdConnection
from resolver.errors import RegistryCompacted, RegistryError
from resolver.observability import metrics
from resolver.registry.cache import RegistryCache
from resolver.registry.gateway import EtcdGateway
from resolver.registry.retry import attempt_log_level, retry_until_stopped
from resolver.registry.schema import Keys
from resolver.registry.watch import DELETE, PrefixWatch

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


class RegistryReader:
    """One etcd connection's list+watch thread and the cache it feeds."""

    def __init__(self, connection: EtcdConnection, progress_interval: float = 2.0) -> None:
        self.connection = connection
        self.keys = Keys(connection.prefix)
        self.gateway = EtcdGateway(connection)
        self.cache = RegistryCache(self.keys)
        self.progress_interval = progress_interval
        self.started_at = time.monotonic()
        self.connected = False
        self.relists = 0
        self.watch_restarts = 0
        self._unreachable_since: float | None = self.started_at
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._watch: PrefixWatch | None = None
        self._cluster_id = 0
        self._resume_revision = 0
        self._thread = threading.Thread(target=self._run, name=f"registry-reader {connection.prefix}",
                                        daemon=True)
        metrics.track_reader(self)

    # -- public ---------------------------------------------------------------------------

    def start(self) -> RegistryReader:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.cancel()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.gateway.close()

    @property
    def synced(self) -> bool:
        """True once the first full list has been loaded (stays True through outages)."""
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(max(0.0, timeout))

    def unreachable_for(self) -> float:
        """Seconds since etcd was last known reachable; 0 while connected."""
        since = self._unreachable_since
        return 0.0 if since is None else time.monotonic() - since

    # -- loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        retrying = retry_until_stopped(self._stop, self._log_retry)
        while not self._stop.is_set():
            try:
                revision = retrying(self._sync)
                self._follow(revision)
            except RegistryCompacted as error:
                log.info("registry watch hit a compacted revision (%s); re-listing", error.compact_revision)
                self._resume_revision = 0
            except RegistryError as error:
                self._mark_unreachable(error)
            if not self._stop.is_set():
                self.watch_restarts += 1
                metrics.WATCH_RESTARTS.inc()
                self._stop.wait(random.uniform(0.05, 0.25))  # no tight loop against a flapping etcd

    def _log_retry(self, attempt: int, delay: float, error: BaseException | None) -> None:
        if error is not None:
            self._mark_unreachable(error)
        log.log(attempt_log_level(attempt), "registry %s unreachable (attempt %d, retrying in %.1fs): %s",
                self.connection, attempt, delay, error)

    def _mark_unreachable(self, error: BaseException) -> None:
        if self.connected:
            log.warning("lost registry %s: %s; serving the last known state", self.connection, error)
        self.connected = False
        metrics.ETCD_ERRORS.labels("watch").inc()
        if self._unreachable_since is None:
            self._unreachable_since = time.monotonic()

    def _mark_reachable(self) -> None:
        self.connected = True
        self._unreachable_since = None

    def _sync(self) -> int:
        """Resume from the last revision when that is safe, else list; return the revision."""
        if self._resume_revision and self._can_resume():
            self._mark_reachable()
            return self._resume_revision
        started = time.monotonic()
        with _no_gc():
            header, pages = self.gateway.list_prefix(self.keys.root)
            revision, self._cluster_id = header
            items = [(key, value) for page in pages for key, value, _ in page]
            self.relists += 1
            metrics.RELISTS.inc()
            stats = self.cache.replace_all(items, revision)
        self._mark_reachable()
        first = not self._synced.is_set()
        self._synced.set()
        log.log(logging.INFO if first or stats.removed or stats.added else logging.DEBUG,
                "registry %s listed at revision %d in %.0f ms: %d endpoints (%d new, %d dropped as stale, "
                "%d invalid skipped)", self.connection, revision, (time.monotonic() - started) * 1000,
                stats.endpoints, stats.added, stats.removed, stats.skipped)
        return revision

    def _can_resume(self) -> bool:
        """Same etcd cluster, and its revision has not gone back behind ours."""
        now = self.gateway.status(self.keys.root)
        if now.cluster_id == self._cluster_id and now.revision >= self._resume_revision:
            return True
        log.warning("registry %s changed identity or went back in time; re-listing", self.connection)
        return False

    def _follow(self, revision: int) -> None:
        """Watch from ``revision + 1`` until stopped; raises when the stream breaks."""
        self._resume_revision = revision
        watch = self._watch = PrefixWatch(self.gateway, self.keys.root, revision + 1, self.progress_interval)
        if self._stop.is_set():
            return
        for batch in watch:
            self._mark_reachable()
            if batch.events:
                self.cache.apply(((e.kind == DELETE, e.key, e.value) for e in batch.events), batch.revision)
            self._resume_revision = max(self._resume_revision, batch.revision)
