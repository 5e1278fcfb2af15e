"""Leader election among a cluster's publisher replicas, on ``{prefix}/clusters/{cluster}/leader``.

A replica becomes leader by creating the key (a transaction that succeeds only if the key
does not exist) on a lease of its own, and stays leader while it keeps that lease alive.
Standbys poll the key and campaign as soon as it is gone — when the leader stops gracefully
(it revokes the lease) or dies (the lease expires).

The election lease is a third of the records' lease TTL (at least 2 s): a standby takes over
well within one record TTL, re-puts every record on its own leases (it has been watching the
pods all along) before the dead leader's records can expire — no gap. A leader that cannot
renew its lease for a full election TTL assumes it lost and steps down without revoking its
record leases, so the new leader has time to take the records over.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from resolver.errors import RegistryError
from resolver.etcd.gateway import EtcdGateway
from resolver.etcd.keepalive import LeaseKeeper
from resolver.observability import metrics
from resolver.records.schema import Keys, LeaderClaim

log = logging.getLogger(__name__)


def default_identity() -> str:
    """Pod name (Kubernetes sets HOSTNAME to it) and PID: unique per replica, readable in etcdctl."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}-{os.getpid()}"


def election_ttl(lease_ttl: float) -> int:
    return max(2, int(lease_ttl // 3))


class LeaderElection:
    def __init__(self, gateway: EtcdGateway, cluster: str, lease_ttl: float, identity: str,
                 on_elected: Callable[[], None], on_lost: Callable[[], None], cluster_uid: str = "",
                 claim_check: Callable[[], BaseException | None] | None = None,
                 on_refused: Callable[[BaseException], None] | None = None) -> None:
        self._claim_check = claim_check
        self._on_refused = on_refused
        self.gateway = gateway
        self.keeper = LeaseKeeper(gateway)  # a stream of our own: works through etcd grpc-proxy
        self.cluster_uid = cluster_uid
        self.key = Keys(gateway.connection.prefix).leader(cluster)
        self.ttl = election_ttl(lease_ttl)
        self.identity = identity
        self._on_elected = on_elected
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._lease: int | None = None
        self._renewed_at = 0.0
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)

    @property
    def leading(self) -> bool:
        return self._lease is not None

    def start(self) -> LeaderElection:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Resign: revoking the election lease lets a standby take over at once."""
        self._stop.set()
        self._thread.join(5)
        if self._lease is not None:
            try:
                self.gateway.revoke(self._lease)
            except RegistryError as error:
                log.warning("could not resign leadership (a standby takes over within %ds): %s", self.ttl, error)
            self._lease = None
            metrics.LEADER.set(0)
        self.keeper.close()

    def _run(self) -> None:
        interval = self.ttl / 3
        while not self._stop.is_set():
            try:
                if self._lease is None:
                    self._campaign()
                else:
                    self._renew()
            except RegistryError as error:
                log.debug("leader election: %s", error)
                if self._lease is not None and time.monotonic() - self._renewed_at >= self.ttl:
                    self._lose(f"could not renew for {self.ttl}s ({error})")
            self._stop.wait(interval)

    def _campaign(self) -> None:
        problem = self._claim_check() if self._claim_check is not None else None
        if problem is not None:
            # Another cluster identity holds our name: campaigning (or waiting silently) is wrong.
            self._stop.set()
            if self._on_refused is not None:
                self._on_refused(problem)
            return
        if self.gateway.get(self.key) is not None:
            return
        lease = self.gateway.grant(self.ttl)
        value = LeaderClaim.new(self.identity, self.cluster_uid).to_json()
        if not self.gateway.create_if_absent(self.key, value, lease):
            self.gateway.revoke(lease)
            return
        self._lease, self._renewed_at = lease, time.monotonic()
        metrics.LEADER.set(1)
        log.info("elected leader of %s as %s", self.key, self.identity)
        self._on_elected()

    def _renew(self) -> None:
        assert self._lease is not None
        if self.keeper.refresh_one(self._lease) <= 0:
            self._lose("the election lease expired")
            return
        self._renewed_at = time.monotonic()

    def _lose(self, why: str) -> None:
        log.warning("lost leadership of %s: %s; standing by", self.key, why)
        self._lease = None
        metrics.LEADER.set(0)
        self._on_lost()
