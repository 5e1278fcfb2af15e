"""Measure what the manifests' requests and limits are based on: RSS and CPU of each role.

Against a local etcd holding a few thousand records, runs the three roles as the manifests do
(``publish`` from a file source with this cluster's records, ``dns`` and ``serve`` reading the
whole registry), waits for their first sync, then reports per role: RSS after sync, peak RSS
(VmHWM), CPU while idle (millicores over ``--idle`` seconds: keep-alives, heartbeats, progress
requests) and CPU per 1,000 answers under a burst of queries.

    python deploy/sizing/measure.py [--records 6000] [--published 3000] [--idle 20] [--queries 3000]

docs/production.md "Sizing" quotes one run; re-run it when a release changes a role's footprint.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from resolver.component.client import ComponentClient  # noqa: E402
from resolver.config import Layer, load_settings  # noqa: E402
from resolver.demo.processes import CliProcess, wait_dns_listening, wait_serving, wait_until  # noqa: E402
from resolver.etcd.gateway import EtcdGateway  # noqa: E402
from resolver.local_etcd import LocalEtcd, free_port  # noqa: E402
from resolver.records.schema import EndpointRecord, Keys  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fill_remote(gateway: EtcdGateway, keys: Keys, count: int) -> list[tuple[str, str]]:
    """``count`` records of two other clusters; returns the (app, namespace) pairs."""
    batch, apps = [], []
    for i in range(count):
        app, namespace = f"app{i % 500}", f"ns{i % 5}"
        record = EndpointRecord(app, namespace, f"remote-{i % 2}", f"{app}-{i}-7d9f8b",
                                f"10.{100 + i // 65536}.{(i // 256) % 256}.{i % 256}", 50002, zone="zone-a")
        batch.append((record.key(keys), record.to_json(), None))
        apps.append((app, namespace))
        if len(batch) == 1000:
            gateway.apply(batch, [])
            batch = []
    gateway.apply(batch, [])
    return sorted(set(apps))


def write_inventory(path: Path, count: int) -> None:
    lines = ["endpoints:"]
    for i in range(count):
        lines.append(f"  - {{appId: svc{i % 300}, namespace: ns{i % 5}, instance: svc{i % 300}-{i}, "
                     f"address: 10.{1 + i // 65536}.{(i // 256) % 256}.{i % 256}, port: 50002, zone: zone-a}}")
    path.write_text("\n".join(lines) + "\n")


def http_ok(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=6000, help="records of other clusters in etcd")
    parser.add_argument("--published", type=int, default=3000, help="records the measured publisher writes")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU measurement")
    parser.add_argument("--queries", type=int, default=3000, help="answers asked of dns and serve")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dapr-nr-sizing-"))
    with LocalEtcd(work / "etcd") as etcd:
        settings = load_settings([Layer("sizing", {"etcdEndpoints": etcd.endpoint})])
        gateway = EtcdGateway(settings.etcd)
        apps = fill_remote(gateway, Keys(settings.prefix), args.records)
        gateway.close()
        inventory = work / "inventory.yaml"
        write_inventory(inventory, args.published)
        common = ["--set", f"etcdEndpoints={etcd.endpoint}", "--log-format", "json"]
        ports = {"publish": free_port(), "dns": free_port()}
        processes = {
            "publish": CliProcess(["publish", "--cluster", "local", "--source", "file", "--file", str(inventory),
                                   "--metrics-port", str(ports["publish"]), *common], work / "publish.log"),
            "dns": CliProcess(["dns", "--listen", "127.0.0.1:0", "--metrics-port", str(ports["dns"]),
                               "--set", "clusterName=local", *common], work / "dns.log"),
            "serve": CliProcess(["serve", "--socket-dir", str(work), "--name", "sizing",
                                 "--set", "clusterName=local", *common], work / "serve.log"),
        }
        try:
            started = time.monotonic()
            dns_port = wait_dns_listening(processes["dns"], 60)
            wait_serving(processes["serve"], work / "sizing.sock", 60)
            for role in ("publish", "dns"):
                def ready(role: str = role) -> bool:
                    return processes[role].check_running() and http_ok(ports[role], "/readyz")

                wait_until(ready, 120, f"{role} /readyz")
            print(f"all three synced in {time.monotonic() - started:.1f} s "
                  f"({args.records} remote records, {args.published} published)")
            time.sleep(2)
            before = {role: cpu_seconds(p.pid) for role, p in processes.items()}
            time.sleep(args.idle)
            idle_mc = {role: (cpu_seconds(p.pid) - before[role]) / args.idle * 1000 for role, p in processes.items()}
            per_1000: dict[str, float] = {}
            cpu0 = cpu_seconds(processes["dns"].pid)
            for i in range(args.queries):
                app, namespace = apps[i % len(apps)]
                dns.query.udp(dns.message.make_query(f"{app}.{namespace}.dapr.internal", "A"), "127.0.0.1",
                              port=dns_port, timeout=3)
            per_1000["dns"] = (cpu_seconds(processes["dns"].pid) - cpu0) / args.queries * 1000
            cpu0 = cpu_seconds(processes["serve"].pid)
            with ComponentClient(work / "sizing.sock", instance="sizing", timeout=5) as client:
                for i in range(args.queries):
                    app, namespace = apps[i % len(apps)]
                    client.resolve(app, namespace)
            per_1000["serve"] = (cpu_seconds(processes["serve"].pid) - cpu0) / args.queries * 1000
            print("| role | RSS after sync | peak RSS | idle CPU | CPU per 1,000 answers |")
            print("|---|---|---|---|---|")
            for role, process in processes.items():
                answers = f"{per_1000[role] * 1000:.0f} ms" if role in per_1000 else "—"
                rss, peak = memory_mb(process.pid, "VmRSS"), memory_mb(process.pid, "VmHWM")
                print(f"| `{role}` | {rss:.0f} MB | {peak:.0f} MB | {idle_mc[role]:.1f} m | {answers} |")
        finally:
            for process in processes.values():
                process.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
