"""The probe rounds: which endpoints to probe, how many, and when.

Every ``probeInterval`` (±20 % jitter, so the bridges of a fleet drift apart) a round:

1. returns ejected endpoints whose time is up;
2. takes the apps callers asked about in the last ``probeDemandWindow`` — only clusters
   someone needs are probed. The window is longer than the interval on purpose: daprd keeps
   a DNS answer 20 s and CoreDNS 5 s more, so a bridge hears about a busy app only every
   ~25 s; a window of one interval would stop probing clusters that are in constant use;
3. per cluster, picks up to ``probeSample`` endpoints: the suspects first (endpoints whose
   last probe failed, so an ejection takes ``ejectAfter`` rounds), then a random draw. Only
   IP addresses inside the cluster's ``clusterCIDRs`` are ever probed; a cluster without an
   entry is not probed at all (and never judged unreachable);
4. spends at most the process's ``probeBudget`` connections per second (a token bucket
   shared by every prober of the process); when the round wants more, clusters get probes
   in turn, one each, until the budget is spent;
5. probes them all at once (:func:`~resolver.reachability.probes.connect_all`) and hands
   each cluster's results to :class:`~resolver.reachability.verdicts.Verdicts`.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from resolver.config import Settings
from resolver.observability import probe_metrics
from resolver.reachability.probes import connect_all
from resolver.reachability.verdicts import Verdicts
from resolver.records import names

log = logging.getLogger(__name__)

JITTER = 0.2
PARSED_LIMIT = 200_000
"""Addresses whose probe-ability is remembered (cleared when full: bounded under churn)."""


class EndpointSource(Protocol):
    """The registry cache as the prober reads it (``RegistryCache.lookup``)."""

    def lookup(self, namespace: str, app_id: str) -> Mapping[str, tuple[str, ...]]: ...


class ProbeBudget:
    """A token bucket of connections per second, shared by the probers of one process."""

    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self._clock = clock
        self._tokens = float(per_second)
        self._at = clock()
        self._lock = threading.Lock()

    def take(self, wanted: int, burst: float) -> int:
        """Up to ``wanted`` tokens; the bucket holds at most ``burst`` seconds' worth."""
        with self._lock:
            now = self._clock()
            capacity = self.per_second * max(burst, 1.0)
            self._tokens = min(capacity, self._tokens + (now - self._at) * self.per_second)
            self._at = now
            granted = min(wanted, int(self._tokens))
            self._tokens -= granted
            return granted


_budgets: dict[int, ProbeBudget] = {}
_budgets_lock = threading.Lock()


def process_budget(per_second: int) -> ProbeBudget:
    """The process-wide bucket (``probeBudget`` is a start-up setting, so one value per process)."""
    with _budgets_lock:
        return _budgets.setdefault(per_second, ProbeBudget(per_second))


@dataclass
class RoundReport:
    """What one round did (tests and the benchmark read it)."""

    probed: dict[str, int] = field(default_factory=dict)  # cluster -> probes sent
    wanted: int = 0
    unprobed: set[str] = field(default_factory=set)


class Prober:
    """Runs rounds on a thread of its own; :meth:`run_round` is also callable directly (tests)."""

    def __init__(self, settings: Settings, cache: EndpointSource, verdicts: Verdicts, budget: ProbeBudget,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.cache = cache
        self.verdicts = verdicts
        self.budget = budget
        self.rng = rng or random.Random()
        self._clock = clock
        self._asked: set[tuple[str, str]] = set()
        self._demand: dict[tuple[str, str], float] = {}
        self._probeable: dict[str, tuple[str, int] | None] = {}
        self.unprobed: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def asked(self, namespace: str, app_id: str) -> None:
        """A caller asked about an app (the hot path: one set insert)."""
        self._asked.add((namespace, app_id))

    # -- the thread ---------------------------------------------------------------------------

    def start(self) -> Prober:
        self._thread = threading.Thread(target=self._run, name="reachability-probes", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        interval = self.settings.probe_interval
        while not self._stop.wait(interval * self.rng.uniform(1 - JITTER, 1 + JITTER)):
            try:
                self.run_round()
            except Exception:  # a bug in one round must not end probing for the process's life
                log.exception("reachability probe round failed; the next round runs as usual")

    # -- one round ----------------------------------------------------------------------------

    def run_round(self) -> RoundReport:
        self.verdicts.expire()
        clusters = self._demanded_endpoints()
        report = RoundReport()
        plan: dict[str, list[str]] = {}
        suspects: dict[str, frozenset[str]] = {}
        known: dict[str, int] = {}
        targets: dict[str, tuple[str, int]] = {}  # every probeable address → (ip, port), parsed once
        for cluster, addresses in clusters.items():
            probeable = []
            for address in addresses:
                target = self._target(cluster, address)
                if target is not None:
                    probeable.append(address)
                    targets[address] = target
            if not probeable:
                report.unprobed.add(cluster)
                continue
            self.verdicts.prune(cluster, addresses)
            known[cluster] = len(probeable)
            plan[cluster], suspects[cluster] = self._sample(cluster, probeable)
        self.unprobed = frozenset(report.unprobed)
        probe_metrics.UNPROBED_CLUSTERS.set(len(report.unprobed))
        self.verdicts.forget(set(plan))
        report.wanted = sum(map(len, plan.values()))
        granted = self.budget.take(report.wanted, self.settings.probe_interval)
        if granted < report.wanted:
            probe_metrics.PROBE_BUDGET_CUTS.inc()
            plan = _fair_cut(plan, granted)
        order = [(cluster, address) for cluster, chosen in plan.items() for address in chosen]
        results = connect_all([targets[address] for _, address in order], self.settings.probe_timeout, self._stop)
        if self._stop.is_set():
            return report  # stopping: an interrupted round proves nothing
        by_cluster: dict[str, dict[str, str | None]] = {}
        for (cluster, address), result in zip(order, results, strict=True):
            by_cluster.setdefault(cluster, {})[address] = result
        for cluster, outcome in by_cluster.items():
            failed = sum(1 for r in outcome.values() if r is not None)
            probe_metrics.PROBES.labels(cluster, "ok").inc(len(outcome) - failed)
            probe_metrics.PROBES.labels(cluster, "failed").inc(failed)
            report.probed[cluster] = len(outcome)
            self.verdicts.record_round(cluster, outcome, known[cluster], suspects[cluster])
        return report

    def _demanded_endpoints(self) -> dict[str, set[str]]:
        now = self._clock()
        asked, self._asked = self._asked, set()
        for key in asked:
            self._demand[key] = now
        horizon = now - self.settings.probe_demand_window
        for key in [k for k, at in self._demand.items() if at < horizon]:
            del self._demand[key]
        clusters: dict[str, set[str]] = {}
        for namespace, app_id in self._demand:
            for cluster, addresses in self.cache.lookup(namespace, app_id).items():
                clusters.setdefault(cluster, set()).update(addresses)
        return clusters

    def _sample(self, cluster: str, probeable: list[str]) -> tuple[list[str], frozenset[str]]:
        """Random draws first, then suspects in at most half the slots (so every round has a
        fresh draw to judge the cluster by); returns the probes and which of them are suspects."""
        size = self.settings.probe_sample
        ejected = self.verdicts.ejected_now(cluster)
        present = set(probeable)
        suspects = [a for a in self.verdicts.suspects(cluster) if a in present][:size // 2]
        rest = [a for a in probeable if a not in ejected and a not in suspects]
        drawn = self.rng.sample(rest, min(size - len(suspects), len(rest)))
        return drawn + suspects, frozenset(suspects)

    def _target(self, cluster: str, address: str) -> tuple[str, int] | None:
        """``(ip, port)`` when ``address`` may be probed (an IP inside the cluster's CIDRs)."""
        key = f"{cluster}\0{address}"
        if key in self._probeable:
            return self._probeable[key]
        found: tuple[str, int] | None = None
        networks = self.settings.address_policy.cluster_cidrs.get(cluster, ())
        if networks:
            try:
                host, port = names.split_host_port(address)
                ip = ipaddress.ip_address(host)
            except ValueError:
                ip = None
            if ip is not None and any(ip.version == n.version and ip in n for n in networks):
                found = (str(ip), port)
        if len(self._probeable) >= PARSED_LIMIT:
            self._probeable.clear()
        self._probeable[key] = found
        return found


def _fair_cut(plan: dict[str, list[str]], granted: int) -> dict[str, list[str]]:
    """Probes in turn, one per cluster, until ``granted`` are handed out (a cluster's plan lists
    its random draws first, so a cut keeps them and drops suspects)."""
    cut: dict[str, list[str]] = {cluster: [] for cluster in plan}
    depth = 0
    while granted > 0:
        handed = False
        for cluster, chosen in plan.items():
            if granted and depth < len(chosen):
                cut[cluster].append(chosen[depth])
                granted -= 1
                handed = True
        if not handed:
            break
        depth += 1
    return {cluster: chosen for cluster, chosen in cut.items() if chosen}
