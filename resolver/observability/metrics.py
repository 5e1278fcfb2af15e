"""Prometheus metrics of every role (served on ``--metrics-port``).

Counters and histograms are module globals updated where things happen. State that already
lives in objects (cache sizes, connected/synced) is read at scrape time by a collector over
the live registry readers, so it can never drift from the truth.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication as WsgiApp

    from prometheus_client.metrics_core import Metric

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
PUBLISHER_SYNCED = Gauge("publisher_synced", "1 once this publisher's first full list is in etcd (its cluster's "
                         "syncedAt is written); stays 0 on a standby replica", namespace=NAMESPACE)
LEADER = Gauge("publisher_leader", "1 while this publisher replica is the leader", namespace=NAMESPACE)
DNS_QUERIES = Counter("dns_queries", "DNS queries by response code", ["rcode", "transport"], namespace=NAMESPACE)

_resolve_counters: dict[tuple[str, str], Counter] = {}


def count_resolve(outcome: str, policy: str) -> None:
    """``RESOLVES.labels(outcome, policy).inc()`` with the child cached (labels() costs ~2 µs)."""
    child = _resolve_counters.get((outcome, policy))
    if child is None:
        child = _resolve_counters[(outcome, policy)] = RESOLVES.labels(outcome, policy)
    child.inc()
    if outcome == "fallback":
        FALLBACK_ANSWERS.labels("component").inc()


class _Prefixed(Protocol):
    @property
    def prefix(self) -> str: ...


class _Liveness(Protocol):
    def renewal_ages(self) -> Mapping[str, float]: ...


class CacheView(Protocol):
    """What the scrape reads off a reader's cache (``resolver.registry.cache.RegistryCache``)."""

    @property
    def liveness(self) -> _Liveness: ...

    @property
    def invalid_records(self) -> int: ...

    @property
    def withdrawn(self) -> Collection[str]: ...

    def app_count(self) -> int: ...

    def counts_by_cluster(self) -> Mapping[str, int]: ...

    def gone_clusters(self) -> Iterable[str]: ...

    def conflicts(self) -> Mapping[str, int]: ...


class ReaderView(Protocol):
    """What the scrape and ``/readyz`` read off a live registry reader
    (``resolver.registry.supervised.SupervisedReader``).

    Protocols, not the classes: metrics sit below the etcd client and the registry in the
    layer order (``resolver/__init__.py``) and must not import them.
    """

    @property
    def connection(self) -> _Prefixed: ...

    @property
    def connected(self) -> bool: ...

    @property
    def synced(self) -> bool: ...

    @property
    def no_quorum(self) -> bool: ...

    @property
    def cache(self) -> CacheView: ...

    def lag_seconds(self) -> float: ...

    def unreachable_for(self) -> float: ...


_readers: weakref.WeakSet[ReaderView] = weakref.WeakSet()
_lock = threading.Lock()


def track_reader(reader: ReaderView) -> None:
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
        _start_http_server(port, host)  # /metrics, /healthz, /readyz (probes block below)
    except OSError as error:
        from resolver.errors import ConfigError

        raise ConfigError("--metrics-port", f"cannot listen on {host}:{port}: {error.strerror}") from None


# -- publisher (writer side: convergence, keep-alive stream, identity, address policy, inventory) --
PUBLISHER_REPAIRS = Counter("publisher_repairs", "Records found missing or different in etcd by the periodic "
                            "check and put back (or extras deleted)", ["op"], namespace=NAMESPACE)
KEEPALIVE_RECONNECTS = Counter("publisher_keepalive_reconnects", "Lease keep-alive streams that broke or timed "
                               "out and were reopened", namespace=NAMESPACE)
PUBLISHER_REFUSED = Counter("publisher_refused_addresses", "Pod or inventory addresses the address policy "
                            "refused to publish", ["reason"], namespace=NAMESPACE)
PUBLISHER_CONFLICTS = Counter("publisher_conflicts", "Times this publisher found its cluster name held by a live "
                              "publisher of another cluster identity", namespace=NAMESPACE)
PUBLISHER_OVERSIZE = Counter("publisher_oversize_records", "Records etcd refused as too large, skipped",
                             namespace=NAMESPACE)
INVENTORY_LOADS = Counter("publisher_inventory_loads", "Inventory reloads by outcome (applied, kept, "
                          "unchanged)", ["outcome"], namespace=NAMESPACE)


# -- DNS bridge (limits, lookups, TCP connections) --
DNS_LIMIT_REACHED = Counter("dns_limit_reached", "Times a DNS bridge limit was reached (tcp_connections, "
                            "tcp_idle, tcp_read, tcp_write, lookup_queue, lookup_timeout, pending)", ["limit"],
                            namespace=NAMESPACE)
DNS_LOOKUPS = Counter("dns_lookups", "Host-name and fallback lookups by outcome (ok, nxdomain, failed, timeout, "
                      "rejected, cached)", ["outcome"], namespace=NAMESPACE)
DNS_TCP_CONNECTIONS = Gauge("dns_tcp_connections", "Open DNS TCP connections", namespace=NAMESPACE)
DNS_REFUSED_ADDRESSES = Counter("dns_refused_addresses", "Addresses a host-name endpoint resolved to that the "
                                "address policy refused to serve", namespace=NAMESPACE)


# -- Consul-compatible catalog (requests, blocking queries, limits) --
CONSUL_REQUESTS = Counter("consul_requests", "HTTP requests to the Consul-compatible catalog by endpoint and "
                          "status code", ["endpoint", "code"], namespace=NAMESPACE)
CONSUL_BLOCKING = Gauge("consul_blocking_queries", "Blocking queries of the Consul-compatible catalog waiting now",
                        namespace=NAMESPACE)
CONSUL_LIMIT_REACHED = Counter("consul_limit_reached", "Times a Consul-compatible catalog limit was reached "
                               "(blocking, connections, request_size, wait, registrations)", ["limit"],
                               namespace=NAMESPACE)
CONSUL_REGISTRATIONS = Gauge("consul_registrations", "Services registered with the Consul-compatible catalog, by "
                             "state (passing: the record is in etcd; critical: withdrawn until its check passes)",
                             ["state"], namespace=NAMESPACE)
CONSUL_CHECK_FAILURES = Counter("consul_check_failures", "Failed HTTP health checks of registered services, by "
                                "reason (status, timeout, error, address)", ["reason"], namespace=NAMESPACE)

# -- component and configuration (hostile clients, limits, forward-compatible keys) --
CONFIG_UNKNOWN_KEYS = Counter("config_unknown_keys", "Configuration keys this release does not know, ignored "
                              "with a warning, by carrier (Init, environment, --set, config)", ["source"],
                              namespace=NAMESPACE)
COMPONENT_LIMIT_REACHED = Counter("component_limit_reached", "Calls refused or answered with the fallback because "
                                  "a process-level limit was full (instances, registries, streams, sync_waits)",
                                  ["limit"], namespace=NAMESPACE)
COMPONENT_SLOTS_IN_USE = Gauge("component_slots_in_use", "Slots of a bounded concern in use now (streams, "
                               "sync_waits, admin)", ["concern"], namespace=NAMESPACE)
COMPONENT_MALFORMED = Counter("component_malformed_requests", "Requests whose protobuf did not parse "
                              "(answered INVALID_ARGUMENT)", ["method"], namespace=NAMESPACE)


# -- registry readers (untrusted records, liveness, history, reader supervision) --
RECORDS_SKIPPED = Counter("records_skipped", "Registry records skipped by readers, by reason (invalid: does not "
                          "parse or disagrees with its key; refused: the address policy refused its address)",
                          ["reason"], namespace=NAMESPACE)
READER_FAILURES = Counter("registry_reader_failures", "Unexpected errors in a registry reader loop (each is "
                          "logged, turns registry health NOT_SERVING and leads to a re-list with backoff)",
                          namespace=NAMESPACE)
EVENT_DELAY = Histogram("registry_event_delay_seconds", "From a record's updatedAt (the writer's clock) to the "
                        "moment a reader applied its watch event", namespace=NAMESPACE,
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
REGISTRY_NEW_HISTORY = Counter("registry_new_history", "Times a reader found etcd holding a new history (a wiped "
                               "or restored etcd: the registry identity key changed or vanished)",
                               namespace=NAMESPACE)


class _ReaderHealthCollector(Collector):
    """Per-reader gauges an alert can use for the silent failures."""

    def collect(self) -> Iterator[Metric]:
        with _lock:
            readers = list(_readers)
        lag = GaugeMetricFamily(f"{NAMESPACE}_registry_reader_lag_seconds", "Seconds since the reader last "
                                "received an event or confirmed progress from etcd", labels=["prefix"])
        quorum = GaugeMetricFamily(f"{NAMESPACE}_registry_no_quorum", "1 while the reader's etcd member reports "
                                   "no leader (the last known state is served)", labels=["prefix"])
        renewal = GaugeMetricFamily(f"{NAMESPACE}_cluster_renewal_age_seconds", "Seconds since a cluster's "
                                    "publisher heartbeat last advanced", labels=["prefix", "cluster"])
        withdrawn = GaugeMetricFamily(f"{NAMESPACE}_cluster_withdrawn", "1 while a cluster is left out of "
                                      "answers because its heartbeat stood still", labels=["prefix", "cluster"])
        gone = GaugeMetricFamily(f"{NAMESPACE}_cluster_gone", "1 for a cluster that was seen (lastseen key) but "
                                 "has no live publisher now", labels=["prefix", "cluster"])
        conflicts = GaugeMetricFamily(f"{NAMESPACE}_cluster_conflicts", "Publishers refused because another "
                                      "identity holds the cluster name (live conflict markers)",
                                      labels=["prefix", "cluster"])
        for reader in readers:
            prefix = reader.connection.prefix
            lag.add_metric([prefix], reader.lag_seconds())
            quorum.add_metric([prefix], 1.0 if reader.no_quorum else 0.0)
            cache = reader.cache
            for cluster, age in cache.liveness.renewal_ages().items():
                renewal.add_metric([prefix, cluster], age)
                withdrawn.add_metric([prefix, cluster], 1.0 if cluster in cache.withdrawn else 0.0)
            for cluster in cache.gone_clusters():
                gone.add_metric([prefix, cluster], 1.0)
            for cluster, count in cache.conflicts().items():
                conflicts.add_metric([prefix, cluster], count)
        yield from (lag, quorum, renewal, withdrawn, gone, conflicts)


REGISTRY.register(_ReaderHealthCollector())


# -- probes: /healthz and /readyz next to /metrics (operator's view) --
# Liveness is the process answering, never etcd's reachability: an etcd outage must not make
# Kubernetes restart publishers (losing their state) or bridges. Readiness fails only until the
# first sync; afterwards the last known state is served through etcd outages, so it stays
# ready (latched) — a bridge that turned unready on an outage would blank DNS for its clients.
FALLBACK_ANSWERS = Counter("fallback_answers", "Answers served from the fallback (template) instead of the "
                           "registry, by role (component, dns): a silent failure when it grows", ["role"],
                           namespace=NAMESPACE)
_readiness: list[Callable[[], bool]] = []
_ready_latched = threading.Event()


def set_readiness(check: Callable[[], bool]) -> None:
    """Tell ``/readyz`` how this role knows its first sync is done (``dns``: the reader's ``synced``;
    ``publish``: the first full list written). Without one, ``/readyz`` waits for every tracked
    registry reader to sync."""
    _readiness[:] = [check]


def _unready_reason() -> str:
    with _lock:
        readers = list(_readers)
    for reader in readers:
        if not reader.synced:
            state = "connected" if reader.connected else f"etcd unreachable for {reader.unreachable_for():.0f}s"
            return f"registry {reader.connection.prefix} never synced ({state})"
    return "first sync not done yet"


def readiness() -> tuple[bool, str]:
    """``(ready, why not)`` as ``/readyz`` answers it; ready is latched once reached."""
    if _ready_latched.is_set():
        return True, "ready"
    try:
        if _readiness:
            ready = bool(_readiness[0]())
        else:
            with _lock:  # no reader yet is "not yet", never ready (ready is latched)
                ready = bool(_readers) and all(reader.synced for reader in _readers)
    except Exception as error:  # a failing check is "not ready", with the reason, never a 500
        return False, f"readiness check failed: {type(error).__name__}: {error}"
    if ready:
        _ready_latched.set()
        return True, "ready"
    return False, _unready_reason()


_pages: dict[str, Callable[[], object]] = {}


def set_page(path: str, render: Callable[[], object]) -> None:
    """Serve ``render()`` as JSON at ``path`` next to /metrics (``/reachability``: what ``status
    --reachability`` prints). State only the answering process knows has no other home."""
    _pages[path] = render


def _probe_app(metrics_app: WsgiApp) -> WsgiApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        page = _pages.get(path)
        if page is not None:
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(page(), indent=1, sort_keys=True).encode() + b"\n"]
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n"]
        if path == "/readyz":
            ready, reason = readiness()
            start_response("200 OK" if ready else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8")])
            return [f"{'ready' if ready else 'not ready: ' + reason}\n".encode()]
        return metrics_app(environ, start_response)

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds must not fill the log."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _start_http_server(port: int, host: str) -> None:
    """Like prometheus_client's ``start_http_server``, plus ``/healthz`` and ``/readyz``."""
    from prometheus_client import make_wsgi_app

    server = make_server(host, port, _probe_app(make_wsgi_app(REGISTRY)), _ThreadingServer,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
