"""The one log throttle: the first line of a kind of problem is logged, repeats at most once a period.

A flood of identical warnings (a poisoned record re-read on every list, a client sending garbage
in a loop, a full cap hit thousands of times a second, an Init carrying thousands of made-up
keys) hides the one line an operator needs and costs CPU; counting what was held back and
saying so in the next line of that kind keeps the information without the flood.

Every throttled log line of the package goes through :class:`Throttle`: the registry cache's
skipped records, the reader's unexpected failures, the component's full caps, failed calls and
malformed requests, the DNS bridge's limits, and unknown configuration keys.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

MAX_KINDS = 1024
"""Kinds remembered at most: kinds come from data (a key, a reason), so they must never grow
without bound; past this the memory is cleared, which at worst lets one extra line through."""


class Throttle:
    """``allow(kind)`` is True at most once per ``period`` seconds per kind; repeats are counted.

    With ``burst``, at most ``burst`` lines are allowed per ``period`` across *all* kinds as well:
    for kinds a client invents (unknown configuration keys), where one line per kind is still a
    flood. Thread-safe: the component's handlers and the DNS bridge's lookup threads share one.
    """

    def __init__(self, period: float, *, burst: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.period = period
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}
        self._recent: deque[float] = deque(maxlen=burst)  # when the last ``burst`` lines were allowed

    def allow(self, kind: Hashable = None) -> bool:
        """True if a line of ``kind`` may be logged now (then call :meth:`suppressed_note` for it)."""
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if (last is not None and now - last < self.period) or self._burst_spent(now):
                if kind not in self._suppressed and len(self._suppressed) >= MAX_KINDS:
                    self._suppressed.clear()
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return False
            if len(self._last) >= MAX_KINDS:
                self._last.clear()
            self._last[kind] = now
            if self.burst is not None:
                self._recent.append(now)
            return True

    def _burst_spent(self, now: float) -> bool:
        return (self.burst is not None and len(self._recent) >= self.burst
                and now - self._recent[0] < self.period)

    def suppressed_note(self, kind: Hashable = None) -> str:
        """`` (N similar suppressed in the last Ps)`` for the line being logged, and reset the count."""
        with self._lock:
            count = self._suppressed.pop(kind, 0)
        return f" ({count} similar suppressed in the last {self.period:.0f}s)" if count else ""

    def log(self, logger: logging.Logger, level: int, message: str, *args: object, kind: Hashable = None,
            exc_info: bool = False) -> bool:
        """Log ``message % args`` plus the suppressed count, unless a line of ``kind`` was logged less
        than ``period`` ago (or the burst is spent); True if logged."""
        if not self.allow(kind):
            return False
        logger.log(level, message + "%s", *args, self.suppressed_note(kind), exc_info=exc_info)
        return True
