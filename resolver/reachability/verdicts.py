"""What the probes concluded: which clusters are unreachable from here, which endpoints are ejected.

Pure state, fed one probe round at a time by :mod:`resolver.reachability.rounds` and read by the
answer path through an immutable :class:`View` swapped in whole on every change (a resolve reads
one attribute, never a lock). Two levels, as Istio separates locality failover from outlier
detection:

* **Cluster**: a round of a cluster is *good* when any probe succeeded, *bad* when every probe
  failed and at least one of them was a fresh random draw. Probes of *suspects* alone (endpoints
  already known to fail, re-probed to decide their ejection) prove nothing about the cluster:
  such a round leaves the cluster's counters as they are — otherwise a few dead endpoints of a
  healthy cluster could fill the sample and take the whole cluster out. ``unreachableAfter``
  bad rounds in a row make the cluster unreachable (it leaves the candidate set);
  ``reachableAfter`` good rounds in a row bring it back. One success is enough for a good round
  because a partly broken cluster is the endpoint level's business.
  The caller's own cluster is never judged: the prober shares its network, so "all of my own
  cluster fails" means this process is cut off, and hiding the local cluster would only turn
  that into fallback answers.
* **Endpoint**: in a good round of its cluster, an endpoint that failed ``ejectAfter`` probes
  in a row is ejected for ``ejectionTime`` × its ejection count (capped at 10×, Istio's
  multiplying base time), while at most ``maxEjectedPercent`` of the cluster's known endpoints
  are ejected at once (at least one, as Envoy does, unless the percentage is 0). When its time
  is up it returns; one more failed probe ejects it again, for longer. Failures in a bad round
  are not held against endpoints: the cluster is the problem. An endpoint the cap keeps from
  being ejected stops being a suspect (it is drawn at random like the rest). Ejection times run
  on the monotonic clock (an NTP step must not lengthen or end them); ``since`` is wall time.

Every change is reported through ``on_change`` (one log line, one metric update) and bumps
:attr:`Verdicts.version`, which the resolver's memo and the DNS response cache compare.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

MAX_EJECTION_MULTIPLIER = 10


class State(StrEnum):
    REACHABLE = "reachable"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Thresholds:
    """The settings this module reads (``unreachableAfter``… in docs/configuration.md)."""

    unreachable_after: int = 2
    reachable_after: int = 2
    eject_after: int = 2
    ejection_time: float = 30.0
    max_ejected_percent: int = 10


@dataclass(frozen=True)
class Change:
    """One state change, for the log line and the metrics."""

    cluster: str
    what: str  # "unreachable" | "reachable" | "ejected" | "returned" | "gone" | "forgotten"
    address: str = ""
    detail: str = ""
    lasted: float = 0.0  # seconds in the previous state (reachable again / returned)


@dataclass(frozen=True)
class View:
    """What answers are gated by, read without a lock: replaced whole on every change."""

    version: int = 0
    unreachable: frozenset[str] = frozenset()
    ejected: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def empty(self) -> bool:
        return not self.unreachable and not self.ejected


@dataclass
class ClusterRecord:
    state: State = State.REACHABLE
    since: float = 0.0  # wall clock of the last state change (0: since probing began)
    bad_rounds: int = 0
    good_rounds: int = 0
    last_round: float = 0.0
    last_error: str = ""
    probes: int = 0
    failures: int = 0


@dataclass
class EndpointRecord:
    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    ejected_at: float = 0.0
    last_error: str = ""
    capped: bool = False  # due for ejection but kept by the cap: no longer re-probed first


class Verdicts:
    """Per-cluster and per-endpoint verdicts of one prober (thread-safe; rounds are serial)."""

    def __init__(self, own_cluster: str, thresholds: Thresholds,
                 on_change: Callable[[Change], None] = lambda change: None,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.own_cluster = own_cluster
        self.thresholds = thresholds
        self._on_change = on_change
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self.clusters: dict[str, ClusterRecord] = {}
        self.endpoints: dict[str, dict[str, EndpointRecord]] = {}
        self.view = View()

    @property
    def version(self) -> int:
        return self.view.version

    def suspects(self, cluster: str) -> list[str]:
        """Endpoints with failed probes, not ejected and not held back by the cap: re-probed in the
        next round (in at most half its slots), so an ejection needs ``ejectAfter`` rounds, not a
        lucky draw among a thousand endpoints."""
        return [a for a, r in self.endpoints.get(cluster, {}).items()
                if r.failures and not r.ejected_until and not r.capped]

    def ejected_now(self, cluster: str) -> frozenset[str]:
        return self.view.ejected.get(cluster, frozenset())

    def record_round(self, cluster: str, results: Mapping[str, str | None], known: int,
                     suspects: frozenset[str] = frozenset()) -> list[Change]:
        """One round of ``cluster``: ``results`` maps each probed address to None (connected) or
        the error; ``known`` is how many endpoints of the cluster are being asked about (the
        base of the ejection cap); ``suspects`` are the probed addresses that were chosen as
        suspects, not drawn at random. Returns (and reports) the changes."""
        if not results:
            return []
        now = self._clock()
        fresh = any(address not in suspects for address in results)
        changes: list[Change] = []
        with self._lock:
            record = self.clusters.setdefault(cluster, ClusterRecord())
            good = any(error is None for error in results.values())
            errors = [error for error in results.values() if error is not None]
            record.last_round = now
            record.probes += len(results)
            record.failures += len(errors)
            record.last_error = errors[-1] if errors else ""
            if cluster != self.own_cluster and (good or fresh):
                changes += self._judge_cluster(cluster, record, good, len(errors), len(results), now)
            if good:
                changes += self._judge_endpoints(cluster, results, known, self._monotonic())
            if changes:
                self._publish()
        for change in changes:
            self._on_change(change)
        return changes

    def expire(self) -> list[Change]:
        """Return endpoints whose ejection time is up (called before each round)."""
        now = self._monotonic()
        changes = []
        with self._lock:
            for cluster, records in self.endpoints.items():
                for address, record in records.items():
                    if record.ejected_until and record.ejected_until <= now:
                        record.ejected_until = 0.0
                        # One more failure ejects it again (for longer): it earned no fresh start.
                        record.failures = max(0, self.thresholds.eject_after - 1)
                        changes.append(Change(cluster, "returned", address, lasted=now - record.ejected_at))
            if changes:
                self._publish()
        for change in changes:
            self._on_change(change)
        return changes

    def forget(self, keep: set[str]) -> list[Change]:
        """Drop the verdicts of clusters no caller asked about lately: an old "unreachable" must
        not gate answers when callers come back, and a verdict nobody reads costs probes."""
        changes = []
        with self._lock:
            for cluster in [c for c in self.clusters if c not in keep]:
                del self.clusters[cluster]
                self.endpoints.pop(cluster, None)
                changes.append(Change(cluster, "forgotten"))
            for cluster in [c for c in self.endpoints if c not in keep]:
                del self.endpoints[cluster]
            if changes:
                self._publish()
        for change in changes:
            self._on_change(change)
        return changes

    def prune(self, cluster: str, current: set[str]) -> list[Change]:
        """Forget endpoint records of addresses the registry no longer holds (a deleted pod)."""
        changes = []
        with self._lock:
            records = self.endpoints.get(cluster, {})
            for address in [a for a in records if a not in current]:
                if records.pop(address).ejected_until:
                    changes.append(Change(cluster, "gone", address))
            if changes:
                self._publish()
        for change in changes:
            self._on_change(change)
        return changes

    def copied(self) -> tuple[dict[str, ClusterRecord], dict[str, dict[str, EndpointRecord]]]:
        """The records, copied under the lock (the status page reads them from another thread)."""
        with self._lock:
            return ({c: dataclasses.replace(r) for c, r in self.clusters.items()},
                    {c: {a: dataclasses.replace(r) for a, r in records.items()}
                     for c, records in self.endpoints.items()})

    def all_others_unreachable(self) -> bool:
        """Every judged cluster other than our own is unreachable (the fail-open case)."""
        others = [r for c, r in self.clusters.items() if c != self.own_cluster]
        return bool(others) and all(r.state is State.UNREACHABLE for r in others)

    # -- judging ----------------------------------------------------------------------------

    def _judge_cluster(self, cluster: str, record: ClusterRecord, good: bool, failed: int, probed: int,
                       now: float) -> list[Change]:
        limits = self.thresholds
        if good:
            record.bad_rounds, record.good_rounds = 0, record.good_rounds + 1
            if record.state is State.UNREACHABLE and record.good_rounds >= limits.reachable_after:
                lasted = now - record.since
                record.state, record.since = State.REACHABLE, now
                return [Change(cluster, "reachable", detail=f"{record.good_rounds} good rounds", lasted=lasted)]
            return []
        record.good_rounds, record.bad_rounds = 0, record.bad_rounds + 1
        if record.state is State.REACHABLE and record.bad_rounds >= limits.unreachable_after:
            record.state, record.since = State.UNREACHABLE, now
            return [Change(cluster, "unreachable", detail=f"{record.bad_rounds} rounds with every probe failing "
                           f"({failed} of {probed}, last: {record.last_error})")]
        return []

    def _judge_endpoints(self, cluster: str, results: Mapping[str, str | None], known: int,
                         now: float) -> list[Change]:
        limits = self.thresholds
        records = self.endpoints.setdefault(cluster, {})
        changes = []
        cap = 0 if limits.max_ejected_percent == 0 else max(1, known * limits.max_ejected_percent // 100)
        ejected = sum(1 for r in records.values() if r.ejected_until)
        for address, error in results.items():
            if error is None:
                if address in records and not records[address].ejected_until:
                    del records[address]  # healthy and never ejected-and-pending: nothing to keep
                continue
            record = records.setdefault(address, EndpointRecord())
            record.failures += 1
            record.last_error = error
            record.capped = record.failures >= limits.eject_after and ejected >= cap
            if record.failures >= limits.eject_after and not record.ejected_until and ejected < cap:
                record.ejections = min(record.ejections + 1, MAX_EJECTION_MULTIPLIER)
                record.ejected_at = now
                record.ejected_until = now + limits.ejection_time * record.ejections
                ejected += 1
                changes.append(Change(cluster, "ejected", address, detail=f"{record.failures} probes failed "
                                      f"in a row ({error}); out for {limits.ejection_time * record.ejections:.0f}s"))
        return changes

    def _publish(self) -> None:
        ejected = {c: frozenset(a for a, r in records.items() if r.ejected_until)
                   for c, records in self.endpoints.items()}
        self.view = View(
            self.view.version + 1,
            frozenset(c for c, r in self.clusters.items() if r.state is State.UNREACHABLE),
            MappingProxyType({c: addresses for c, addresses in ejected.items() if addresses}))
