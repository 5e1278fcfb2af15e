"""What every registry reader shares: the supervised loop, health, and the reader surface.

Both cache scopes (the full mirror, :mod:`resolver.registry.mirror`, and the on-demand one,
:mod:`resolver.registry.ondemand`) run the same loop — connect (list, or resume), then follow
one watch stream until it breaks — under the same rules:

* etcd failures retry with capped exponential backoff and jitter (tenacity);
* any *unexpected* exception is logged (throttled), counted, reported through
  :attr:`SupervisedReader.failure` (``registry`` health NOT_SERVING) and followed by a full
  re-read after a backoff — the thread that feeds every resolve never dies;
* while etcd is unreachable the cache keeps its last state, ``connected`` is False and
  :meth:`SupervisedReader.unreachable_for` grows (``staleAfter`` uses it); a member that lost
  quorum is reported as such; recovery is logged with the outage length;
* a ticker re-judges heartbeats (and whatever else a scope keeps) about once a second.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from resolver.errors import RegistryCompacted, RegistryError
from resolver.etcd.connection import EtcdConnection
from resolver.etcd.gateway import EtcdGateway
from resolver.etcd.multiwatch import MultiWatch
from resolver.etcd.retry import attempt_log_level, retry_until_stopped
from resolver.observability import metrics
from resolver.observability.throttle import Throttle
from resolver.records.addresses import AddressPolicy
from resolver.records.schema import Keys
from resolver.registry.cache import RegistryCache
from resolver.timing.backoff import Backoff

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
FAILURE_BACKOFF = Backoff(first=1.0, cap=30.0, jitter=0.2)
"""After an *unexpected* failure (a bug, a poisoned state): slower than etcd's retries, so a
failure that repeats costs a re-read every 30 s at most, not a spin."""
STOP_CHECK_SECONDS = 0.25
"""How often a first-sync wait given a ``stop`` event looks at it."""


class SupervisedReader:
    """Subclasses implement :meth:`_connect`, :meth:`_follow_stream` and :meth:`_forget_position`."""

    def __init__(self, connection: EtcdConnection, progress_interval: float, policy: AddressPolicy,
                 role: str) -> None:
        self.connection = connection
        self.keys = Keys(connection.prefix)
        self.gateway = EtcdGateway(connection)
        self.cache = RegistryCache(self.keys, policy)
        self.progress_interval = progress_interval
        self.started_at = time.monotonic()
        self.connected = False
        self.no_quorum = False
        self.failure: str | None = None
        """Why the loop last failed unexpectedly; None once a read succeeds again."""
        self.relists = self.watch_restarts = self.new_histories = 0
        self._unreachable_since: float | None = self.started_at
        self._outage_started: float | None = None
        self._last_contact = self.started_at
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._watch: MultiWatch | None = None
        self._failures = 0
        self._failure_log = Throttle(60.0)
        self._thread = threading.Thread(target=self._supervise, name=f"{role} {connection.prefix}", daemon=True)
        self._ticker = threading.Thread(target=self._tick, name=f"{role}-ticker {connection.prefix}", daemon=True)
        metrics.track_reader(self)

    # -- the reader surface ---------------------------------------------------------------

    def start(self) -> SupervisedReader:
        self._thread.start()
        self._ticker.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.cancel()
        for thread in (self._thread, self._ticker):
            if thread.is_alive():
                thread.join(timeout)
        self.gateway.close()

    @property
    def synced(self) -> bool:
        """True once the first read has loaded (stays True through outages)."""
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(max(0.0, timeout))

    def unreachable_for(self) -> float:
        """Seconds since etcd was last known reachable; 0 while connected."""
        since = self._unreachable_since
        return 0.0 if since is None else time.monotonic() - since

    @property
    def healthy(self) -> bool:
        """Synced, connected, with quorum, and no unexpected failure pending: ``registry`` SERVING."""
        return self.synced and self.connected and not self.no_quorum and self.failure is None

    def health_reason(self) -> str:
        """Why the registry is not healthy, in words for ``probe`` and logs ("" when healthy)."""
        if self.failure is not None:
            return f"reader failed: {self.failure}"
        if not self.synced:
            return f"never synced (etcd {self.connection} unreachable for {self.unreachable_for():.0f}s)"
        if self.no_quorum:
            return "etcd member has no leader (no quorum); serving the last known state"
        if not self.connected:
            return f"etcd unreachable for {self.unreachable_for():.0f}s; serving the last known state"
        return ""

    def lag_seconds(self) -> float:
        """Seconds since the last event or confirmed progress (or liveness read) from etcd."""
        watch = self._watch
        last = max(self._last_contact, watch.last_contact if watch is not None else 0.0)
        return max(0.0, time.monotonic() - last)

    def _wait_synced_until(self, deadline: float, stop: threading.Event | None) -> bool:
        """Wait for the first sync until ``deadline`` (monotonic); True once synced.

        With ``stop``, the wait is taken in short steps and ends as soon as ``stop`` is set: a
        serve process shutting down must not keep resolves blocked for up to ``initialSyncWait``.
        """
        if stop is None:
            return self.wait_synced(deadline - time.monotonic())
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.wait_synced(min(remaining, STOP_CHECK_SECONDS)):
                break
        return self.synced

    # -- what a scope implements ----------------------------------------------------------
    # Every caller (the resolver, hence the component, the CLI and the DNS bridge) asks these two
    # questions and never which scope it holds: what "ready" means is the scope's business.

    def would_wait(self, namespace: str, app_id: str, initial_sync_wait: float) -> bool:
        """Would :meth:`ready_for` block now? False on the hot path, so that only a resolve that
        really waits pays for a waiting slot (the component bounds them with ``maxSyncWaits``)."""
        raise NotImplementedError

    def ready_for(self, namespace: str, app_id: str, initial_sync_wait: float,
                  stop: threading.Event | None = None) -> bool:
        """Wait (bounded by ``initial_sync_wait``, and ended at once by ``stop``) until a resolve of
        ``namespace/app_id`` can be answered from the cache; True if it can."""
        raise NotImplementedError

    def _connect(self) -> None:
        """List, or resume when etcd is still the same history; raise RegistryError when unreachable."""
        raise NotImplementedError

    def _follow_stream(self) -> None:
        """Follow the watch stream until stopped; raise when it breaks."""
        raise NotImplementedError

    def _forget_position(self) -> None:
        """Forget where the watch stood, so the next :meth:`_connect` reads everything again."""
        raise NotImplementedError

    def _housekeeping(self) -> None:
        """About once a second, on the ticker thread."""
        self.cache.tick()

    # -- the loop -------------------------------------------------------------------------

    def _supervise(self) -> None:
        """Run the loop forever; an unexpected error costs a re-read after a backoff, never the thread."""
        while not self._stop.is_set():
            try:
                self._run()
            except Exception as error:  # the one place nothing may escape from
                self._failures += 1
                self.failure = f"{type(error).__name__}: {str(error)[:200]}"
                self.connected = False
                self._forget_position()
                metrics.READER_FAILURES.inc()
                delay = FAILURE_BACKOFF.delay(self._failures)
                if self._failure_log.allow():
                    log.error("registry reader %s failed unexpectedly (re-reading in %.1fs)%s", self.connection,
                              delay, self._failure_log.suppressed_note(), exc_info=True)
                self._stop.wait(delay)

    def _run(self) -> None:
        retrying = retry_until_stopped(self._stop, self._log_retry)
        while not self._stop.is_set():
            try:
                retrying(self._connect)
                self._follow_stream()
            except RegistryCompacted as error:
                log.info("registry watch hit a compacted revision (%s); re-listing", error.compact_revision)
                self._forget_position()
            except RegistryError as error:
                self._mark_unreachable(error)
            if not self._stop.is_set():
                self.watch_restarts += 1
                metrics.WATCH_RESTARTS.inc()
                self._stop.wait(random.uniform(0.05, 0.25))  # no tight loop against a flapping etcd

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self._housekeeping()
            except Exception:  # a judging bug must not stop future ticks
                log.exception("registry housekeeping failed")

    def _log_retry(self, attempt: int, delay: float, error: BaseException | None) -> None:
        if error is not None:
            self._mark_unreachable(error)
        log.log(attempt_log_level(attempt), "registry %s unreachable (attempt %d, retrying in %.1fs): %s",
                self.connection, attempt, delay, error)

    def _mark_unreachable(self, error: BaseException) -> None:
        if "no leader" in str(error).lower():
            if not self.no_quorum:
                log.warning("registry %s: the etcd member has no leader (lost quorum); serving the last known "
                            "state until it rejoins", self.connection)
            self.no_quorum = True
        if self.connected:
            log.warning("lost registry %s: %s; serving the last known state", self.connection, error)
        self.connected = False
        self.cache.liveness.watch_lost()
        metrics.ETCD_ERRORS.labels("watch").inc()
        if self._unreachable_since is None:
            self._unreachable_since = time.monotonic()
        if self._outage_started is None and self.synced:
            self._outage_started = time.monotonic()

    def _mark_reachable(self, how: str = "") -> None:
        if not self.connected:
            self.cache.liveness.watch_healthy_again()
        self.connected = True
        self.no_quorum = False
        self.failure = None
        self._failures = 0
        self._unreachable_since = None
        self._last_contact = time.monotonic()
        if self._outage_started is not None and how:
            log.warning("registry %s reachable again after %.1fs; %s", self.connection,
                        time.monotonic() - self._outage_started, how)
            self._outage_started = None
