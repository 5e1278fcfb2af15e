"""What a publisher wants in etcd, kept whether or not it currently leads.

Sources (Kubernetes, an inventory file) report their state here: a full list per *scope*
(one namespace, or ``""`` for the whole cluster) with :meth:`Publication.replace`, then changes
with :meth:`Publication.upsert` / :meth:`Publication.remove`. While this replica leads, a
:class:`~resolver.registry.writer.RegistryWriter` makes etcd match; a standby keeps the same
state warm, so on taking over it reconciles etcd against a complete list at once instead of
starting from empty. Nothing is written to etcd until every scope has listed once: a
reconcile against a partial list would delete live records.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from resolver.registry.gateway import EtcdGateway
from resolver.registry.schema import ClusterInfo, EndpointRecord, Keys
from resolver.registry.writer import RegistryWriter

log = logging.getLogger(__name__)


class Publication:
    def __init__(self, gateway: EtcdGateway, cluster: str, lease_ttl: float, info: ClusterInfo,
                 scopes: Iterable[str] = ("",)) -> None:
        self.gateway = gateway
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
            writer = self._writer = RegistryWriter(self.gateway, self.cluster, self.lease_ttl, info=self.info,
                                                   on_synced=self.on_synced)
            everything = [r for s in self._by_scope.values() for r in s.values()] if self.listed else None
        if everything is not None:
            writer.replace(everything)
        writer.start()
        log.info("publishing cluster %s (%d records known)", self.cluster, len(everything or ()))

    def step_down(self, withdraw: bool = False) -> None:
        """Stop writing. Without ``withdraw`` our records stay until their leases expire."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop(withdraw=withdraw)
