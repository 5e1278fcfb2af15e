"""Prometheus metrics of every role (served on ``--metrics-port``).

Counters and histograms are module globals updated where things happen. State that already
lives in objects (cache sizes, connected/synced) is read at scrape time by a collector over
the live registry readers, so it can never drift from the truth.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from resolver.registry.reader import RegistryReader

NAMESPACE = "dapr_nr"

RESOLVES = Counter("resolves", "Resolve calls by outcome (registry, fallback, not_found, invalid, "
                   "uninitialized, error) and policy", ["outcome", "policy"], namespace=NAMESPACE)
RESOLVE_SECONDS = Histogram("resolve_duration_seconds", "Time to answer a resolve inside the component",
                            namespace=NAMESPACE,
                            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 3))
WATCH_RESTARTS = Counter("registry_watch_restarts", "Registry watches that broke and were restarted",
                         namespace=NAMESPACE)
RELISTS = Counter("registry_relists", "Full lists of the registry (start-up, compaction, new etcd)",
                  namespace=NAMESPACE)
ETCD_REQUESTS = Counter("etcd_requests", "etcd requests sent, by operation", ["operation"], namespace=NAMESPACE)
ETCD_ERRORS = Counter("etcd_errors", "Failed etcd operations", ["operation"], namespace=NAMESPACE)
PUBLISHER_WRITES = Counter("publisher_writes", "Records written by the publisher", ["op"], namespace=NAMESPACE)
PUBLISHER_SKIPPED = Counter("publisher_skipped", "Pods or inventory entries skipped", ["reason"],
                            namespace=NAMESPACE)
LEASE_RENEWALS = Counter("publisher_lease_renewals", "Lease keep-alives sent", namespace=NAMESPACE)
LEASE_LOSSES = Counter("publisher_lease_losses", "Leases found expired or revoked", namespace=NAMESPACE)
RELISTS_KUBE = Counter("publisher_relists", "Kubernetes re-lists (410 Gone, dropped streams)", namespace=NAMESPACE)
LEADER = Gauge("publisher_leader", "1 while this publisher replica is the leader", namespace=NAMESPACE)
DNS_QUERIES = Counter("dns_queries", "DNS queries by response code", ["rcode", "transport"], namespace=NAMESPACE)

_resolve_counters: dict[tuple[str, str], Counter] = {}


def count_resolve(outcome: str, policy: str) -> None:
    """``RESOLVES.labels(outcome, policy).inc()`` with the child cached (labels() costs ~2 µs)."""
    child = _resolve_counters.get((outcome, policy))
    if child is None:
        child = _resolve_counters[(outcome, policy)] = RESOLVES.labels(outcome, policy)
    child.inc()


_readers: weakref.WeakSet[RegistryReader] = weakref.WeakSet()
_lock = threading.Lock()


def track_reader(reader: RegistryReader) -> None:
    with _lock:
        _readers.add(reader)


class _ReaderCollector(Collector):
    """Gauges read off the live registry readers at scrape time."""

    def collect(self) -> Iterator[Metric]:
        with _lock:
            readers = list(_readers)
        connected = GaugeMetricFamily(f"{NAMESPACE}_registry_connected", "1 while the etcd watch is up",
                                      labels=["prefix"])
        synced = GaugeMetricFamily(f"{NAMESPACE}_registry_synced", "1 once the first list has loaded",
                                   labels=["prefix"])
        apps = GaugeMetricFamily(f"{NAMESPACE}_cached_apps", "Apps in the cache", labels=["prefix"])
        endpoints = GaugeMetricFamily(f"{NAMESPACE}_cached_endpoints", "Endpoints in the cache per cluster",
                                      labels=["prefix", "cluster"])
        invalid = GaugeMetricFamily(f"{NAMESPACE}_registry_invalid_records", "Registry records skipped as "
                                    "invalid since start", labels=["prefix"])
        for reader in readers:
            prefix = reader.connection.prefix
            connected.add_metric([prefix], 1.0 if reader.connected else 0.0)
            synced.add_metric([prefix], 1.0 if reader.synced else 0.0)
            apps.add_metric([prefix], reader.cache.app_count())
            invalid.add_metric([prefix], reader.cache.invalid_records)
            for cluster, count in reader.cache.counts_by_cluster().items():
                endpoints.add_metric([prefix, cluster], count)
        yield from (connected, synced, apps, endpoints, invalid)


REGISTRY.register(_ReaderCollector())


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from other pods
    """Serve /metrics on ``host:port`` in a daemon thread (0 = disabled)."""
    if not port:
        return
    try:
        start_http_server(port, addr=host)
    except OSError as error:
        from resolver.errors import ConfigError

        raise ConfigError("--metrics-port", f"cannot listen on {host}:{port}: {error.strerror}") from None
