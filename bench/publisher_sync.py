"""Publisher benchmarks: 10,000 pods to synced, pod event → etcd latency, and steady state.

Runs the real ``publish`` command against an API server — ``--api-server real`` (the default): a
real kube-apiserver built from Kubernetes by scripts/build-peers.sh, with its own etcd
(tests/support/kube_apiserver.py); ``--api-server fake``: the HTTP fake from ``tests/`` — and a
local etcd for the registry, and reads the publisher's own Prometheus metrics for the number
of etcd requests it made.

1. start → ``syncedAt`` with 10,000 ready Dapr pods, and etcd requests made;
2. pod event → record in etcd: a new ready pod (real server: created, then its status set as a
   kubelet would; fake: put), a watch on etcd in this process sees the record; p50/p99 over
   ``--events`` samples;
3. steady state with no churn for ``--steady`` seconds: etcd requests per minute by
   operation (goal: keep-alives only) and the publisher's RSS.

Also measures, in-process, what the kubernetes client's model deserialization of the same
10,000-pod list would cost versus the raw JSON parse the publisher does.

    python bench/publisher_sync.py [--api-server real|fake] [--pods 10000] [--events 300] [--steady 60]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import local_registry, rss_mb, summary_ms
from resolver.demo.processes import CliProcess, wait_until
from resolver.etcd.gateway import EtcdGateway
from resolver.etcd.multiwatch import MultiWatch, Range
from resolver.etcd.watch import WatchEvent
from resolver.local_etcd import free_port
from resolver.records.schema import ClusterInfo, Keys
from tests.support.fake_kube import FakeKubeApi, make_node, make_pod
from tests.support.kube_apiserver import KubeApiServer
from tests.support.kubelet import Kubelet

NAMESPACES, NODES, APPS = 20, 10, 500


def pod_address(i: int) -> str:
    return f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"


class FakeCluster:
    """The HTTP fake: pods are put straight into its store."""

    def __init__(self, work: Path) -> None:
        self.api = FakeKubeApi(bookmark_interval=5.0)
        self.kubeconfig = self.api.kubeconfig(work / "kc")

    def add_nodes(self) -> None:
        for n in range(NODES):
            self.api.put_node(make_node(f"node-{n}", zone=f"zone-{n % 3}"))

    def add_pod(self, i: int, name: str | None = None, address: str | None = None) -> None:
        self.api.put_pod(make_pod(name or f"app{i % APPS}-{i}", app_id=f"app{i % APPS}",
                                  namespace=f"ns{i % NAMESPACES}", ip=address or pod_address(i),
                                  node=f"node-{i % NODES}"))

    def add_pods(self, count: int) -> None:
        for i in range(count):
            self.add_pod(i)

    def close(self) -> None:
        self.api.close()


class RealCluster(FakeCluster):
    """A real kube-apiserver: pods created through the API, their status set as a kubelet would."""

    def __init__(self, work: Path) -> None:
        self.server = KubeApiServer(work / "kube-apiserver").start()
        self.kubeconfig = self.server.admin_kubeconfig
        self.kubelet = Kubelet(self.server.core())
        for n in range(NAMESPACES):
            self.server.ensure_namespace(f"ns{n}")

    def add_nodes(self) -> None:
        for n in range(NODES):
            self.kubelet.label_node(f"node-{n}", f"zone-{n % 3}")

    def add_pod(self, i: int, name: str | None = None, address: str | None = None) -> None:
        self.kubelet.run_pod(name or f"app{i % APPS}-{i}", address or pod_address(i), app_id=f"app{i % APPS}",
                             namespace=f"ns{i % NAMESPACES}", node=f"node-{i % NODES}")

    def add_pods(self, count: int) -> None:
        with ThreadPoolExecutor(8) as pool:
            for done in [pool.submit(self.add_pod, i) for i in range(count)]:
                done.result()

    def close(self) -> None:
        self.server.close()


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    requests = {}
    for line in text.splitlines():
        if line.startswith("dapr_nr_etcd_requests_total{"):
            operation = line.split('operation="', 1)[1].split('"', 1)[0]
            requests[operation] = float(line.rsplit(" ", 1)[1])
    return requests


def model_vs_raw(pods: int) -> tuple[float, float]:
    from kubernetes import client as k8s

    body = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                       "items": [make_pod(f"p-{i}", ip=pod_address(i)) for i in range(pods)]})
    started = time.perf_counter()
    json.loads(body)
    raw = time.perf_counter() - started

    started = time.perf_counter()
    k8s.ApiClient().deserialize(body, "V1PodList", "application/json")
    return raw, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-server", choices=("real", "fake"), default="real")
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--steady", type=float, default=60.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dapr-nr-bench-"))
    cluster = RealCluster(work) if args.api_server == "real" else FakeCluster(work)
    cluster.add_nodes()
    started = time.perf_counter()
    cluster.add_pods(args.pods)
    print(f"0. {args.api_server} API server: {args.pods:,} pods created in {time.perf_counter() - started:.1f} s")
    metrics_port = free_port()
    with local_registry(work) as (etcd, gateway, keys):
        spawned = time.time()
        publisher = CliProcess(["publish", "--cluster", "bench", "--kubeconfig", str(cluster.kubeconfig),
                                "--metrics-port", str(metrics_port), "--log-level", "warning",
                                "--set", f"etcdEndpoints={etcd.endpoint}"], work / "publish.log")
        try:
            def synced_at() -> float:
                raw = gateway.get(keys.info("bench"))
                return ClusterInfo.from_json(raw).synced_at if raw else 0.0

            synced = float(wait_until(synced_at, 60, "syncedAt", interval=0.01))
            at_sync = scrape(metrics_port)
            print(f"1. {args.pods:,} pods: spawn → syncedAt {synced - spawned:.2f} s; etcd requests until synced: "
                  f"{int(sum(at_sync.values()))} ({', '.join(f'{k} {int(v)}' for k, v in sorted(at_sync.items()))})")

            latencies = event_latencies(cluster, gateway, keys, args.events)
            print(f"2. pod event → record in etcd: {summary_ms(latencies)}")

            before = scrape(metrics_port)
            time.sleep(args.steady)
            after = scrape(metrics_port)
            per_minute = {op: (after.get(op, 0) - before.get(op, 0)) * 60 / args.steady for op in after}
            shown = ", ".join(f"{op} {rate:.0f}" for op, rate in sorted(per_minute.items()) if rate)
            print(f"3. steady state, no churn, {args.steady:.0f} s: etcd requests/min: {shown or 'none'}; "
                  f"publisher RSS {rss_mb(publisher.pid):.0f} MB")
        finally:
            publisher.stop()
            cluster.close()
    raw, model = model_vs_raw(args.pods)
    print(f"4. parsing a {args.pods:,}-pod list: raw JSON {raw:.2f} s vs kubernetes models {model:.2f} s "
          f"({model / raw:.0f}× slower) — the publisher parses raw JSON")


def event_latencies(cluster: FakeCluster, gateway: EtcdGateway, keys: Keys, count: int) -> list[float]:
    arrived: dict[str, float] = {}
    ready = threading.Event()
    revision = gateway.status("/").revision
    def record_arrivals(_: Range, events: list[WatchEvent]) -> None:
        now = time.perf_counter()
        for event in events:
            arrived.setdefault(event.value.decode(errors="replace").split('"address":"', 1)[-1].split('"')[0], now)

    def compacted(_: Range) -> None:
        raise RuntimeError("the benchmark's watch was compacted")

    watch = MultiWatch(gateway, 2.0, keys.root, record_arrivals, compacted)
    watch.add(Range(keys.cluster_apps("bench")), revision + 1)

    def follow() -> None:
        ready.set()
        watch.run()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    ready.wait()
    time.sleep(0.5)
    samples = []
    for i in range(count):
        address = f"10.200.{i // 250}.{i % 250 + 1}"
        started = time.perf_counter()
        cluster.add_pod(0, f"event-{i}", address)
        def seen(wanted: str = address) -> bool:
            return wanted in arrived

        wait_until(seen, 10, "the record", interval=0.0005)
        samples.append(arrived[address] - started)
    watch.cancel()
    return samples


if __name__ == "__main__":
    main()
