"""The one retry policy for etcd work: retry :class:`RegistryError` until stopped, by the one backoff.

Waits 0.2 s, 0.4 s, 0.8 s … capped at 5 s (:data:`ETCD_BACKOFF`, a
:class:`~resolver.timing.backoff.Backoff`), each shortened by up to 20 % at random so that a
fleet of resolvers does not reconnect in lock-step after an etcd restart. The sleep ends early
when ``stop`` is set, so shutdown never waits out a backoff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import tenacity

from resolver.errors import RegistryError
from resolver.timing.backoff import Backoff

ETCD_BACKOFF = Backoff(first=0.2, cap=5.0, jitter=0.5)
"""etcd restarts in seconds: retry soon, and never wait more than 5 s once it is back. Half of
each wait is random, so a fleet that lost etcd together spreads its first retries too."""


def attempt_log_level(attempt: int, loud: int = logging.WARNING) -> int:
    """``loud`` on the first, tenth and every fiftieth failure; the rest go to debug (no log floods)."""
    return loud if attempt in (1, 10) or attempt % 50 == 0 else logging.DEBUG


def retry_until_stopped(stop: threading.Event,
                        on_retry: Callable[[int, float, BaseException | None], None]) -> tenacity.Retrying:
    """A ``Retrying`` that retries :class:`RegistryError` until ``stop`` is set (then re-raises)."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        on_retry(state.attempt_number, delay, error)

    def sleep(seconds: float) -> None:
        stop.wait(seconds)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(RegistryError),
        wait=lambda state: ETCD_BACKOFF.delay(state.attempt_number),
        stop=lambda _state: stop.is_set(),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
