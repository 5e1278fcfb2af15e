"""Cluster liveness a foreign credential cannot fake: per-cluster heartbeats, judged by the reader.

etcd's key RBAC does not cover lease keep-alive: any credential that can reach etcd — another
cluster's publisher, even a read-only resolver — can keep a dead cluster's lease, and so its
records, alive forever (lease ids are visible to every reader). FailOver would then never fail
over. So the owning publisher also rewrites ``clusters/{cluster}/heartbeat`` (inside its own
RBAC range) every leaseTTL/3, and a reader withdraws a cluster whose heartbeat has not advanced
for longer than the leaseTTL the heartbeat declares.

The clock is the reader's own monotonic clock, and it only counts while the reader's watch is
healthy: a reader cut off from etcd keeps serving the last known state (``staleAfter`` governs
that), and after reconnecting it gives every cluster a fresh TTL before judging. A fresh reader
likewise trusts a cluster for one TTL from when it first saw the heartbeat. Clusters without a
heartbeat key (self-registered sidecars, publishers of the previous release) are governed by
their leases alone, as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Beat:
    seq: int  # only the owner can write the key, so a changed seq is proof of life
    lease_ttl: float
    advanced_at: float  # monotonic


class ClusterLiveness:
    """Heartbeat state per cluster; fed by the reader thread, read by anyone."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._beats: dict[str, _Beat] = {}
        self._healthy_since = self._clock()
        self._lost_at: float | None = None

    def beat(self, cluster: str, seq: int, lease_ttl: float) -> None:
        """A heartbeat value was seen (in a list or an event)."""
        now = self._clock()
        with self._lock:
            old = self._beats.get(cluster)
            advanced_at = old.advanced_at if old is not None and old.seq == seq else now
            self._beats[cluster] = _Beat(seq, lease_ttl, advanced_at)

    def forget(self, cluster: str) -> None:
        """The heartbeat key was deleted (lease expired or withdrawn): leases govern again."""
        with self._lock:
            self._beats.pop(cluster, None)

    def replace(self, beats: dict[str, tuple[int, float]]) -> None:
        """After a list: keep the advance time of unchanged beats, forget vanished ones."""
        now = self._clock()
        with self._lock:
            fresh: dict[str, _Beat] = {}
            for cluster, (seq, ttl) in beats.items():
                old = self._beats.get(cluster)
                fresh[cluster] = _Beat(seq, ttl, old.advanced_at if old is not None and old.seq == seq else now)
            self._beats = fresh

    def watch_lost(self) -> None:
        """The reader lost etcd: the clock stops, so nobody is judged on events we cannot see."""
        with self._lock:
            if self._lost_at is None:
                self._lost_at = self._clock()

    def watch_healthy_again(self) -> None:
        """The reader reconnected: time spent disconnected does not count against anyone."""
        with self._lock:
            self._healthy_since = self._clock()
            self._lost_at = None

    def withdrawn(self) -> frozenset[str]:
        """Clusters whose heartbeat has stood still for longer than their lease TTL."""
        now = self._clock()
        with self._lock:
            if self._lost_at is not None:
                now = self._lost_at
            since = self._healthy_since
            return frozenset(cluster for cluster, beat in self._beats.items()
                             if now - max(beat.advanced_at, since) > beat.lease_ttl)

    def renewal_ages(self) -> dict[str, float]:
        """Seconds since each cluster's heartbeat last advanced (for the renewal-age metric)."""
        now = self._clock()
        with self._lock:
            return {cluster: now - beat.advanced_at for cluster, beat in self._beats.items()}
