"""The one backoff schedule (resolver.timing.backoff) and the three retry loops that wait by it."""

from __future__ import annotations

import pytest

from resolver.etcd.retry import ETCD_BACKOFF
from resolver.publisher.kube_source import KUBE_BACKOFF
from resolver.registry.supervised import FAILURE_BACKOFF
from resolver.timing.backoff import Backoff


def test_doubles_from_first_up_to_the_cap() -> None:
    backoff = Backoff(first=0.2, cap=5.0)
    assert [backoff.delay(n) for n in range(1, 8)] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    assert backoff.delay(0) == backoff.delay(1) == pytest.approx(0.2)  # "no failure yet" waits as the first
    assert backoff.delay(10_000) == 5.0  # no overflow however long the outage


def test_jitter_only_shortens_and_still_spreads_at_the_cap() -> None:
    backoff = Backoff(first=1.0, cap=30.0, jitter=0.2)
    assert backoff.delay(3, rng=lambda: 0.0) == pytest.approx(4.0)
    assert backoff.delay(3, rng=lambda: 0.999999) == pytest.approx(3.2, rel=1e-5)
    at_cap = {round(backoff.delay(50), 3) for _ in range(50)}
    assert len(at_cap) > 1 and all(24.0 <= delay <= 30.0 for delay in at_cap)


@pytest.mark.parametrize(("first", "cap", "jitter"), [(0.0, 1.0, 0.0), (2.0, 1.0, 0.0), (1.0, 2.0, 1.5)])
def test_refuses_a_schedule_that_makes_no_sense(first: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(first=first, cap=cap, jitter=jitter)


def test_the_loops_schedules() -> None:
    """What each loop waited before it shared the one schedule (the cap is never exceeded now)."""
    assert (ETCD_BACKOFF.first, ETCD_BACKOFF.cap) == (0.2, 5.0) and ETCD_BACKOFF.jitter > 0
    assert (FAILURE_BACKOFF.first, FAILURE_BACKOFF.cap) == (1.0, 30.0) and FAILURE_BACKOFF.jitter > 0
    assert (KUBE_BACKOFF.first, KUBE_BACKOFF.cap, KUBE_BACKOFF.jitter) == (0.2, 5.0, 0.0)
