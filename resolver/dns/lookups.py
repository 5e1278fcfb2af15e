"""Bounded host-name lookups for the DNS bridge: fallback names and host-name endpoints.

The system resolver (``getaddrinfo``: ``/etc/hosts``, then the upstream in resolv.conf) is
the only way to honour the operator's name service configuration, and it cannot be
cancelled: a black-holed upstream holds a thread for glibc's whole retry schedule. So:

* Lookups run in two small thread pools. Hosts that resolved before ("known") have their own
  lane, so a flood of never-seen names (random in-zone names each map to a distinct fallback
  name) cannot delay the names real callers use.
* A lane accepts at most ``threads + lookup_queue`` outstanding lookups (a timed-out lookup
  still counts until its thread returns); beyond that the caller is told FAILED at once.
* Each wait is bounded by ``lookup_timeout``; a timeout is FAILED — the bridge answers
  SERVFAIL, never NXDOMAIN, because "we don't know" must not be cached as "does not exist".
* Results are cached for ``lookup_cache_seconds``, failures included (a negative cache), in a
  bounded table. A known host whose refresh fails keeps its last good addresses (serve-stale,
  RFC 8767) until it has failed for ten cache periods.
* Concurrent queries for one host share one lookup.
"""

from __future__ import annotations

import asyncio
import queue as queue_module
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from resolver.dns.limits import LIMITS, DnsLimits
from resolver.observability import metrics

STALE_PERIODS = 10
"""How many cache periods a known host's last good answer outlives failing refreshes."""


class Found(StrEnum):
    OK = "ok"  # the host exists (addresses may still be empty for one family)
    NXDOMAIN = "nxdomain"  # the system resolver says the name does not exist
    FAILED = "failed"  # timeout, upstream failure, or no capacity: unknown


@dataclass(frozen=True, slots=True)
class HostAddresses:
    found: Found
    v4: tuple[str, ...] = ()
    v6: tuple[str, ...] = ()


UNKNOWN = HostAddresses(Found.FAILED)


def system_lookup(host: str) -> HostAddresses:
    """``getaddrinfo`` for both families (blocking; runs in a lookup thread)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        if error.errno == socket.EAI_NONAME:
            return HostAddresses(Found.NXDOMAIN)
        if error.errno == getattr(socket, "EAI_NODATA", None):
            return HostAddresses(Found.OK)
        return UNKNOWN
    except (OSError, UnicodeError):
        return UNKNOWN
    v4 = tuple(dict.fromkeys(str(i[4][0]) for i in infos if i[0] == socket.AF_INET))
    v6 = tuple(dict.fromkeys(str(i[4][0]).partition("%")[0] for i in infos if i[0] == socket.AF_INET6))
    return HostAddresses(Found.OK, v4, v6)


@dataclass(slots=True)
class _Entry:
    result: HostAddresses
    expires: float
    good: HostAddresses | None  # the last OK result (serve-stale)
    good_until: float


_Job = tuple[Callable[[str], HostAddresses], str, asyncio.AbstractEventLoop, "asyncio.Future[HostAddresses]"]


class _Lane:
    """A fixed set of *daemon* threads: one stuck in ``getaddrinfo`` must not hold up the process's exit.

    (``ThreadPoolExecutor`` joins its threads at interpreter exit, so a black-holed upstream
    would delay a SIGTERM by glibc's whole retry schedule.)
    """

    def __init__(self, name: str, threads: int, queue: int) -> None:
        self.name = name
        self.threads = threads
        self.capacity = threads + queue
        self.outstanding = 0
        self._jobs: queue_module.SimpleQueue[_Job | None] = queue_module.SimpleQueue()
        self._started: list[threading.Thread] = []

    def submit(self, lookup: Callable[[str], HostAddresses], host: str) -> asyncio.Future[HostAddresses]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[HostAddresses] = loop.create_future()
        if len(self._started) < self.threads:
            thread = threading.Thread(target=self._work, name=f"dns-lookup-{self.name}-{len(self._started)}",
                                      daemon=True)
            self._started.append(thread)
            thread.start()
        self._jobs.put((lookup, host, loop, future))
        return future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            lookup, host, loop, future = job
            try:
                result = lookup(host)
            except Exception:  # the lookup function reports failures as FAILED; this is a bug guard
                result = UNKNOWN
            try:
                loop.call_soon_threadsafe(_settle, future, result)
            except RuntimeError:  # the loop has closed: nobody is waiting any more
                return

    def close(self) -> None:
        for _ in self._started:
            self._jobs.put(None)


def _settle(future: asyncio.Future[HostAddresses], result: HostAddresses) -> None:
    if not future.done():
        future.set_result(result)


class HostLookups:
    def __init__(self, limits: DnsLimits, lookup: Callable[[str], HostAddresses] = system_lookup) -> None:
        self.limits = limits
        self._lookup = lookup
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[HostAddresses]] = {}
        self._new = _Lane("new", limits.lookups, limits.lookup_queue)
        self._known = _Lane("known", max(2, limits.lookups // 2), limits.lookup_queue)

    def peek(self, host: str) -> HostAddresses | None:
        """The cached result for ``host`` if still fresh (no lookup)."""
        entry = self._cache.get(host)
        if entry is None:
            return None
        now = time.monotonic()
        if now >= entry.expires:
            return None
        if entry.result.found is Found.FAILED and entry.good is not None and now < entry.good_until:
            return entry.good
        return entry.result

    async def lookup(self, host: str) -> HostAddresses:
        cached = self.peek(host)
        if cached is not None:
            metrics.DNS_LOOKUPS.labels("cached").inc()
            return cached
        running = self._inflight.get(host)
        if running is None:
            running = self._start(host)
            if running is None:
                return self._fallback_for(host)
        try:
            result = await asyncio.wait_for(asyncio.shield(running), self.limits.lookup_timeout)
        except TimeoutError:
            metrics.DNS_LOOKUPS.labels("timeout").inc()
            LIMITS.reached("lookup_timeout", f"looking up {host[:100]!r} took over {self.limits.lookup_timeout:g}s")
            self._store(host, UNKNOWN)
            return self._fallback_for(host)
        return self._fallback_for(host) if result.found is Found.FAILED else result

    def _fallback_for(self, host: str) -> HostAddresses:
        """After a failure: the last good answer while it may still be served, else FAILED."""
        entry = self._cache.get(host)
        if entry is not None and entry.good is not None and time.monotonic() < entry.good_until:
            return entry.good
        return UNKNOWN

    def _start(self, host: str) -> asyncio.Future[HostAddresses] | None:
        entry = self._cache.get(host)
        lane = self._known if entry is not None and entry.good is not None else self._new
        if lane.outstanding >= lane.capacity:
            metrics.DNS_LOOKUPS.labels("rejected").inc()
            LIMITS.reached("lookup_queue", f"{lane.outstanding} lookups outstanding in the {lane.name}-host lane")
            return None
        lane.outstanding += 1
        future = lane.submit(self._lookup, host)
        self._inflight[host] = future

        def done(finished: asyncio.Future[HostAddresses]) -> None:
            lane.outstanding -= 1
            self._inflight.pop(host, None)
            result = UNKNOWN if finished.cancelled() or finished.exception() else finished.result()
            metrics.DNS_LOOKUPS.labels(result.found.value).inc()
            self._store(host, result)

        future.add_done_callback(done)
        return future

    def _store(self, host: str, result: HostAddresses) -> None:
        now = time.monotonic()
        ttl = self.limits.lookup_cache_seconds
        entry = self._cache.get(host)
        good: HostAddresses | None = None
        good_until = 0.0
        if result.found is Found.OK:
            good, good_until = result, now + ttl * STALE_PERIODS
        elif result.found is Found.FAILED and entry is not None:  # NXDOMAIN is an answer: nothing stale
            good, good_until = entry.good, entry.good_until
        if entry is None and len(self._cache) >= self.limits.lookup_entries:
            self._evict(now)
        self._cache[host] = _Entry(result, now + ttl, good, good_until)

    def _evict(self, now: float) -> None:
        """Drop expired entries; if that frees nothing, the oldest half (insertion order)."""
        expired = [h for h, e in self._cache.items() if e.expires <= now and e.good_until <= now]
        for host in expired:
            del self._cache[host]
        if len(self._cache) >= self.limits.lookup_entries:
            for host in list(self._cache)[: len(self._cache) // 2 + 1]:
                del self._cache[host]

    def close(self) -> None:
        for lane in (self._new, self._known):
            lane.close()
