"""Log throttling: the first occurrence of a kind of problem is logged, repeats at most once a period.

A flood of identical warnings (a poisoned record re-read on every list, a client sending garbage
in a loop) hides the one line an operator needs and costs CPU; counting what was suppressed and
saying so in the next line keeps the information without the flood.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable


class Throttle:
    """``allow(kind)`` is True at most once per ``period`` seconds per kind; repeats are counted."""

    def __init__(self, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def allow(self, kind: Hashable = None) -> bool:
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.period:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return False
            if len(self._last) > 1024:  # kinds come from data: never let them grow without bound
                self._last.clear()
            self._last[kind] = now
            return True

    def suppressed_note(self, kind: Hashable = None) -> str:
        """`` (N similar suppressed)`` for the line being logged, and reset the count."""
        with self._lock:
            count = self._suppressed.pop(kind, 0)
        return f" ({count} similar suppressed in the last {self.period:.0f}s)" if count else ""
