"""Capped exponential backoff with jitter: the one schedule every retry loop waits by.

Why one: the etcd requests, the registry reader's supervisor and the Kubernetes reflectors each
had a formula of their own, and they had drifted apart — one of them (tenacity's
``wait_exponential_jitter``) dropped its jitter exactly at the cap, where a fleet that lost etcd
together waits longest and most needs spreading out. Here the jitter is applied after the cap,
and only downwards, so no wait ever exceeds ``cap`` (timeouts and tests can count on it) and
waits at the cap still spread over ``[cap × (1 − jitter), cap]``.

The loops keep their own *parameters* (how soon, how long at most), because their peers differ:
an etcd member restarts in seconds, an unexpected reader failure may be a bug worth not spinning
on, an API server is shared by the whole cluster.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

_MAX_DOUBLINGS = 64
"""Past this many doublings every delay is the cap anyway; stops ``2.0 ** n`` from overflowing."""


@dataclass(frozen=True)
class Backoff:
    """Wait ``first`` seconds after the first failure, twice as long after each further one, never
    more than ``cap``; then take a random share of up to ``jitter`` (0–1) off, so that processes
    that failed together do not retry in lock-step."""

    first: float
    cap: float
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.cap:
            raise ValueError(f"backoff needs 0 < first <= cap, got first={self.first}, cap={self.cap}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter is a share between 0 and 1, got {self.jitter}")

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait after the ``attempt``-th failure in a row (1 for the first).

        ``rng`` returns a number in [0, 1); tests pass a constant to make the schedule exact.
        """
        doublings = min(max(attempt, 1) - 1, _MAX_DOUBLINGS)
        return min(self.cap, self.first * 2.0 ** doublings) * (1.0 - self.jitter * rng())
