"""Reachability as the answer path sees it: leave out what this process cannot reach, never everything.

The registry says which endpoints are alive; it cannot say whether *this* cluster can reach
them. When a link between clusters breaks while etcd stays reachable, every record stays live
and every policy keeps sending traffic into the hole. :class:`Reachability` bundles the probe
rounds (:mod:`~resolver.reachability.rounds`) and their verdicts
(:mod:`~resolver.reachability.verdicts`) and gates each answer *before* the policy chooses:
unreachable clusters and ejected endpoints are removed from the app's endpoints, so FailOver
moves to the next cluster and ActiveActive re-weights among the rest without knowing why.

**Fail open**: when gating would leave an app's policy nothing to choose (every candidate
unreachable or ejected, or only clusters the policy ignores left), the answer is computed from
the ungated endpoints, as if probing were off (Envoy's panic threshold at its extreme): probes can
be wrong — a firewall that drops our probes but not daprd's calls — and a wrong "nothing is
reachable" must not turn into an outage. Every such answer is counted
(``dapr_nr_fail_open_answers_total``); while every other probed cluster is unreachable,
``dapr_nr_reachability_fail_open`` is 1, ``/reachability`` says so and one line is logged.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from resolver.config import Settings
from resolver.observability import probe_metrics
from resolver.reachability.rounds import EndpointSource, ProbeBudget, Prober, process_budget
from resolver.reachability.verdicts import Change, State, Thresholds, Verdicts
from resolver.registry.entries import Snapshot

log = logging.getLogger(__name__)


def enabled(settings: Settings, role: str) -> bool:
    """``reachability``: ``auto`` probes in the roles that answer for a whole cluster (``dns``,
    ``consul``) and not in the per-pod component, whose fleet-wide probe cost must stay near zero."""
    if settings.reachability == "auto":
        return role in ("dns", "consul")
    return settings.reachability == "on"


class Reachability:
    """Probes, verdicts and the gate of one answering role (or one component instance)."""

    def __init__(self, settings: Settings, cache: EndpointSource, budget: ProbeBudget | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        thresholds = Thresholds(settings.unreachable_after, settings.reachable_after, settings.eject_after,
                                settings.ejection_time, settings.max_ejected_percent)
        self.verdicts = Verdicts(settings.cluster_name, thresholds, self._changed, clock)
        self.prober = Prober(settings, cache, self.verdicts, budget or process_budget(settings.probe_budget))
        self._clock = clock
        self._failing_open_since = 0.0

    def start(self) -> Reachability:
        log.info("reachability probing on: every %.1fs, %d endpoints per cluster, timeout %.2fs, "
                 "unreachable after %d bad rounds, back after %d good ones, budget %d connections/s",
                 self.settings.probe_interval, self.settings.probe_sample, self.settings.probe_timeout,
                 self.settings.unreachable_after, self.settings.reachable_after, self.settings.probe_budget)
        self.prober.start()
        return self

    def stop(self) -> None:
        """Stop probing and take this prober's series out of the metrics: a component instance
        closed or re-initialized must not leave an "unreachable" behind for the alert."""
        self.prober.stop()
        for cluster in list(self.verdicts.clusters):
            self._update_gauges(cluster, forgotten=True)
        if self._failing_open_since:
            self._failing_open_since = 0.0
            probe_metrics.FAIL_OPEN.set(0.0)

    # -- the answer path -----------------------------------------------------------------------

    def asked(self, namespace: str, app_id: str) -> None:
        self.prober.asked(namespace, app_id)

    @property
    def version(self) -> int:
        return self.verdicts.view.version

    def apply(self, endpoints: Snapshot) -> Snapshot:
        """The endpoints without unreachable clusters and ejected endpoints (``endpoints`` itself
        when nothing is left out; possibly empty — failing open is the resolver's decision, made
        after the policy, :meth:`~resolver.resolution.resolver.Resolver.candidates`)."""
        view = self.verdicts.view
        if view.empty:
            return endpoints
        kept: dict[str, tuple[str, ...]] = {}
        changed = False
        for cluster, addresses in endpoints.items():
            if cluster in view.unreachable:
                changed = True
                continue
            ejected = view.ejected.get(cluster)
            remaining = tuple(a for a in addresses if a not in ejected) if ejected else addresses
            changed = changed or len(remaining) != len(addresses)
            if remaining:
                kept[cluster] = remaining
        return MappingProxyType(kept) if changed else endpoints

    def count_fail_open(self) -> None:
        probe_metrics.FAIL_OPEN_ANSWERS.inc()

    # -- reporting -----------------------------------------------------------------------------

    def _changed(self, change: Change) -> None:
        own = self.settings.cluster_name or "(no clusterName)"
        if change.what == "unreachable":
            log.warning("cluster %s is UNREACHABLE from %s: %s; leaving it out of answers until %d good rounds",
                        change.cluster, own, change.detail, self.settings.reachable_after)
        elif change.what == "reachable":
            log.warning("cluster %s is reachable again from %s after %.0fs (%s); back in answers",
                        change.cluster, own, change.lasted, change.detail)
        elif change.what == "ejected":
            log.warning("ejected endpoint %s of cluster %s: %s", change.address, change.cluster, change.detail)
        elif change.what == "gone":
            log.info("ejected endpoint %s of cluster %s left the registry", change.address, change.cluster)
        elif change.what == "returned":
            log.info("endpoint %s of cluster %s is back in answers after its ejection (%.0fs)", change.address,
                     change.cluster, change.lasted)
        else:
            log.info("no caller asked about cluster %s lately: it is no longer probed", change.cluster)
        probe_metrics.REACHABILITY_CHANGES.labels(change.cluster, change.what).inc()
        self._update_gauges(change.cluster, change.what == "forgotten")
        self._update_fail_open()

    def _update_gauges(self, cluster: str, forgotten: bool) -> None:
        verdicts = self.verdicts
        if forgotten:
            for gauge in (probe_metrics.CLUSTER_REACHABLE, probe_metrics.ENDPOINTS_EJECTED):
                with contextlib.suppress(KeyError):
                    gauge.remove(cluster)
        else:
            record = verdicts.clusters.get(cluster)
            state = record.state if record is not None else State.REACHABLE
            probe_metrics.CLUSTER_REACHABLE.labels(cluster).set(1.0 if state is State.REACHABLE else 0.0)
            probe_metrics.ENDPOINTS_EJECTED.labels(cluster).set(len(verdicts.ejected_now(cluster)))

    def _update_fail_open(self) -> None:
        failing_open = self.verdicts.all_others_unreachable()
        if failing_open and not self._failing_open_since:
            self._failing_open_since = self._clock()
            log.error("every other probed cluster is unreachable from %s: failing open — answers that have only "
                      "those clusters are served as if probing were off (check the links, or the probes: "
                      "clusterCIDRs, firewalls)", self.settings.cluster_name or "here")
        elif not failing_open and self._failing_open_since:
            log.warning("no longer failing open after %.0fs: a probed cluster is reachable again (or no longer "
                        "asked about)",
                        self._clock() - self._failing_open_since)
            self._failing_open_since = 0.0
        probe_metrics.FAIL_OPEN.set(1.0 if failing_open else 0.0)

    def report(self) -> dict[str, Any]:
        """``/reachability``: per cluster reachable or unreachable since when, its ejected endpoints."""
        verdicts = self.verdicts
        records, endpoint_records = verdicts.copied()
        clusters = {}
        for cluster, record in sorted(records.items()):
            endpoints = endpoint_records.get(cluster, {})
            clusters[cluster] = {
                "state": "own cluster" if cluster == verdicts.own_cluster else record.state.value,
                "since": record.since, "badRounds": record.bad_rounds, "goodRounds": record.good_rounds,
                "lastRound": record.last_round, "lastError": record.last_error,
                "probes": record.probes, "failedProbes": record.failures,
                "ejected": {address: {"until": time.time() + r.ejected_until - time.monotonic(),
                                      "ejections": r.ejections, "error": r.last_error}
                            for address, r in sorted(endpoints.items()) if r.ejected_until},
            }
        for cluster in sorted(self.prober.unprobed):
            clusters[cluster] = {"state": "unprobed", "why": "no clusterCIDRs entry for this cluster"}
        return {"cluster": self.settings.cluster_name, "failOpen": bool(self._failing_open_since),
                "failOpenSince": self._failing_open_since, "version": verdicts.version,
                "settings": {"probeInterval": self.settings.probe_interval,
                             "probeTimeout": self.settings.probe_timeout, "probeSample": self.settings.probe_sample,
                             "unreachableAfter": self.settings.unreachable_after,
                             "reachableAfter": self.settings.reachable_after},
                "clusters": clusters}
