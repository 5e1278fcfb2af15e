"""Process-level caps of the component, and the throttled log line a full cap writes.

One socket is shared by every client that can reach it, so each concern gets a bounded share
of the server's threads and nothing a client sends can raise a cap: the values come from
start-up configuration only (``--set maxStreams=…``, ``DAPR_NR_MAX_STREAMS``, ``--config``;
see ``docs/configuration.md``), never from Init. A full cap never makes a call wait for
another client's call: the call is refused at once (``RESOURCE_EXHAUSTED``) or, for a resolve
that would wait for a first registry sync, answered with the fallback at once — exactly what
it would get when ``initialSyncWait`` expires.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from resolver.errors import LimitReached
from resolver.observability import metrics
from resolver.observability.throttle import Throttle

log = logging.getLogger(__name__)

UNARY_WORKERS = 16
"""Server threads kept for short unary calls (Ping, Features, synced resolves, Health Check)."""
ADMIN_SLOTS = 8
"""Init and Close calls running at once (each may wait up to etcdTimeout for etcd)."""
LOG_SECONDS = 10.0
"""At most one line per this many seconds for what a client can trigger at will (a full cap, a
failing or malformed call): a hostile client may do it thousands of times a second, and the
operator needs to know that it happens, not to read it thousands of times."""


class FastLane:
    """At most ``width`` handlers run at once; the others sleep on a semaphore.

    The server's pool must be large (idle streams and first-sync waits each hold a thread), but
    64 runnable threads contending for the GIL cost ~50 % more CPU per call than 16 (measured
    with bench/resolve_throughput.py at concurrency 64). So unary handlers run inside the lane,
    and code that blocks — a first-sync wait, Init/Close waiting for etcd — steps off it first.
    """

    def __init__(self, width: int = UNARY_WORKERS) -> None:
        self._slots = threading.Semaphore(width)
        self._local = threading.local()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self._slots.acquire()
        self._local.held = True
        try:
            yield
        finally:
            self._local.held = False
            self._slots.release()

    @contextlib.contextmanager
    def stepped_off(self) -> Iterator[None]:
        """Give the lane up while blocking (no-op on a thread that does not hold it)."""
        if not getattr(self._local, "held", False):
            yield
            return
        self._local.held = False
        self._slots.release()
        try:
            yield
        finally:
            self._slots.acquire()
            self._local.held = True


class Slots:
    """A non-blocking counting semaphore: take a slot or be told at once that there is none."""

    def __init__(self, name: str, capacity: int, hint: str) -> None:
        self.name = name
        self.capacity = capacity
        self._hint = hint
        self._lock = threading.Lock()
        self._used = 0
        self._log = Throttle(LOG_SECONDS)
        self._gauge = metrics.COMPONENT_SLOTS_IN_USE.labels(name)

    @property
    def used(self) -> int:
        return self._used

    def try_acquire(self) -> bool:
        with self._lock:
            if self._used >= self.capacity:
                full = True
            else:
                self._used += 1
                full = False
                self._gauge.set(self._used)
        if full:
            reached(self.name, f"{self.capacity} {self._hint}", self._log)
        return not full

    def release(self) -> None:
        with self._lock:
            self._used = max(0, self._used - 1)
            self._gauge.set(self._used)


_reach_log = Throttle(LOG_SECONDS)
"""The caps without a :class:`Slots` of their own (instances, registries): one line per cap per period."""


def reached(limit: str, what: str, throttle: Throttle | None = None) -> None:
    """Count and (throttled, per cap) log that the ``limit`` cap is full."""
    metrics.COMPONENT_LIMIT_REACHED.labels(limit).inc()
    (throttle or _reach_log).log(log, logging.WARNING, "limit reached: %s (%s); raise it at start-up if this is "
                                 "legitimate load", limit, what, kind=limit)


def refuse(limit: str, message: str) -> LimitReached:
    """Count/log a full cap and return the error to raise (answered ``RESOURCE_EXHAUSTED``)."""
    reached(limit, message)
    return LimitReached(message)
