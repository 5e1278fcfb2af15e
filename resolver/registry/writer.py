"""Keeps a desired set of endpoint records in etcd, on leases, through any etcd weather.

Used by the publisher (a whole cluster) and by the component's self-registration (one
sidecar). The caller states what *should* be in etcd — :meth:`RegistryWriter.replace` for a
full list, :meth:`RegistryWriter.upsert` / :meth:`RegistryWriter.remove` for changes — and
one thread makes it so:

* writes only what changed (a record equal to what we last wrote on a live lease is
  skipped, like Cilium's kvstore store), in transactions of at most 128 operations;
* after a ``replace`` with ``owns_range`` it *reconciles*: keys etcd has in this cluster's
  range that the desired state lacks are deleted — this is what makes a 410 re-list clean
  up pods that vanished while disconnected, and a restart overwrite the previous process's
  records before their lease can expire (no withdrawal gap);
* keeps its leases alive at TTL/3; a lost lease (expired during an outage, or revoked) puts
  its keys back on a new lease with no manual step;
* while etcd is unreachable it keeps the desired state in memory and retries with capped
  exponential backoff and jitter (tenacity), converging when etcd returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from resolver.errors import LeaseNotFound, RegistryError
from resolver.observability import metrics
from resolver.registry.gateway import EtcdGateway
from resolver.registry.leases import KEYS_PER_LEASE, LeasePool
from resolver.registry.retry import attempt_log_level, retry_until_stopped
from resolver.registry.schema import ClusterInfo, EndpointRecord, Keys

log = logging.getLogger(__name__)

INFO_MIN_INTERVAL = 5.0
"""The info key's endpoint count is refreshed at most this often (steady state = keep-alives only)."""


class RegistryWriter:
    def __init__(self, gateway: EtcdGateway, cluster: str, lease_ttl: float, *,
                 owns_range: bool = True, info: ClusterInfo | None = None,
                 keys_per_lease: int = KEYS_PER_LEASE, on_synced: Callable[[], None] | None = None) -> None:
        self.gateway = gateway
        self.keys = Keys(gateway.connection.prefix)
        self.cluster = cluster
        self.owns_range = owns_range
        self.leases = LeasePool(gateway, lease_ttl, keys_per_lease)
        self._info = info
        self._info_key = self.keys.info(cluster)
        self._info_written: ClusterInfo | None = None
        self._info_written_at = 0.0
        self._on_synced = on_synced
        self._desired: dict[str, EndpointRecord] = {}
        self._written: dict[str, EndpointRecord] = {}
        self._dirty: set[str] = set()
        self._reconcile = False
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.synced_at = 0.0
        self._announced = False
        self._thread = threading.Thread(target=self._run, name=f"registry-writer {cluster}", daemon=True)
        self._retrying = retry_until_stopped(self._stop, self._log_retry)

    # -- desired state (any thread) --------------------------------------------------------

    def replace(self, records: Iterable[EndpointRecord]) -> None:
        """The complete desired state (a full list); reconciles the cluster's range afterwards."""
        desired = {record.key(self.keys): record for record in records}
        with self._cond:
            self._desired = desired
            self._reconcile = True
            self._cond.notify()

    def upsert(self, record: EndpointRecord) -> None:
        key = record.key(self.keys)
        with self._cond:
            self._desired[key] = record
            self._dirty.add(key)
            self._cond.notify()

    def remove(self, key: str) -> None:
        with self._cond:
            if self._desired.pop(key, None) is not None or key in self._written:
                self._dirty.add(key)
                self._cond.notify()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> RegistryWriter:
        self._thread.start()
        return self

    def stop(self, withdraw: bool = False, timeout: float = 5.0) -> None:
        """Stop writing; with ``withdraw`` revoke our leases (deleting our keys) first."""
        self._stop.set()
        with self._cond:
            self._cond.notify()
        self._thread.join(timeout)
        if withdraw:
            try:
                self.leases.revoke_all()
                log.info("withdrew %d records of cluster %s", len(self._written), self.cluster)
            except RegistryError as error:
                log.warning("could not withdraw (records expire with their lease): %s", error)
        else:
            self.leases.abandon()

    # -- the writer thread ----------------------------------------------------------------

    def _log_retry(self, attempt: int, delay: float, error: BaseException | None) -> None:
        metrics.ETCD_ERRORS.labels("write").inc()
        log.log(attempt_log_level(attempt), "registry write for cluster %s failed (attempt %d, %d records "
                "pending, retrying in %.1fs): %s", self.cluster, attempt, len(self._desired), delay, error)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._retrying(self._step)
            except RegistryError:
                continue  # only when stopping
            except Exception:  # a bug must not silently end publishing: log it and keep going
                log.exception("unexpected error in the registry writer for cluster %s", self.cluster)
                self._stop.wait(1.0)
            with self._cond:
                if not (self._dirty or self._reconcile or self._stop.is_set()):
                    timeout = max(0.0, self.leases.next_due() - time.monotonic())
                    self._cond.wait(min(timeout, 1.0))

    def _step(self) -> None:
        """One pass: keep leases alive, then write what changed. Raises to get a retry."""
        try:
            for keys in self.leases.keepalive(only_due=True):
                self._requeue(keys)
            with self._cond:
                reconcile, self._reconcile = self._reconcile, False
                dirty, self._dirty = self._dirty, set()
                everything = dict(self._desired) if reconcile else {}
                changes = {} if reconcile else {key: self._desired.get(key) for key in dirty}
            if self._info_written is None:
                self._write_info()  # first, so the cluster is announced (unsynced) before its records
            try:
                if reconcile:
                    self._write_all(everything)
                else:
                    self._write_changes(changes)
            except RegistryError:
                with self._cond:  # nothing is lost: the same work is done on the retry
                    self._reconcile |= reconcile
                    self._dirty |= dirty
                raise
            self._write_info()
            self._announce_synced()
        except LeaseNotFound:
            for keys in self.leases.keepalive(only_due=False):
                self._requeue(keys)
            raise

    def _announce_synced(self) -> None:
        """Tell the owner once the first full list *and* the info key's ``syncedAt`` are in etcd."""
        info_done = self._info is None or (self._info_written is not None and bool(self._info_written.synced_at))
        if self.synced_at and info_done and not self._announced:
            self._announced = True
            if self._on_synced:
                self._on_synced()

    def _requeue(self, keys: set[str]) -> None:
        with self._cond:
            for key in keys:
                self._written.pop(key, None)
                if key == self._info_key:
                    self._info_written = None
            self._dirty |= keys - {self._info_key}

    def _write_changes(self, changes: dict[str, EndpointRecord | None]) -> None:
        puts: list[tuple[str, bytes, int]] = []
        deletes: list[str] = []
        for key, record in changes.items():
            if record is None:
                if key in self._written:
                    deletes.append(key)
            elif self._written.get(key) != record or self.leases.lease_of(key) is None:
                puts.append((key, record.to_json(), self.leases.assign(key)))
        self._commit(puts, deletes, changes)

    def _write_all(self, desired: dict[str, EndpointRecord]) -> None:
        in_etcd: set[str] = set()
        if self.owns_range:
            _, pages = self.gateway.list_prefix(self.keys.cluster_apps(self.cluster))
            in_etcd = {key.decode() for page in pages for key, _, _ in page}
        deletes = sorted((in_etcd | set(self._written)) - set(desired))
        puts = [(key, record.to_json(), self.leases.assign(key)) for key, record in desired.items()
                if self._written.get(key) != record or self.leases.lease_of(key) is None]
        self._commit(puts, deletes, desired)
        if not self.synced_at:
            self.synced_at = round(time.time(), 3)
            log.info("cluster %s synced: %d records in etcd (%d written, %d deleted)",
                     self.cluster, len(desired), len(puts), len(deletes))

    def _commit(self, puts: Sequence[tuple[str, bytes, int | None]], deletes: list[str],
                source: Mapping[str, EndpointRecord | None]) -> None:
        if not puts and not deletes:
            return
        self.gateway.apply(puts, deletes)
        for key, _, _ in puts:
            record = source[key]
            assert record is not None
            self._written[key] = record
        for key in deletes:
            self._written.pop(key, None)
            self.leases.release(key)
        metrics.PUBLISHER_WRITES.labels("put").inc(len(puts))
        metrics.PUBLISHER_WRITES.labels("delete").inc(len(deletes))
        log.debug("cluster %s: wrote %d, deleted %d", self.cluster, len(puts), len(deletes))

    def _write_info(self) -> None:
        if self._info is None:
            return
        info = ClusterInfo(
            cluster=self._info.cluster, publisher=self._info.publisher, version=self._info.version,
            started_at=self._info.started_at, synced_at=self.synced_at, endpoints=len(self._written),
            lease_ttl=self.leases.ttl)
        previous = self._info_written
        if previous == info:
            return
        first_or_synced = previous is None or previous.synced_at != info.synced_at
        if not first_or_synced and time.monotonic() - self._info_written_at < INFO_MIN_INTERVAL:
            return
        self.gateway.put(self._info_key, info.to_json(), lease=self.leases.assign(self._info_key))
        self._info_written, self._info_written_at = info, time.monotonic()
