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
  exponential backoff and jitter (tenacity), converging when etcd returns;
* converges on etcd, not on its memory: every ``verify_interval`` (and after every failed
  attempt, i.e. on reconnect) it compares what it wants with what etcd has and re-puts what is
  missing, different or on a lease that is not ours (a record deleted by hand, by a second
  publisher, by a restore comes back within one interval);
* a record etcd refuses as too large is isolated by splitting the transaction, skipped,
  counted and reported — the rest is written (one bad entry never freezes a publication;
  how a change set gets into etcd is :mod:`resolver.writer.commit`);
* as a cluster's publisher (``info`` given) it keeps its predecessor's leases alive until its
  own first sync is written (:meth:`LeasePool.adopt`), and writes the heartbeat and
  ``lastseen`` keys (:mod:`resolver.writer.presence`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from resolver.errors import LeaseNotFound, RegistryError
from resolver.etcd.gateway import EtcdGateway
from resolver.etcd.leases import KEYS_PER_LEASE, LeasePool
from resolver.etcd.range_reads import get_with_meta, record_leases, same_record
from resolver.etcd.retry import attempt_log_level, retry_until_stopped
from resolver.observability import metrics
from resolver.records.schema import ClusterInfo, EndpointRecord, Keys
from resolver.writer.claim import ClaimCheck, claim_key, holder
from resolver.writer.commit import Committer, Put, Source
from resolver.writer.presence import ClusterPresence

log = logging.getLogger(__name__)

INFO_MIN_INTERVAL = 5.0
"""The info key's endpoint count is refreshed at most this often (steady state = keep-alives only)."""
VERIFY_INTERVAL = 30.0
"""How often etcd is compared with the desired state (a list of the cluster's own range)."""

class RegistryWriter:
    def __init__(self, gateway: EtcdGateway, cluster: str, lease_ttl: float, *,
                 owns_range: bool = True, info: ClusterInfo | None = None,
                 keys_per_lease: int = KEYS_PER_LEASE, on_synced: Callable[[], None] | None = None,
                 verify_interval: float = VERIFY_INTERVAL, presence: ClusterPresence | None = None,
                 claim_check: ClaimCheck | None = None,
                 on_refused: Callable[[BaseException], None] | None = None,
                 member: tuple[str, bytes] | None = None) -> None:
        self.gateway = gateway
        self.keys = Keys(gateway.connection.prefix)
        self.cluster = cluster
        self.owns_range = owns_range
        self.leases = LeasePool(gateway, lease_ttl, keys_per_lease)
        self._info = info
        self._info_key = self.keys.info(cluster)
        self._info_written: ClusterInfo | None = None
        self._info_written_at = 0.0
        self._member = member  # a self-registered sidecar's clusters/{cluster}/members/{instance} marker
        self._member_written = False
        self._on_synced = on_synced
        self._desired: dict[str, EndpointRecord] = {}
        self._written: dict[str, EndpointRecord] = {}
        self._dirty: set[str] = set()
        self._reconcile = False
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.synced_at = 0.0
        self._announced = False
        self.verify_interval = verify_interval
        self._verify_at = float("inf")  # monotonic time of the next check against etcd (-1: at once)
        self._presence = presence
        self._claim_check = claim_check
        self._claim_checked = claim_check is None
        self._on_refused = on_refused
        self.refused: BaseException | None = None
        self._adopting = owns_range and info is not None
        self._committer = Committer(gateway, self.leases, cluster)
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
                if self._presence is not None and self.refused is None:
                    self._presence.lastseen(len(self._written), reason="withdrawn")
                self.leases.revoke_all()
                log.info("withdrew %d records of cluster %s", len(self._written), self.cluster)
            except RegistryError as error:
                log.warning("could not withdraw (records expire with their lease): %s", error)
        else:
            self.leases.abandon()

    # -- the writer thread ----------------------------------------------------------------

    def _log_retry(self, attempt: int, delay: float, error: BaseException | None) -> None:
        metrics.ETCD_ERRORS.labels("write").inc()
        self._verify_at = -1.0 if self.synced_at else self._verify_at  # check etcd once it answers again
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
        if not self._claim_checked:
            self._check_claim()
            if self.refused is not None:
                return
        if self._adopting:
            self._adopt_predecessor()
        try:
            for keys in self.leases.keepalive(only_due=True):
                self._requeue(keys)
            with self._cond:
                reconcile, self._reconcile = self._reconcile, False
                dirty, self._dirty = self._dirty, set()
                everything = dict(self._desired) if reconcile else {}
                changes = {} if reconcile else {key: self._desired.get(key) for key in dirty}
            try:
                if self._info_written is None:
                    self._write_info()  # first, so the cluster is announced (unsynced) before its records
                    if self.refused is not None:
                        return
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
            if self.refused is None:  # else re-claiming a lost info key found the name taken
                self._after_writes()
        except LeaseNotFound:
            for keys in self.leases.keepalive(only_due=False):
                self._requeue(keys)
            raise

    def _after_writes(self) -> None:
        self._tick_presence()
        self._announce_synced()
        if self.synced_at and time.monotonic() >= self._verify_at:
            self._verify()

    def _info_taken_or_lost(self) -> bool:
        """Before any repair: our ``info`` must still be ours. Re-claim it if it vanished; True if refused."""
        assert self._info is not None
        raw = self.gateway.get(self._info_key)
        if raw is None:
            self._info_written = None  # the claim again: the name may have been taken meanwhile
            self._write_info()
        elif self._claim_check is not None and holder(raw) not in ("", self._info.cluster_uid):
            problem = self._claim_check()  # another identity overwrote it: one of us must stop
            if problem is not None:
                self._refuse(problem)
        return self.refused is not None

    def _announce_synced(self) -> None:
        """Tell the owner once the first full list *and* the info key's ``syncedAt`` are in etcd."""
        info_done = self._info is None or (self._info_written is not None and bool(self._info_written.synced_at))
        if self.synced_at and info_done and not self._announced:
            self._announced = True
            released = self.leases.release_adopted()
            if released:
                log.info("cluster %s: stopped keeping the predecessor's %d lease(s) alive (every record is on "
                         "our own leases now)", self.cluster, released)
            if self._on_synced:
                self._on_synced()

    def _check_claim(self) -> None:
        """Before anything is written: is this cluster name held by another cluster identity?"""
        assert self._claim_check is not None
        problem = self._claim_check()
        self._claim_checked = True
        if problem is not None:
            self._refuse(problem)

    def _refuse(self, problem: BaseException) -> None:
        self.refused = problem
        self._stop.set()
        self.leases.abandon()
        if self._on_refused is not None:
            self._on_refused(problem)

    def _adopt_predecessor(self) -> None:
        """Keep the leases our cluster's existing records hang on alive until our first sync."""
        leases = record_leases(self.gateway, self.keys.cluster_apps(self.cluster))
        info, info_lease, _ = get_with_meta(self.gateway, self._info_key)
        if info is not None and info_lease:
            leases.add(info_lease)
        self._adopting = False
        self.leases.adopt(leases)
        if leases:
            log.info("cluster %s: keeping %d lease(s) of the previous publisher alive until our first sync",
                     self.cluster, len(self.leases.adopted))

    def _tick_presence(self) -> None:
        presence = self._presence
        if presence is None:
            return
        now = time.monotonic()
        if now >= presence.next_heartbeat:
            presence.heartbeat(self.leases.assign(presence.heartbeat_key))
        if self.synced_at and now >= presence.next_lastseen:
            presence.lastseen(len(self._written))

    def _verify(self) -> None:
        """Compare etcd with what we want; put back what is missing or different, drop extras."""
        self._verify_at = time.monotonic() + self.verify_interval
        if self._info is not None and self._info_taken_or_lost():
            return
        with self._cond:
            if self._reconcile:
                return  # a full reconcile is queued: it compares with etcd anyway
            desired = dict(self._desired)
            pending = set(self._dirty)  # written by the next pass, not drift
        found: dict[str, tuple[bytes, int]] = {}
        if self.owns_range:
            _, pages = self.gateway.list_prefix(self.keys.cluster_apps(self.cluster))
            found = {key.decode(): (value, lease) for page in pages for key, value, lease in page}
        else:
            for key in desired:
                value, lease, _ = get_with_meta(self.gateway, key)
                if value is not None:
                    found[key] = (value, lease)
        puts: list[tuple[str, bytes, int]] = []
        for key, record in desired.items():
            if key in pending or self._committer.is_oversize(key, record):
                continue
            have = found.get(key)
            if have is None or have[1] != self.leases.lease_of(key) or not same_record(have[0], record):
                puts.append((key, record.to_json(), self.leases.assign(key)))
        deletes = sorted(set(found) - set(desired) - pending) if self.owns_range else []
        if puts or deletes:
            log.warning("cluster %s: etcd differs from the desired state (%d records missing or different, %d "
                        "extra): repairing", self.cluster, len(puts), len(deletes))
            metrics.PUBLISHER_REPAIRS.labels("put").inc(len(puts))
            metrics.PUBLISHER_REPAIRS.labels("delete").inc(len(deletes))
            self._commit(puts, deletes, desired)

    def _requeue(self, keys: set[str]) -> None:
        with self._cond:
            for key in keys:
                self._written.pop(key, None)
                if key == self._info_key:
                    self._info_written = None
                if self._member is not None and key == self._member[0]:
                    self._member_written = False
                if self._presence is not None and key == self._presence.heartbeat_key:
                    self._presence.next_heartbeat = 0.0
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
            self._verify_at = time.monotonic() + self.verify_interval
            self.synced_at = round(time.time(), 3)
            log.info("cluster %s synced: %d records in etcd (%d written, %d deleted)",
                     self.cluster, len(desired), len(puts), len(deletes))

    def _commit(self, puts: Sequence[Put], deletes: list[str], source: Source) -> None:
        """Write a change set (see :mod:`resolver.writer.commit`) and remember what etcd now holds of ours."""
        done = self._committer.commit(puts, deletes, source)
        if done is None:
            return
        for key, _, _ in done.puts:
            record = source[key]
            assert record is not None
            self._written[key] = record
        for key in deletes:
            self._written.pop(key, None)
            self.leases.release(key)
        metrics.PUBLISHER_WRITES.labels("put").inc(len(done.puts))
        metrics.PUBLISHER_WRITES.labels("delete").inc(len(deletes))
        log.debug("cluster %s: wrote %d, deleted %d", self.cluster, len(done.puts), len(deletes))
        if done.lost:
            self._requeue(done.lost)

    def _write_info(self) -> None:
        if self._member is not None and not self._member_written:
            key, value = self._member  # announces the cluster to on-demand readers; vanishes with our lease
            self.gateway.put(key, value, lease=self.leases.assign(key))
            self._member_written = True
        if self._info is None:
            return
        info = dataclasses.replace(self._info, synced_at=self.synced_at, endpoints=len(self._written),
                                   lease_ttl=self.leases.ttl)
        previous = self._info_written
        if previous == info:
            return
        first_or_synced = previous is None or previous.synced_at != info.synced_at
        if not first_or_synced and time.monotonic() - self._info_written_at < INFO_MIN_INTERVAL:
            return
        if previous is None and info.cluster_uid and self._claim_check is not None:  # our claim on the name
            problem = claim_key(self.gateway, self._info_key, info.to_json(), info.cluster_uid,
                                lambda: self.leases.assign(self._info_key), self._claim_check)
            if problem is not None:
                self._refuse(problem)
                return
        else:
            self.gateway.put(self._info_key, info.to_json(), lease=self.leases.assign(self._info_key))
        self._info_written, self._info_written_at = info, time.monotonic()
