"""The DNS bridge's process-level limits, and the throttled log line + counter for reaching one.

Every limit is a ``dns`` command-line flag, never a registry or Init setting: a client must
not be able to raise its own cap. The defaults are sized from measurements on a 2-core
machine (see ``docs/dns.md`` §Limits for the numbers behind each one):

* ``tcp_connections`` 256 — an idle connection costs ~6 KB (measured: 250 of them, +1.5 MB
  RSS); one whose client sends and never reads costs at most its buffers (measured: 120 of
  them, +15 MB at the peak), so 256 bound the worst case near 32 MB and stay far below the
  default limit of 1,024 open files. Over the cap a new connection is closed at once (UDP and
  the other connections go on).
* ``tcp_idle`` 10 s — RFC 7766 §6.2.3 recommends seconds, not minutes, for an idle client.
* ``tcp_read`` 3 s — once a message has started, all of it (length prefix included) must
  arrive within this; a client stalled mid-message is dropped.
* ``tcp_write`` 3 s — a reply that cannot be written (the client never reads) within this
  closes the connection and frees its buffers; the idle timer alone cannot see that case.
* ``lookups`` 8 threads, ``lookup_queue`` 16 — fallback and host-name lookups run the system
  resolver (``getaddrinfo``) in threads; a black-holed upstream holds a thread for glibc's
  whole retry schedule (10 s with the defaults), so the pool is small and anything beyond the
  queue gets SERVFAIL at once instead of waiting. Measured against a black-holed upstream
  (50 new names/s for 8 s): every flood name SERVFAIL, a name that resolved before answered
  77/77 times (p99 38 ms, its own lane), fewer than 40 threads in the process.
* ``lookup_timeout`` 2 s — after which the query gets SERVFAIL (never NXDOMAIN: a timeout is
  not an answer). Results, failures included, are cached for ``lookup_cache_seconds``.
* ``pending`` 256 — queries waiting for a lookup (each holds its parsed query, ~2 KB); more
  get SERVFAIL at once.
* ``cache_entries`` 10,000 responses and ``lookup_entries`` 10,000 host names: the memory
  ceiling under a flood of unique names (measured: +6 MB RSS over 50,000 unique names).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from resolver.observability import metrics
from resolver.observability.throttle import Throttle

log = logging.getLogger(__name__)

THROTTLE_SECONDS = 10.0


@dataclass(frozen=True)
class DnsLimits:
    tcp_connections: int = 256
    tcp_idle: float = 10.0
    tcp_read: float = 3.0
    tcp_write: float = 3.0
    lookups: int = 8
    lookup_queue: int = 16
    lookup_timeout: float = 2.0
    lookup_cache_seconds: float = 5.0
    lookup_entries: int = 10_000
    pending: int = 256
    cache_entries: int = 10_000

    def __post_init__(self) -> None:
        for name in ("tcp_connections", "lookups", "pending", "cache_entries", "lookup_entries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lookup_queue < 0:
            raise ValueError(f"lookup_queue must not be negative, got {self.lookup_queue}")
        for name in ("tcp_idle", "tcp_read", "tcp_write", "lookup_timeout", "lookup_cache_seconds"):
            value = getattr(self, name)
            if not 0 < value <= 3600:
                raise ValueError(f"{name} must be a duration between 0 and 3600 seconds, got {value}")


class LimitLog:
    """Count every time a limit is reached; log at most one line per limit per 10 s, with the count."""

    def __init__(self, interval: float = THROTTLE_SECONDS) -> None:
        self.interval = interval
        self._throttle = Throttle(interval)  # the transports' event loop and the lookup threads share it

    def reached(self, limit: str, detail: str) -> None:
        metrics.DNS_LIMIT_REACHED.labels(limit).inc()
        self._throttle.log(log, logging.WARNING, "DNS limit %s reached: %s", limit, detail, kind=limit)


LIMITS = LimitLog()
