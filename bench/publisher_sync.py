"""Publisher benchmarks: 10,000 pods to synced, pod event → etcd latency, and steady state.

Runs the real ``publish`` command against the fake API server from ``tests/`` (the real
kubernetes client, real HTTP) and a local etcd, and reads the publisher's own Prometheus
metrics for the number of etcd requests it made.

1. start → ``syncedAt`` with 10,000 ready Dapr pods, and etcd requests made;
2. pod event → record in etcd: the fake API server gets a pod update, a watch on etcd in this
   process sees the record change; p50/p99 over ``--events`` samples;
3. steady state with no churn for ``--steady`` seconds: etcd requests per minute by
   operation (goal: keep-alives only) and the publisher's RSS.

Also measures, in-process, what the kubernetes client's model deserialization of the same
10,000-pod list would cost versus the raw JSON parse the publisher does.

    python bench/publisher_sync.py [--pods 10000] [--events 300] [--steady 60]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import urllib.request
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
                       "items": [make_pod(f"p-{i}", ip=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
                                 for i in range(pods)]})
    started = time.perf_counter()
    json.loads(body)
    raw = time.perf_counter() - started

    started = time.perf_counter()
    k8s.ApiClient().deserialize(body, "V1PodList", "application/json")
    return raw, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--steady", type=float, default=60.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dapr-nr-bench-"))
    api = FakeKubeApi(bookmark_interval=5.0)
    for n in range(10):
        api.put_node(make_node(f"node-{n}", zone=f"zone-{n % 3}"))
    for i in range(args.pods):
        api.put_pod(make_pod(f"app{i % 500}-{i}", app_id=f"app{i % 500}", namespace=f"ns{i % 20}",
                             ip=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", node=f"node-{i % 10}"))
    metrics_port = free_port()
    with local_registry(work) as (etcd, gateway, keys):
        spawned = time.time()
        publisher = CliProcess(["publish", "--cluster", "bench", "--kubeconfig", str(api.kubeconfig(work / "kc")),
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

            latencies = event_latencies(api, gateway, keys, args.events)
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
            api.close()
    raw, model = model_vs_raw(args.pods)
    print(f"4. parsing a {args.pods:,}-pod list: raw JSON {raw:.2f} s vs kubernetes models {model:.2f} s "
          f"({model / raw:.0f}× slower) — the publisher parses raw JSON")


def event_latencies(api: FakeKubeApi, gateway: EtcdGateway, keys: Keys, count: int) -> list[float]:
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
        api.put_pod(make_pod("app0-0", app_id="app0", namespace="ns0", ip=address, node="node-0"))
        def seen(wanted: str = address) -> bool:
            return wanted in arrived

        wait_until(seen, 10, "the record", interval=0.0005)
        samples.append(arrived[address] - started)
    watch.cancel()
    return samples


if __name__ == "__main__":
    main()
