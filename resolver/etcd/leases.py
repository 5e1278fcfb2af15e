"""A pool of etcd leases holding at most ``keys_per_lease`` keys each, kept alive at TTL/3.

etcd slows down as the number of keys attached to one lease grows (every expiry or revoke
deletes them in one go), so a large cluster's records are spread over several leases. The
pool only does bookkeeping and the etcd calls; the writer decides when to call it.

Keep-alives go over one long-lived stream (:class:`~resolver.etcd.keepalive.LeaseKeeper`),
all due leases in one round trip — this is what works through ``etcd grpc-proxy``.

*Adopted* leases are a predecessor's (the previous process of this same cluster, found on
this cluster's own records at start-up): the pool keeps them alive too, until the writer's
first full sync has moved every record onto its own leases, so a restart never opens a gap
however long the new process takes to read its source. Only leases found on this cluster's
own records are ever adopted — never another cluster's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from resolver.etcd.gateway import EtcdGateway
from resolver.etcd.keepalive import LeaseKeeper
from resolver.observability import metrics

log = logging.getLogger(__name__)

KEYS_PER_LEASE = 1000


@dataclass
class Lease:
    id: int
    keys: set[str] = field(default_factory=set)
    refreshed_at: float = field(default_factory=time.monotonic)


class LeasePool:
    def __init__(self, gateway: EtcdGateway, ttl: float, keys_per_lease: int = KEYS_PER_LEASE,
                 keeper: LeaseKeeper | None = None) -> None:
        self.gateway = gateway
        self.ttl = max(1, round(ttl))
        self.keys_per_lease = keys_per_lease
        self.keeper = keeper or LeaseKeeper(gateway)
        self._leases: dict[int, Lease] = {}
        self._lease_of: dict[str, int] = {}
        self._adopted: dict[int, float] = {}  # predecessor lease id -> last refresh (monotonic)

    def adopt(self, lease_ids: set[int]) -> None:
        """Keep a predecessor's leases alive until :meth:`release_adopted` (first sync written)."""
        for lease_id in lease_ids - set(self._leases) - {0}:
            self._adopted.setdefault(lease_id, 0.0)

    def release_adopted(self) -> int:
        """Stop refreshing adopted leases: they expire within one TTL (their keys are ours now)."""
        count = len(self._adopted)
        self._adopted.clear()
        return count

    @property
    def adopted(self) -> set[int]:
        return set(self._adopted)

    def lease_of(self, key: str) -> int | None:
        return self._lease_of.get(key)

    def assign(self, key: str) -> int:
        """The lease ``key`` should be written with: its current one, or one with room."""
        current = self._lease_of.get(key)
        if current is not None:
            return current
        lease = next((lease for lease in self._leases.values() if len(lease.keys) < self.keys_per_lease), None)
        if lease is None:
            lease = self._grant()
        lease.keys.add(key)
        self._lease_of[key] = lease.id
        return lease.id

    def release(self, key: str) -> None:
        lease_id = self._lease_of.pop(key, None)
        if lease_id is not None and lease_id in self._leases:
            self._leases[lease_id].keys.discard(key)

    def _grant(self) -> Lease:
        lease = Lease(self.gateway.grant(self.ttl))
        self._leases[lease.id] = lease
        log.debug("granted lease %x (ttl %ds)", lease.id, self.ttl)
        return lease

    def next_due(self) -> float:
        times = [lease.refreshed_at for lease in self._leases.values()] + list(self._adopted.values())
        if not times:
            return float("inf")
        return min(times) + self.ttl / 3

    def keepalive(self, only_due: bool = True) -> list[set[str]]:
        """Refresh leases in one round trip; forget the ones etcd no longer has and return their keys."""
        now = time.monotonic()
        due = [lease for lease in self._leases.values() if not only_due or now - lease.refreshed_at >= self.ttl / 3]
        adopted = [i for i, at in self._adopted.items() if not only_due or now - at >= self.ttl / 3]
        if not due and not adopted:
            return []
        before = self.keeper.reconnects
        try:
            answers = self.keeper.refresh([lease.id for lease in due] + adopted)
        finally:
            if self.keeper.reconnects > before:
                metrics.KEEPALIVE_RECONNECTS.inc(self.keeper.reconnects - before)
        metrics.LEASE_RENEWALS.inc(len(answers))
        refreshed = time.monotonic()
        for lease_id in adopted:
            if answers.get(lease_id, 0) > 0:
                self._adopted[lease_id] = refreshed
            else:
                self._adopted.pop(lease_id, None)  # the predecessor revoked it or it expired: nothing to keep
        lost: list[set[str]] = []
        for lease in due:
            if answers.get(lease.id, 0) > 0:
                lease.refreshed_at = refreshed
                continue
            metrics.LEASE_LOSSES.inc()
            log.warning("lease %x is gone (expired or revoked): re-registering its %d keys on a new lease",
                        lease.id, len(lease.keys))
            lost.append(self.forget(lease.id))
        return lost

    def forget(self, lease_id: int) -> set[str]:
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            return set()
        for key in lease.keys:
            self._lease_of.pop(key, None)
        return lease.keys

    def revoke_all(self) -> None:
        """Withdraw: revoking deletes every key on the leases at once."""
        for lease_id in list(self._leases):
            self.gateway.revoke(lease_id)
            self.forget(lease_id)
        self._adopted.clear()
        self.keeper.close()

    def abandon(self) -> None:
        """Stop tracking every lease without revoking: their keys expire after one TTL."""
        self._leases.clear()
        self._lease_of.clear()
        self._adopted.clear()
        self.keeper.close()
