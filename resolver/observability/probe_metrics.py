"""Reachability metrics (:mod:`resolver.reachability`): probes, verdicts, ejections, fail-open.

Separate from :mod:`resolver.observability.metrics` only to keep modules small; same registry,
same ``dapr_nr_`` prefix. Per-cluster gauges are removed when a cluster is forgotten (no caller
asked about it lately), so a scrape lists only clusters that are being judged.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from resolver.observability.metrics import NAMESPACE

PROBES = Counter("probes", "Reachability probes (TCP connects to endpoints' Dapr ports) by cluster and result "
                 "(ok, failed)", ["cluster", "result"], namespace=NAMESPACE)
CLUSTER_REACHABLE = Gauge("cluster_reachable", "1 while a probed cluster is reachable from this process, 0 while "
                          "it is left out of answers as unreachable", ["cluster"], namespace=NAMESPACE)
ENDPOINTS_EJECTED = Gauge("endpoints_ejected", "Endpoints of a cluster ejected after failed probes",
                          ["cluster"], namespace=NAMESPACE)
REACHABILITY_CHANGES = Counter("reachability_changes", "Reachability verdict changes by cluster and change "
                               "(unreachable, reachable, ejected, returned, forgotten)", ["cluster", "change"],
                               namespace=NAMESPACE)
FAIL_OPEN = Gauge("reachability_fail_open", "1 while every other probed cluster is unreachable: answers that "
                  "have only those clusters are served as if probing were off", namespace=NAMESPACE)
FAIL_OPEN_ANSWERS = Counter("fail_open_answers", "Answers served unfiltered because every candidate was "
                            "unreachable or ejected (fail open)", namespace=NAMESPACE)
PROBE_BUDGET_CUTS = Counter("probe_budget_exhausted", "Probe rounds cut short by probeBudget (fewer endpoints "
                            "probed than probeSample asks)", namespace=NAMESPACE)
UNPROBED_CLUSTERS = Gauge("unprobed_clusters", "Clusters asked about but never probed: no clusterCIDRs entry, so "
                          "no address of theirs may be probed", namespace=NAMESPACE)
