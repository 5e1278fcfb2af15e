"""A pool of etcd leases holding at most ``keys_per_lease`` keys each, kept alive at TTL/3.

etcd slows down as the number of keys attached to one lease grows (every expiry or revoke
deletes them in one go), so a large cluster's records are spread over several leases. The
pool only does bookkeeping and the etcd calls; the writer decides when to call it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from resolver.observability import metrics
from resolver.registry.gateway import EtcdGateway

log = logging.getLogger(__name__)

KEYS_PER_LEASE = 1000


@dataclass
class Lease:
    id: int
    keys: set[str] = field(default_factory=set)
    refreshed_at: float = field(default_factory=time.monotonic)


class LeasePool:
    def __init__(self, gateway: EtcdGateway, ttl: float, keys_per_lease: int = KEYS_PER_LEASE) -> None:
        self.gateway = gateway
        self.ttl = max(1, round(ttl))
        self.keys_per_lease = keys_per_lease
        self._leases: dict[int, Lease] = {}
        self._lease_of: dict[str, int] = {}

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
        if not self._leases:
            return float("inf")
        return min(lease.refreshed_at for lease in self._leases.values()) + self.ttl / 3

    def keepalive(self, only_due: bool = True) -> list[set[str]]:
        """Refresh leases; forget the ones etcd no longer has and return their keys (to re-put)."""
        now = time.monotonic()
        lost: list[set[str]] = []
        for lease in list(self._leases.values()):
            if only_due and now - lease.refreshed_at < self.ttl / 3:
                continue
            remaining = self.gateway.keepalive(lease.id)
            metrics.LEASE_RENEWALS.inc()
            if remaining > 0:
                lease.refreshed_at = time.monotonic()
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

    def abandon(self) -> None:
        """Stop tracking every lease without revoking: their keys expire after one TTL."""
        self._leases.clear()
        self._lease_of.clear()
