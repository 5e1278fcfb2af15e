"""A new etcd history must not blank every resolver: old records are carried over per cluster.

When etcd is wiped and re-created (a new registry identity, :mod:`resolver.registry.history_id`),
the re-list finds almost nothing while publishers re-register. So the old records of a cluster
that is not yet synced in the new history are *carried over* into the new view, until its
``syncedAt`` appears there (or ``seconds`` pass); then whatever it did not re-put is dropped.

Split from :mod:`resolver.registry.cache` because it is its own state with its own lock and its
own lifetime (one per new history); the cache owns the view and calls in at four moments: a
list in a new history (:meth:`CarryOver.carry_into`, :meth:`CarryOver.start`), an endpoint
written or deleted in the new history (:meth:`CarryOver.confirm`), a range re-read on demand
(:meth:`CarryOver.kept`) and the end — the cluster synced, or time ran out (:meth:`CarryOver.finish`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from resolver.records.schema import ClusterInfo
from resolver.registry.entries import AppEndpoints, AppKey

log = logging.getLogger(__name__)

Carried = dict[str, set[tuple[AppKey, str]]]
"""cluster → the (app, instance) endpoints still served from the previous history."""


class CarryOver:
    """The carried-over endpoints of one registry cache; safe for its reader thread and its ticker."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._carried: Carried = {}
        self._lock = threading.Lock()  # the reader thread and the ticker both touch _carried
        self._deadline = 0.0

    @property
    def clusters(self) -> frozenset[str]:
        """Clusters whose records from a previous etcd history are still served."""
        return frozenset(self._carried)

    @staticmethod
    def carry_into(old_apps: Mapping[AppKey, AppEndpoints], apps: dict[AppKey, AppEndpoints],
                   clusters: Mapping[str, ClusterInfo]) -> Carried:
        """Copy the old records of clusters not yet synced in the new history into ``apps``; the
        caller holds the lock that guards ``old_apps``."""
        carried: Carried = {}
        for app_key, old_app in old_apps.items():
            for cluster, instances in old_app.by_cluster.items():
                info = clusters.get(cluster)
                if info is not None and info.synced_at:
                    continue
                app = apps.get(app_key)
                if app is None:
                    app = apps[app_key] = AppEndpoints()
                target = app.by_cluster.setdefault(cluster, {})
                for instance, address in instances.items():
                    if instance not in target:
                        target[instance] = address
                        carried.setdefault(cluster, set()).add((app_key, instance))
        return carried

    def start(self, carried: Carried) -> None:
        """A (re-)list replaced the view: these are carried now (none outside a new history)."""
        for cluster, entries in carried.items():
            log.warning("registry history changed: serving %d old records of cluster %s until it syncs again",
                        len(entries), cluster)
        with self._lock:
            self._carried = carried
            self._deadline = time.monotonic() + self.seconds

    def expired(self, now: float) -> list[str]:
        """Clusters still carried once ``seconds`` have passed since the list (they did not sync in time)."""
        if not self._carried or now < self._deadline:
            return []
        with self._lock:
            return list(self._carried)

    def kept(self, cluster: str, app_key: AppKey) -> set[str]:
        """The carried instances of one app in one cluster: a re-read of that range must keep them."""
        with self._lock:
            return {instance for key, instance in self._carried.get(cluster, ()) if key == app_key}

    def confirm(self, cluster: str, app_key: AppKey, instance: str) -> None:
        """An endpoint was written (or deleted) in the new history: it is no longer a carried-over one."""
        if self._carried:
            with self._lock:
                carried = self._carried.get(cluster)
                if carried is not None:
                    carried.discard((app_key, instance))

    def finish(self, cluster: str, delete: Callable[[str, str, str, str], int]) -> None:
        """The cluster synced in the new history (or took too long): ``delete`` what it did not re-put."""
        with self._lock:  # held through the deletes: a concurrent re-put (confirm) waits, then wins
            for (namespace, app_id), instance in list(self._carried.get(cluster, ())):
                delete(cluster, namespace, app_id, instance)
            self._carried.pop(cluster, None)  # last: until here confirm's unlocked check sees work pending
