"""The catalog's process-level limits, and the throttled log line + counter for reaching one.

Every limit is a ``consul`` command-line flag, never something a request can raise. Blocking
queries hold a thread each (the server is the standard library's ``ThreadingHTTPServer``), so
the caps are what bound the role's threads and memory:

* ``max_blocking`` 1024 — blocking queries waiting at once; one more is answered ``429 Too Many
  Requests`` at once, naming the cap (a daprd with ``useCache: true`` holds one).
* ``max_connections`` 2048 — open HTTP connections (each is a thread while it lives, idle
  keep-alive ones included); over the cap a connection gets a bare ``503`` and is closed.
* ``idle_timeout`` 60 s — a connection that sends nothing for this long is closed (below
  consul/api's 90 s idle pool timeout; Go retries a GET on a connection closed while idle).
* ``max_wait`` 600 s — a blocking query's ``wait`` is cut to this (Consul's own maximum is
  10 minutes); ``default_wait`` 300 s when ``index`` comes without ``wait`` (Consul's default).
  Like Consul, up to 1/16 of the wait is added at random so that waiters started together do
  not all return together.
* ``max_request_bytes`` 16 KiB — the request line (a filter naming hundreds of apps fits) and any
  body; more is ``414``/``413`` naming the cap. The standard library caps headers at 100.
* ``max_entries`` 200 — entries in one answer; weights whose exact repetition needs more are
  apportioned within ``1/max_entries`` (:func:`~resolver.resolution.policy.spread`).
* ``max_registrations`` 64 — services registered through ``PUT /v1/agent/service/register``
  at once (each holds a check thread, and a writer thread while passing); one more is ``429``.
  A role registers the sidecars of its own machine, as a Consul agent does: 64 is plenty.
* ``registration_ttl`` 15 s — the lease of a registered record (kept alive at a third of it):
  how long a record outlives a role that died without withdrawing it. 3 s to 300 s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from resolver.observability import metrics
from resolver.observability.throttle import Throttle

log = logging.getLogger(__name__)

CONSUL_MAX_WAIT = 600.0
"""Consul's own cap on a blocking query's wait (10 minutes)."""


@dataclass(frozen=True)
class ConsulLimits:
    max_blocking: int = 1024
    max_connections: int = 2048
    idle_timeout: float = 60.0
    max_wait: float = CONSUL_MAX_WAIT
    default_wait: float = 300.0
    max_request_bytes: int = 16_384
    max_entries: int = 200
    max_registrations: int = 64
    registration_ttl: float = 15.0

    def __post_init__(self) -> None:
        for name in ("max_blocking", "max_connections", "max_entries", "max_registrations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 1024 <= self.max_request_bytes <= 1_048_576:
            raise ValueError(f"max_request_bytes must be between 1024 and 1048576, got {self.max_request_bytes}")
        if not 0 < self.idle_timeout <= 3600:
            raise ValueError(f"idle_timeout must be between 0 and 3600 seconds, got {self.idle_timeout:g}")
        if not 3 <= self.registration_ttl <= 300:
            raise ValueError(f"registration_ttl must be between 3 and 300 seconds, got {self.registration_ttl:g}")
        for name in ("max_wait", "default_wait"):
            value = getattr(self, name)
            if not 0 < value <= CONSUL_MAX_WAIT:
                raise ValueError(f"{name} must be between 0 and {CONSUL_MAX_WAIT:g} seconds (Consul's cap), "
                                 f"got {value:g}")


class LimitLog:
    """Count every time a limit is reached; log at most one line per limit per 10 s."""

    def __init__(self, interval: float = 10.0) -> None:
        self._throttle = Throttle(interval)

    def reached(self, limit: str, detail: str) -> None:
        metrics.CONSUL_LIMIT_REACHED.labels(limit).inc()
        self._throttle.log(log, logging.WARNING, "consul catalog limit %s reached: %s", limit, detail, kind=limit)


LIMITS = LimitLog()
