"""A leading publisher's presence keys: the heartbeat, ``lastseen`` and the conflict marker.

* ``{prefix}/clusters/{cluster}/heartbeat`` — put every TTL/3 on the publisher's own lease.
  Lease keep-alive is not covered by etcd's key RBAC (any credential can keep any lease
  alive), but a *put* inside ``clusters/{cluster}/`` is: readers withdraw a cluster whose
  heartbeat stops advancing, so liveness cannot be faked by a foreign credential.
* ``{prefix}/clusters/{cluster}/lastseen`` — lease-less, rewritten at most every
  :data:`LASTSEEN_INTERVAL`, so ``status`` can say when a vanished cluster was last alive.
* ``{prefix}/clusters/{cluster}/conflict/{clusterUid}`` — written on a short lease by a
  publisher that found its cluster name held by another cluster identity, before it exits.

Keys and values are the registry schema's (:class:`~resolver.records.schema.Heartbeat`,
:class:`~resolver.records.schema.LastSeen`, :class:`~resolver.records.schema.ConflictMarker`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from resolver.etcd.gateway import EtcdGateway
from resolver.records.schema import ConflictMarker, Heartbeat, Keys, LastSeen

log = logging.getLogger(__name__)

LASTSEEN_INTERVAL = 30.0
CONFLICT_TTL = 60


@dataclass
class ClusterPresence:
    """Heartbeat and last-seen bookkeeping of one leading publisher (used by its writer thread)."""

    gateway: EtcdGateway
    cluster: str
    cluster_uid: str
    publisher: str
    lease_ttl: float

    def __post_init__(self) -> None:
        keys = Keys(self.gateway.connection.prefix)
        self.heartbeat_key = keys.heartbeat(self.cluster)
        self.lastseen_key = keys.lastseen(self.cluster)
        # Milliseconds since the epoch: increasing across restarts too, without reading the old value.
        self.seq = time.time_ns() // 1_000_000
        self.next_heartbeat = 0.0
        self.next_lastseen = 0.0
        self.heartbeats = 0

    @property
    def heartbeat_interval(self) -> float:
        return max(0.5, self.lease_ttl / 3)

    def heartbeat(self, lease: int) -> None:
        """Put the heartbeat (on ``lease``, the writer's own) — call when :attr:`next_heartbeat` passed."""
        self.seq += 1
        beat = Heartbeat(self.cluster, self.cluster_uid, self.publisher, self.seq, round(time.time(), 3),
                         self.lease_ttl)
        self.gateway.put(self.heartbeat_key, beat.to_json(), lease=lease)
        self.heartbeats += 1
        self.next_heartbeat = time.monotonic() + self.heartbeat_interval

    def lastseen(self, endpoints: int, reason: str = "running") -> None:
        """Put the lease-less last-seen record (at most every :data:`LASTSEEN_INTERVAL`, and on withdraw)."""
        seen = LastSeen(self.cluster, self.cluster_uid, self.publisher, round(time.time(), 3), endpoints, reason)
        self.gateway.put(self.lastseen_key, seen.to_json())
        self.next_lastseen = time.monotonic() + LASTSEEN_INTERVAL


def write_conflict_marker(gateway: EtcdGateway, cluster: str, cluster_uid: str, publisher: str) -> None:
    """Record our refused claim on a short lease, so ``status``, a metric and an alert can show it."""
    keys = Keys(gateway.connection.prefix)
    lease = gateway.grant(CONFLICT_TTL)
    marker = ConflictMarker(cluster, cluster_uid, publisher, round(time.time(), 3))
    gateway.put(keys.conflict(cluster, cluster_uid or "unknown"), marker.to_json(), lease=lease)
