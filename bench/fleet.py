"""The component at fleet scale: N ``serve`` processes against one etcd, each calling a handful of apps.

    python -m bench.fleet --components 20 --scope onDemand
    python -m bench.fleet --components 50 --scope onDemand --proxy     # through etcd grpc-proxy
    python -m bench.fleet --components 20 --scope all                   # the full mirror, for comparison

Registry: ``--records`` endpoints (default 100,000) across 3 clusters, 10 instances per app and
cluster. Every component resolves 5 apps: ``hot`` (shared by all, for put → visible) and 4
of its own. Reported: spawn → serving, first resolve of an app → registry answer, RSS per
component, etcd CPU and RSS, events delivered per component per second and component CPU under
churn in apps nobody here calls, and put → visible in every component (measured inside each
component: the ``registry_event_delay_seconds`` histogram, writer's updatedAt → applied).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.common import percentile, rss_mb
from resolver.component.client import ComponentClient
from resolver.config import Layer, load_settings
from resolver.demo.processes import CliProcess
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import GrpcProxy, LocalEtcd, free_ports
from resolver.records.schema import ClusterInfo, EndpointRecord, Keys

CLUSTERS = ("cluster-1", "cluster-2", "cluster-3")
INSTANCES = 10
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def populate(gateway: EtcdGateway, keys: Keys, records: int) -> int:
    apps = max(1, records // (len(CLUSTERS) * INSTANCES))
    batch: list[tuple[str, bytes, int | None]] = []
    for cluster_index, cluster in enumerate(CLUSTERS):
        gateway.put(keys.info(cluster), ClusterInfo(cluster, "bench", "bench", 1.0, 2.0, apps * INSTANCES).to_json())
        for app in range(apps):
            for instance in range(INSTANCES):
                rec = EndpointRecord(f"app{app}", "default", cluster, f"i{instance}",
                                     f"10.{cluster_index}.{app % 250}.{instance + 1}", 50002, updated_at=1.0)
                batch.append((rec.key(keys), rec.to_json(), None))
                if len(batch) >= 2_000:
                    gateway.apply(batch, [])
                    batch.clear()
    gateway.apply(batch, [])
    return apps


def histogram(port: int) -> tuple[dict[float, float], float]:
    """Cumulative buckets and count of registry_event_delay_seconds from one component's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    buckets: dict[float, float] = {}
    count = 0.0
    for line in text.splitlines():
        if line.startswith("dapr_nr_registry_event_delay_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("dapr_nr_registry_event_delay_seconds_count"):
            count = float(line.rsplit(" ", 1)[1])
    return buckets, count


def quantile_from(buckets: dict[float, float], q: float) -> float:
    total = max(buckets.values(), default=0.0)
    for bound in sorted(buckets):
        if buckets[bound] >= q * total:
            return bound
    return float("nan")


def spawn_alone(work: Path, endpoint: str, scope: str) -> tuple[float, float]:
    """Spawn → serving and the first resolve for one component with the machine otherwise idle."""
    socket = work / "alone" / "etcd.sock"
    started = time.monotonic()
    process = CliProcess(["serve", "--socket-dir", str(socket.parent), "--set", f"etcdEndpoints={endpoint}", "--set",
                          f"cacheScope={scope}", "--set", "clusterName=cluster-1", "--log-level", "warning"],
                         work / "alone.log")
    try:
        while True:
            process.check_running()
            try:
                with ComponentClient(socket, timeout=2) as client:
                    if client.health() == "SERVING":
                        break
            except Exception:  # not up yet
                time.sleep(0.01)
        serving = time.monotonic() - started
        with ComponentClient(socket, timeout=30) as client:
            client.init("{}")
            began = time.monotonic()
            client.resolve("app7")
            return serving, time.monotonic() - began
    finally:
        process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--components", type=int, default=20)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--scope", choices=["onDemand", "all"], default="onDemand")
    parser.add_argument("--proxy", action="store_true", help="components reach etcd through etcd grpc-proxy")
    parser.add_argument("--churn-seconds", type=float, default=10.0)
    parser.add_argument("--churn-rate", type=float, default=500.0, help="updates/s to apps nobody here calls")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dapr-nr-bench-fleet-"))
    etcd = LocalEtcd(work / "etcd")
    etcd.start()
    proxy = GrpcProxy(etcd.address, log_dir=work).start() if args.proxy else None
    components: list[tuple[CliProcess, Path, int]] = []
    try:
        settings = load_settings([Layer("bench", {"etcdEndpoints": etcd.endpoint})])
        keys = Keys(settings.prefix)
        gateway = EtcdGateway(settings.etcd)
        started = time.monotonic()
        apps = populate(gateway, keys, args.records)
        print(f"registry: {apps * INSTANCES * len(CLUSTERS):,} records ({apps:,} apps × {len(CLUSTERS)} clusters × "
              f"{INSTANCES}) written in {time.monotonic() - started:.1f}s; scope {args.scope}, "
              f"{args.components} components{' through etcd grpc-proxy' if proxy else ''}")
        endpoint = proxy.endpoint if proxy else etcd.endpoint
        alone = spawn_alone(work, endpoint, args.scope)
        print(f"one component alone: spawn → serving {alone[0]:.2f}s, then first resolve → registry answer "
              f"{alone[1] * 1000:.1f} ms")
        etcd_cpu_before = cpu_seconds(etcd.pid)
        ports = free_ports(args.components)
        spawn_at: list[float] = []
        for index in range(args.components):
            socket_dir = work / f"sockets-{index}"
            process = CliProcess(["serve", "--socket-dir", str(socket_dir), "--name", "etcd", "--metrics-port",
                                  str(ports[index]), "--set", f"etcdEndpoints={endpoint}", "--set",
                                  f"cacheScope={args.scope}", "--set", "clusterName=cluster-1", "--set",
                                  "initialSyncWait=60s", "--log-level", "warning"], work / f"serve-{index}.log")
            components.append((process, socket_dir / "etcd.sock", ports[index]))
            spawn_at.append(time.monotonic())
        serving: list[float] = [0.0] * len(components)
        deadline = time.monotonic() + 300
        while not all(serving) and time.monotonic() < deadline:
            for index, (process, sock, _) in enumerate(components):
                if serving[index] or not sock.exists():
                    continue
                try:
                    with ComponentClient(sock, timeout=2) as client:
                        if client.health() == "SERVING":
                            serving[index] = time.monotonic() - spawn_at[index]
                except Exception:  # not up yet
                    process.check_running()
            time.sleep(0.02)
        first_resolve: list[float] = []
        for index, (_, sock, _) in enumerate(components):
            called = ["app0", *(f"app{1 + (index * 4 + k) % (apps - 1)}" for k in range(4))]
            with ComponentClient(sock, timeout=60) as client:
                client.init("{}")
                for app in called:
                    began = time.monotonic()
                    address = client.resolve(app)
                    first_resolve.append(time.monotonic() - began)
                    assert address.startswith("10.0."), f"{app}: not a registry answer: {address}"
        rss = [rss_mb(process.pid) for process, _, _ in components]
        time.sleep(1.0)
        idle_cpu = [cpu_seconds(process.pid) for process, _, _ in components]
        counts_before = [histogram(port)[1] for _, _, port in components]

        stop = threading.Event()
        churned = [0]

        def churn() -> None:  # updates to apps no component calls
            interval = 1.0 / args.churn_rate
            index = 0
            while not stop.is_set():
                app = f"app{apps - 1 - index % max(1, apps // 2)}"
                rec = EndpointRecord(app, "default", "cluster-2", f"i{index % INSTANCES}",
                                     f"10.1.{index % 250}.{index % 200 + 1}", 50002)
                gateway.put(rec.key(keys), rec.to_json())
                churned[0] += 1
                index += 1
                time.sleep(interval)

        churner = threading.Thread(target=churn, daemon=True)
        churner.start()
        time.sleep(args.churn_seconds)
        stop.set()
        churner.join()
        churn_cpu = [cpu_seconds(process.pid) - before for (process, _, _), before in zip(components, idle_cpu,
                                                                                         strict=True)]
        counts_churn = [histogram(port)[1] for _, _, port in components]
        events_per_second = [(after - before) / args.churn_seconds
                             for before, after in zip(counts_before, counts_churn, strict=True)]

        merged_before: dict[float, float] = {}
        for _, _, port in components:
            for bound, value in histogram(port)[0].items():
                merged_before[bound] = merged_before.get(bound, 0.0) + value
        for round_ in range(50):  # put → visible in every component that follows the app
            rec = EndpointRecord("app0", "default", "cluster-1", f"hot{round_ % 5}", f"10.0.9.{round_ + 1}", 50002)
            gateway.put(rec.key(keys), rec.to_json())
            time.sleep(0.05)
        time.sleep(1.0)
        merged: dict[float, float] = {}
        for _, _, port in components:
            for bound, value in histogram(port)[0].items():
                merged[bound] = merged.get(bound, 0.0) + value
        visible = {bound: merged[bound] - merged_before.get(bound, 0.0) for bound in merged}
        etcd_cpu = cpu_seconds(etcd.pid) - etcd_cpu_before

        print(f"spawn → serving: p50 {percentile(serving, 50):.2f}s, p99 {percentile(serving, 99):.2f}s, "
              f"max {max(serving):.2f}s")
        print(f"first resolve of an app → registry answer: p50 {percentile(first_resolve, 50) * 1000:.1f} ms, "
              f"p99 {percentile(first_resolve, 99) * 1000:.1f} ms (n={len(first_resolve)})")
        print(f"RSS per component: p50 {percentile(rss, 50):.1f} MB, max {max(rss):.1f} MB")
        print(f"etcd: RSS {rss_mb(etcd.pid):.0f} MB, CPU {etcd_cpu:.1f}s over the run")
        print(f"churn elsewhere: {churned[0] / args.churn_seconds:.0f} updates/s for {args.churn_seconds:.0f}s → "
              f"events delivered per component {percentile(events_per_second, 50):.1f}/s (p50), component CPU "
              f"{percentile(churn_cpu, 50) / args.churn_seconds * 1000:.1f} ms/s (p50), "
              f"{max(churn_cpu) / args.churn_seconds * 1000:.1f} ms/s (max)")
        print(f"put → visible in all {len(components)} components (50 puts, ≤ bucket bound): "
              f"p50 ≤ {quantile_from(visible, 0.5) * 1000:g} ms, p99 ≤ {quantile_from(visible, 0.99) * 1000:g} ms "
              f"({max(visible.values(), default=0):.0f} applications)")
        print(f"load: {os.getloadavg()[0]:.1f} (1-min) on {os.cpu_count()} cores")
        gateway.close()
    finally:
        for process, _, _ in components:
            process.stop()
        if proxy is not None:
            proxy.stop()
        etcd.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
