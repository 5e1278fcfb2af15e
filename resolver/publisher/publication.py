"""What a publisher wants in etcd, kept whether or not it currently leads.

Sources (Kubernetes, an inventory file) report their state here: a full list per *scope*
(one namespace, or ``""`` for the whole cluster) with :meth:`Publication.replace`, then changes
with :meth:`Publication.upsert` / :meth:`Publication.remove`. While this replica leads, a
:class:`~resolver.writer.writer.RegistryWriter` makes etcd match; a standby keeps the same
state warm, so on taking over it reconciles etcd against a complete list at once instead of
starting from empty. Nothing is written to etcd until every scope has listed once: a
reconcile against a partial list would delete live records.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from resolver.errors import InvalidRecord, RegistryError, RegistryUnavailable
from resolver.etcd.gateway import EtcdGateway
from resolver.publisher.cluster_ownership import find_conflict
from resolver.records.schema import ClusterInfo, EndpointRecord, Keys
from resolver.registry.history_id import ensure_identity
from resolver.writer.presence import ClusterPresence
from resolver.writer.writer import VERIFY_INTERVAL, RegistryWriter

log = logging.getLogger(__name__)


class Publication:
    def __init__(self, gateway: EtcdGateway, cluster: str, lease_ttl: float, info: ClusterInfo,
                 scopes: Iterable[str] = ("",), *, cluster_uid: str = "", verify_interval: float = VERIFY_INTERVAL,
                 on_refused: Callable[[BaseException], None] | None = None) -> None:
        self.gateway = gateway
        self.cluster_uid = cluster_uid
        self.verify_interval = verify_interval
        self.on_refused = on_refused
        self.cluster = cluster
        self.keys = Keys(gateway.connection.prefix)
        self.lease_ttl = lease_ttl
        self.info = info
        self._lock = threading.Lock()
        self._scopes = set(scopes)
        self._by_scope: dict[str, dict[str, EndpointRecord]] = {}
        self._writer: RegistryWriter | None = None
        self.on_synced: Callable[[], None] | None = None

    @property
    def listed(self) -> bool:
        return self._scopes <= set(self._by_scope)

    # -- from sources ---------------------------------------------------------------------

    def replace(self, records: Iterable[EndpointRecord], scope: str = "") -> None:
        """A complete list for ``scope``: everything of that scope not in it is withdrawn."""
        fresh = {record.key(self.keys): record for record in records}
        with self._lock:
            self._by_scope[scope] = fresh
            writer, listed = self._writer, self.listed
            everything = [r for s in self._by_scope.values() for r in s.values()] if writer and listed else []
        if writer is not None and listed:
            writer.replace(everything)

    def update(self, records: Iterable[EndpointRecord], scope: str = "") -> None:
        """A complete list for ``scope``, handed to the writer as *changes* (no re-list of etcd).

        For sources that re-read a whole list often (an inventory file): a one-entry edit in a
        10,000-entry inventory becomes one put instead of a reconcile of the cluster's range.
        The first list of a scope still goes through :meth:`replace`.
        """
        fresh = {record.key(self.keys): record for record in records}
        with self._lock:
            old = self._by_scope.get(scope)
            if old is not None:
                self._by_scope[scope] = fresh
            writer, listed = self._writer, self.listed
        if old is None:
            self.replace(fresh.values(), scope)
            return
        if writer is None or not listed:
            return
        for key in old.keys() - fresh.keys():
            writer.remove(key)
        for key, record in fresh.items():
            if old.get(key) != record:
                writer.upsert(record)

    def upsert(self, record: EndpointRecord, scope: str = "") -> None:
        key = record.key(self.keys)
        with self._lock:
            self._by_scope.setdefault(scope, {})[key] = record
            writer, listed = self._writer, self.listed
        if writer is not None and listed:
            writer.upsert(record)

    def remove(self, key: str, scope: str = "") -> None:
        with self._lock:
            self._by_scope.get(scope, {}).pop(key, None)
            writer, listed = self._writer, self.listed
        if writer is not None and listed:
            writer.remove(key)

    # -- leadership -----------------------------------------------------------------------

    def lead(self) -> None:
        """Start writing: reconcile etcd against the full desired state (once listed)."""
        with self._lock:
            if self._writer is not None:
                return
            presence = ClusterPresence(self.gateway, self.cluster, self.cluster_uid, self.info.publisher,
                                       self.lease_ttl)
            writer = self._writer = RegistryWriter(
                self.gateway, self.cluster, self.lease_ttl, info=self.info, on_synced=self.on_synced,
                verify_interval=self.verify_interval, presence=presence, claim_check=self._claim_check,
                on_refused=self.on_refused)
            everything = [r for s in self._by_scope.values() for r in s.values()] if self.listed else None
        if everything is not None:
            writer.replace(everything)
        writer.start()
        log.info("publishing cluster %s (%d records known)", self.cluster, len(everything or ()))

    def _claim_check(self) -> BaseException | None:
        """Before the first write: our claim on the cluster name, and the registry's identity."""
        problem = find_conflict(self.gateway, self.cluster, self.cluster_uid)
        if problem is None:
            self._ensure_registry_identity()
        return problem

    def _ensure_registry_identity(self) -> None:
        """Without RBAC a publisher creates the registry identity if absent (``registry init`` does it
        otherwise); with RBAC a publisher may not write outside its cluster's ranges, which is fine."""
        try:
            _, created = ensure_identity(self.gateway, self.keys)
        except InvalidRecord as error:
            log.warning("registry identity: %s", error)
            return
        except RegistryError as error:
            if isinstance(error, RegistryUnavailable):
                raise
            log.debug("not creating the registry identity (no permission; 'registry init' does): %s", error)
            return
        if created:
            log.info("created the registry identity %s (no 'registry init' had run)", self.keys.identity())

    @property
    def writer(self) -> RegistryWriter | None:
        return self._writer

    def step_down(self, withdraw: bool = False) -> None:
        """Stop writing. Without ``withdraw`` our records stay until their leases expire."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop(withdraw=withdraw)
