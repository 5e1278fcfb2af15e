"""The Consul index: a number that grows with every change of the registry view and never goes back.

Consul's clients keep the ``X-Consul-Index`` of their last answer and send it back as
``index``; a blocking query returns as soon as the index passes it. Three sources were weighed:

* **etcd's revision** — exact, shared by every replica, but it restarts from 1 on a wiped and
  re-created etcd, so a client holding a high index would block on a registry that changed.
* **a floor persisted in etcd** — gone with the same wipe; **on local disk** — not shared by
  replicas behind one Service, and pods have no disk that outlives them.
* **the wall clock** (chosen): the index is ``max(previous + 1, now in microseconds since the
  epoch)``, taken when the view changes. It survives a restart of the role (a new process starts
  at *now*, above every index the old one handed out) and a wiped etcd (the clock does not care),
  and two replicas hand out indices of the same magnitude. Microseconds keep the ``previous + 1``
  branch theoretical (a million view changes a second would be needed to run ahead of the clock).
  The one way back is a wall-clock step backwards (NTP) larger than the time the role was down;
  clients cope anyway — see below.

Changes are noticed by comparing the cache's ``version`` (bumped on every change of what lookups
see): a poller thread does it every :data:`POLL_SECONDS` and wakes the blocking queries, and
:meth:`ChangeFeed.current` does it on demand, so an index read is never older than the cache it
describes. The server blocks a query only when its ``index`` *equals* the current one, which
proves the client's answer was computed from the current view; any other index (older, or newer
from another replica or a clock step) is answered at once with the current index, which is how
Consul's own clients recover (they adopt the index they are given).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

POLL_SECONDS = 0.02
"""How often the poller compares the cache's version: the added latency of a wake-up at most."""


class Versioned(Protocol):
    @property
    def version(self) -> int: ...


def wall_clock_index() -> int:
    return time.time_ns() // 1000


class ChangeFeed:
    """The current index, and a way to wait until it passes a value (thread-safe)."""

    def __init__(self, cache: Versioned, clock: Callable[[], int] = wall_clock_index,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self._cache = cache
        self._clock = clock
        self._poll = poll_seconds
        self._changed = threading.Condition()
        self._version = cache.version
        self._index = max(1, clock())
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> int:
        """The index of the cache's current version (bumped now if the cache moved since the last look)."""
        version = self._cache.version
        with self._changed:
            if version != self._version:
                self._version = version
                self._index = max(self._index + 1, self._clock())
                self._changed.notify_all()
            return self._index

    def wait_past(self, index: int, timeout: float) -> int:
        """Wait at most ``timeout`` seconds (less if the feed stops) for an index above ``index``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._index <= index and not self._stopped.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return self._index

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def start(self) -> ChangeFeed:
        self._thread = threading.Thread(target=self._run, name="consul-change-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the poller and release every waiter (they answer with what they have)."""
        self._stopped.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stopped.wait(self._poll):
            self.current()
