"""The DNS bridge under ``dnsperf``, side by side with Knot DNS serving the same records as a static zone.

One run, the same flags for every server (``dnsperf -c 4 -q 100 -l 10``, no rate limit):

* the bridge (``dapr-etcd-resolver dns``) with its response cache,
* the bridge with ``--no-response-cache`` (every answer computed afresh),
* ``knotd`` serving a zone file with the same 200 apps × 3 A records,

all answering ``app000 … app199.default.dapr.internal A`` from one query file. Reports
queries/s, average and maximum latency, lost queries, each server's CPU time per answered
query (from /proc, so it holds up better than the rate on a machine shared with other work),
and both relative to Knot. Goals: bridge with cache ≥ 0.5× Knot; lost ≤ 0.1 % for every server.
Needs ``dnsperf`` and ``knotd`` (scripts/install-test-deps.sh). Takes about 40 s.

    python bench/dns_perf.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import local_registry, print_table
from resolver.demo.processes import CliProcess, wait_dns_listening, wait_until
from resolver.local_etcd import free_port
from resolver.records.schema import EndpointRecord

ZONE = "dapr.internal"
APPS = 200
PER_APP = 3
DNSPERF = ("-c", "4", "-q", "100")


def address(app: int, instance: int) -> str:
    return f"10.{1 + app // 100}.{app % 100}.{instance + 1}"


def knot_zone(path: Path) -> None:
    lines = [f"$ORIGIN {ZONE}.", "$TTL 5",
             f"@ IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 5", f"@ IN NS ns.{ZONE}.", "ns IN A 127.0.0.1"]
    lines += [f"app{a:03d}.default IN A {address(a, i)}" for a in range(APPS) for i in range(PER_APP)]
    path.write_text("\n".join(lines) + "\n")


def start_knot(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    knot_zone(work / f"{ZONE}.zone")
    for sub in ("run", "db"):
        (work / sub).mkdir(exist_ok=True)
    (work / "knot.conf").write_text(f"""server:
    rundir: {work / 'run'}
    listen: 127.0.0.1@{port}
database:
    storage: {work / 'db'}
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: {work}
zone:
  - domain: {ZONE}
    file: {ZONE}.zone
""")
    knot = subprocess.Popen(["knotd", "-c", str(work / "knot.conf")], stdout=subprocess.DEVNULL,
                            stderr=open(work / "knot.log", "wb"))  # noqa: SIM115 - closed with the process
    wait_until(lambda: "10.1.0.1" in subprocess.run(
        ["kdig", "@127.0.0.1", "-p", str(port), f"app000.default.{ZONE}", "A", "+short", "+time=1"],
        capture_output=True, text=True, timeout=10, check=False).stdout, 20, "knotd to answer")
    return knot, port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dnsperf(port: int, pid: int, queries: Path, seconds: int) -> dict[str, float]:
    cpu_before = cpu_seconds(pid)
    result = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), *DNSPERF,
                             "-l", str(seconds)], capture_output=True, text=True, timeout=seconds + 60, check=True)
    text = result.stdout

    def number(pattern: str) -> float:
        found = re.search(pattern, text)
        if found is None:
            raise SystemExit(f"dnsperf output not understood:\n{text}")
        return float(found.group(1))

    cpu = cpu_seconds(pid) - cpu_before
    completed = number(r"Queries completed:\s+(\d+)")
    return {"qps": number(r"Queries per second:\s+([\d.]+)"), "sent": number(r"Queries sent:\s+(\d+)"),
            "cpu_us": 1e6 * cpu / max(completed, 1),
            "lost": number(r"Queries lost:\s+(\d+)"), "avg": number(r"Average Latency \(s\):\s+([\d.]+)"),
            "max": number(r"max ([\d.]+)\)")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dapr-nr-dnsperf-"))
    queries = work / "queries.txt"
    queries.write_text("".join(f"app{a:03d}.default.{ZONE} A\n" for a in range(APPS)))
    with local_registry(work) as (etcd, gateway, keys):
        records = [EndpointRecord(app_id=f"app{a:03d}", namespace="default", cluster="cluster-1",
                                  instance=f"app{a:03d}-{i}", address=address(a, i), port=50002)
                   for a in range(APPS) for i in range(PER_APP)]
        for start in range(0, len(records), 100):
            gateway.apply([(r.key(keys), r.to_json(), None) for r in records[start:start + 100]], [])
        bridges = {
            name: CliProcess(["dns", "--listen", "127.0.0.1:0", "--set", f"etcdEndpoints={etcd.endpoint}", "--set",
                              f"prefix={keys.prefix}", "--set", "clusterName=cluster-1", *extra], work / f"{i}.log")
            for i, (name, extra) in enumerate((("bridge (cache)", []), ("bridge (no cache)", ["--no-response-cache"])))
        }
        knot, knot_port = start_knot(work)
        try:
            servers = {name: (wait_dns_listening(bridge, 30), bridge.pid) for name, bridge in bridges.items()}
            servers["knotd"] = (knot_port, knot.pid)
            results = {}
            for name, (port, pid) in servers.items():
                dnsperf(port, pid, queries, 1)  # warm-up: caches, and the bridge's first lookups
                time.sleep(0.5)
                results[name] = dnsperf(port, pid, queries, args.seconds)
        finally:
            for bridge in bridges.values():
                bridge.stop()
            knot.terminate()
            knot.wait(10)
    knot_qps = results["knotd"]["qps"]
    rows = [(name, f"{r['qps']:,.0f}", f"{r['avg'] * 1e3:.2f} ms", f"{r['max'] * 1e3:.1f} ms",
             f"{int(r['lost'])} ({100 * r['lost'] / max(r['sent'], 1):.3f} %)", f"{r['cpu_us']:.1f} µs",
             f"{r['qps'] / knot_qps:.2f}×", f"{results['knotd']['cpu_us'] / r['cpu_us']:.2f}×")
            for name, r in results.items()]
    print(f"dnsperf {' '.join(DNSPERF)} -l {args.seconds}, {APPS} apps × {PER_APP} A records, one query file; "
          f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print_table(("server", "queries/s", "avg latency", "max latency", "lost", "server CPU/query", "rate vs knotd",
                 "CPU efficiency vs knotd"), rows)


if __name__ == "__main__":
    main()
