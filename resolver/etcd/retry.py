"""The one retry policy for etcd work: capped exponential backoff with jitter, until stopped.

Waits 0.2 s, 0.4 s, 0.8 s … capped at 5 s, each plus up to 0.2 s of jitter so that a fleet
of resolvers does not reconnect in lock-step after an etcd restart. The sleep ends early when
``stop`` is set, so shutdown never waits out a backoff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import tenacity

from resolver.errors import RegistryError

BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0
BACKOFF_JITTER = 0.2


def attempt_log_level(attempt: int) -> int:
    """Warn on the first, tenth and every fiftieth failure; the rest go to debug (no log floods)."""
    return logging.WARNING if attempt in (1, 10) or attempt % 50 == 0 else logging.DEBUG


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
        wait=tenacity.wait_exponential_jitter(multiplier=BACKOFF_FIRST, max=BACKOFF_MAX, jitter=BACKOFF_JITTER),
        stop=lambda _state: stop.is_set(),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
