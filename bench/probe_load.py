"""Probe load of a DNS bridge at 50 clusters × 1,000 endpoints: connections/s, CPU, sockets, memory.

Registry: 1,000 apps, each with one endpoint in each of 50 clusters (50,000 records).
Cluster *c*'s endpoints live on 127.c.0.0/16, the cluster's ``clusterCIDRs`` entry. Clusters
1–45 point at one listening socket (a probe connects); clusters 46–50 at a closed port (a
probe is refused), so five clusters turn unreachable during the run. The bridge is the real
``dns`` process (``clusterName=cluster-1``, default probe settings). Callers are modelled as
daprd asks: every app once per 20 s (daprd's cache period), over UDP, i.e. 50 queries/s.

Each mode runs ``--seconds`` after the first sync and one warm-up period; reported: the bridge's
CPU (percent of one core, from /proc), probes sent per second (its ``dapr_nr_probes_total``),
the most sockets it had open at once (sampled every 50 ms from /proc/PID/fd), RSS, and what
``/reachability`` says at the end. ``reachability=off`` is the same run without probing.

    python -m bench.probe_load [--seconds 60] [--clusters 50] [--apps 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import threading
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query
from prometheus_client.parser import text_string_to_metric_families

from bench.bridge_herd import ready
from bench.common import local_registry, print_table, rss_mb, run_in_workdir
from bench.fleet import cpu_seconds
from resolver.demo.processes import CliProcess, wait_until
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd, free_ports
from resolver.records.schema import EndpointRecord, Keys

REFUSING = 5
ASK_EVERY = 20.0


def fill(gateway: EtcdGateway, keys: Keys, clusters: int, apps: int, open_port: int, closed_port: int) -> None:
    batch: list[tuple[str, bytes, int | None]] = []
    for cluster in range(1, clusters + 1):
        port = closed_port if cluster > clusters - REFUSING else open_port
        for app in range(apps):
            record = EndpointRecord(f"app{app}", "default", f"cluster-{cluster}", f"app{app}-{cluster}",
                                    f"127.{cluster}.{app // 250}.{app % 250 + 1}", port)
            batch.append((record.key(keys), record.to_json(), None))
            if len(batch) == 5_000:
                gateway.apply(batch, [])
                batch = []
    gateway.apply(batch, [])


def metric(port: int, name: str) -> float:
    """The sum of a counter's series (``dapr_nr_probes_total`` over clusters and results)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name)


def run(work: Path, etcd: LocalEtcd, mode: str, seconds: float, clusters: int, apps: int) -> tuple[object, ...]:
    dns_port, metrics_port = free_ports(2)
    cidrs = ",".join(f"cluster-{c}=127.{c}.0.0/16" for c in range(1, clusters + 1))
    bridge = CliProcess(["dns", "--listen", f"127.0.0.1:{dns_port}", "--metrics-port", str(metrics_port),
                         "--log-level", "warning", "--list-jitter", "0", "--set", f"etcdEndpoints={etcd.endpoint}",
                         "--set", "clusterName=cluster-1", "--set", f"clusterCIDRs={cidrs}",
                         "--set", "allowLoopback=true", "--set", f"reachability={mode}",
                         "--set", "initialSyncWait=60s"], work / f"dns-{mode}.log")
    stop = threading.Event()
    try:
        wait_until(lambda: bridge.check_running() and ready(metrics_port), 120, "the bridge's first sync")
        peak_fds = [0]

        def sample() -> None:
            while not stop.wait(0.05):
                peak_fds[0] = max(peak_fds[0], len(os.listdir(f"/proc/{bridge.pid}/fd")))

        def ask() -> None:  # every app once per ASK_EVERY seconds, spread evenly
            interval = ASK_EVERY / apps
            app = 0
            while not stop.is_set():
                query = dns.message.make_query(f"app{app % apps}.default.dapr.internal.", "A")
                with contextlib.suppress(dns.exception.Timeout, OSError):
                    dns.query.udp(query, "127.0.0.1", port=dns_port, timeout=2)
                app += 1
                stop.wait(interval)

        threads = [threading.Thread(target=f, daemon=True) for f in (sample, ask)]
        for thread in threads:
            thread.start()
        stop.wait(ASK_EVERY)  # warm-up: every app asked once, probing under way
        probes0, cpu0, t0 = metric(metrics_port, "dapr_nr_probes_total"), cpu_seconds(bridge.pid), time.monotonic()
        peak_fds[0] = 0
        stop.wait(seconds)
        elapsed = time.monotonic() - t0
        probes = metric(metrics_port, "dapr_nr_probes_total") - probes0
        cpu = cpu_seconds(bridge.pid) - cpu0
        unreachable = 0
        if mode != "off":
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/reachability", timeout=5) as reply:
                page = json.load(reply)
            unreachable = sum(1 for c in page["clusters"].values() if c.get("state") == "unreachable")
        return (mode, f"{100 * cpu / elapsed:.1f} %", f"{probes / elapsed:.1f}", peak_fds[0],
                f"{rss_mb(bridge.pid):.0f} MB", unreachable)
    finally:
        stop.set()
        bridge.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--apps", type=int, default=1000)
    args = parser.parse_args()
    run_in_workdir(lambda work: measure(work, args))


def measure(work: Path, args: argparse.Namespace) -> None:
    # One socket accepting on every loopback address: bound to 0.0.0.0, on a free port.
    acceptor = socket.socket()
    acceptor.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    acceptor.bind(("0.0.0.0", 0))  # the bench's own probe target; only loopback addresses dial it
    acceptor.listen(4096)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    accepting = threading.Event()

    def drain() -> None:  # accept and close, as a daprd would accept a connection
        acceptor.settimeout(0.5)
        while not accepting.is_set():
            try:
                connection, _ = acceptor.accept()
                connection.close()
            except TimeoutError:
                continue

    threading.Thread(target=drain, daemon=True).start()
    rows = []
    with local_registry(work) as (etcd, gateway, keys):
        fill(gateway, keys, args.clusters, args.apps, acceptor.getsockname()[1], closed_port)
        for mode in ("on", "off"):
            rows.append(run(work, etcd, mode, args.seconds, args.clusters, args.apps))
    accepting.set()
    acceptor.close()
    print(f"{args.clusters} clusters × {args.apps} endpoints ({REFUSING} clusters refusing), every app asked once "
          f"per {ASK_EVERY:g} s, {args.seconds:g} s measured per mode")
    print_table(("reachability", "bridge CPU", "probes/s", "max open fds", "RSS", "clusters unreachable"), rows)


if __name__ == "__main__":
    main()
