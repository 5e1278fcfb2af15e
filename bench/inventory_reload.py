"""Inventory benchmarks: parse cost, change → etcd latency, and restart without a gap.

1. ``parse``: N entries (default 100,000) as JSON and as YAML (libyaml's C loader, and the
   pure-Python loader on a tenth of them), each parsed *and validated* exactly as the file
   source does, in a fresh child process: wall time and peak RSS growth.
2. ``reload``: a real etcd, the file source (inotify) and the writer in-process; one entry's
   port changes (written the way tools do: a temp file renamed over the inventory); the time
   until etcd holds the new record, p50/p99 over ``--samples`` changes, for 1k and 10k entries.
3. ``restart``: a real ``publish --source file`` with N entries is stopped (no ``--withdraw``)
   and a new one started; the cluster's record count in etcd is sampled every 100 ms until the
   new process has synced (and one lease TTL beyond): the minimum must stay N.

    python bench/inventory_reload.py parse [--entries 100000]
    python bench/inventory_reload.py reload [--entries 1000 10000] [--samples 30]
    python bench/inventory_reload.py restart [--entries 100000] [--format json|yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from bench.common import local_registry, percentile, print_table, summary_ms
from resolver.demo.processes import CliProcess, wait_until
from resolver.etcd.gateway import EtcdGateway
from resolver.publisher.file_source import SETTLE_SECONDS, FileSource
from resolver.publisher.inventory import entries_of, load_document, parse_entries
from resolver.publisher.publication import Publication
from resolver.records.schema import ClusterInfo, Keys


def entries(count: int, changed: int = -1, changed_port: int = 50002) -> list[dict[str, Any]]:
    return [{"appId": f"app{n % 500}", "namespace": "default", "instance": f"vm-{n}",
             "address": f"10.{n // 65025 + 1}.{n // 255 % 255}.{n % 255 + 1}",
             "port": changed_port if n == changed else 50002, "zone": f"zone-{n % 3}", "node": f"node-{n % 97}"}
            for n in range(count)]


def write(path: Path, items: list[dict[str, Any]]) -> None:
    """Write atomically (temp file + rename), as editors and config tools do."""
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".json":
        tmp.write_text(json.dumps({"endpoints": items}))
    else:
        tmp.write_text("endpoints:\n" + "".join(
            "- {" + ", ".join(f"{k}: {v}" for k, v in item.items()) + "}\n" for item in items))
    os.replace(tmp, path)


# -- 1. parse ---------------------------------------------------------------------------------

def _child_parse(path: str, loader: str) -> None:
    """In a fresh process: parse + validate, print seconds and peak RSS growth in MB."""
    text = Path(path).read_text()
    if loader == "python":
        from resolver.publisher import inventory

        inventory.SafeLoader = yaml.SafeLoader
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    document = load_document(text, path, as_json=path.endswith(".json"))
    result = parse_entries(entries_of(document, path), "vms", path)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": elapsed, "rss_mb": (peak - before) / 1024, "peak_mb": peak / 1024,
                      "records": len(result.records)}))


def bench_parse(count: int) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name, size, loader in (("inventory.json", count, "c"), ("inventory.yaml", count, "c"),
                                   ("small.yaml", count // 10, "python")):
            path = Path(work) / name
            write(path, entries(size))
            out = subprocess.run([sys.executable, __file__, "_parse", str(path), loader], capture_output=True,
                                 text=True, check=True, timeout=600).stdout
            result = json.loads(out)
            kind = "JSON" if name.endswith(".json") else f"YAML ({'libyaml C' if loader == 'c' else 'pure Python'})"
            rows.append((kind, f"{size:,}", f"{path.stat().st_size / 1e6:.1f} MB", f"{result['seconds']:.2f} s",
                         f"{result['rss_mb']:.0f} MB", f"{result['peak_mb']:.0f} MB", f"{result['records']:,}"))
    print_table(("format", "entries", "file", "parse+validate", "RSS growth", "process peak RSS", "records"), rows)


# -- 2. reload ----------------------------------------------------------------------------------

def bench_reload(counts: list[int], samples: int) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as work, local_registry(Path(work)) as (_, gateway, keys):
        for count in counts:
            path = Path(work) / f"inventory-{count}.json"
            write(path, entries(count))
            info = ClusterInfo(cluster=f"vms-{count}", publisher="bench", version="0", started_at=time.time())
            publication = Publication(gateway, f"vms-{count}", 15.0, info)
            synced = threading.Event()
            publication.on_synced = synced.set
            publication.lead()
            source = FileSource(path, f"vms-{count}", publication).start()
            try:
                assert synced.wait(120), "no initial sync"
                latencies = []
                for sample in range(samples):
                    changed = (sample * 7919) % count
                    key = keys.endpoint(f"vms-{count}", "default", f"app{changed % 500}", f"vm-{changed}")
                    port = 50002 + 10 * (sample + 1)
                    started = time.perf_counter()
                    write(path, entries(count, changed=changed, changed_port=port))
                    needle = f'"port":{port}'.encode()

                    def arrived(key: str = key, needle: bytes = needle) -> bool:
                        return needle in (gateway.get(key) or b"")

                    wait_until(arrived, 30, "the change", interval=0.002)
                    latencies.append(time.perf_counter() - started)
                    time.sleep(0.3)
            finally:
                source.stop()
                publication.step_down(withdraw=True)
            rows.append((f"{count:,}", summary_ms(latencies), source.watcher is not None))
    print_table(("entries", "change → etcd", "inotify"), rows)
    print(f"(includes the {SETTLE_SECONDS}s settle time; p99 over {samples} changes)")


# -- 3. restart -------------------------------------------------------------------------------

def _count(gateway: EtcdGateway, keys: Keys, cluster: str) -> int:
    start = keys.cluster_apps(cluster).encode()
    end = start[:-1] + bytes([start[-1] + 1])
    return int(gateway.call("count", lambda c: c.get_range_response(start, end, count_only=True)).count)


def bench_restart(count: int, fmt: str, ttl: int) -> None:
    work = tempfile.mkdtemp(prefix="inventory-restart-")
    print(f"logs in {work}")
    with local_registry(Path(work)) as (etcd, gateway, keys):
        path = Path(work) / f"inventory.{fmt}"
        write(path, entries(count))
        args = ["publish", "--cluster", "vms", "--source", "file", "--file", str(path), "--lease-ttl", f"{ttl}s",
                "--set", f"etcdEndpoints={etcd.endpoint}"]

        def synced_by(publisher: str) -> bool:
            raw = gateway.get(keys.info("vms"))
            info = ClusterInfo.from_json(raw) if raw else None
            return info is not None and info.publisher == publisher and info.synced_at > 0

        started = time.monotonic()
        first = CliProcess([*args, "--identity", "first"], Path(work) / "first.log")
        try:
            wait_until(lambda: synced_by("first"), 300, "the first sync")
            first_sync = time.monotonic() - started
            assert _count(gateway, keys, "vms") == count, f"first sync incomplete, see {work}/first.log"
        finally:
            first.stop()  # no --withdraw: its records stay on its leases (the successor must take them over)
        samples: list[int] = []
        restarted = time.monotonic()
        second = CliProcess([*args, "--identity", "second"], Path(work) / "second.log")
        try:
            while not synced_by("second") and time.monotonic() - restarted < 300:
                samples.append(_count(gateway, keys, "vms"))
                time.sleep(0.1)
            second_sync = time.monotonic() - restarted
            beyond = time.monotonic() + ttl + 1
            while time.monotonic() < beyond:  # past the predecessor's lease: nothing of ours hung on it
                samples.append(_count(gateway, keys, "vms"))
                time.sleep(0.1)
        finally:
            second.stop()
        print_table(("format", "entries", "first sync", "restart → synced", "min records during restart",
                     "samples"), [(fmt, f"{count:,}", f"{first_sync:.1f} s", f"{second_sync:.1f} s",
                                   f"{min(samples):,}", len(samples))])
        print(f"p1 of samples: {percentile(samples, 1):,.0f}")
    shutil.rmtree(work, ignore_errors=True)  # kept (with its logs) only when a step failed


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "_parse":
        _child_parse(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["parse", "reload", "restart"])
    parser.add_argument("--entries", type=int, nargs="*")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--format", choices=["json", "yaml"], default="json")
    parser.add_argument("--ttl", type=int, default=5)
    args = parser.parse_args()
    if args.what == "parse":
        bench_parse((args.entries or [100_000])[0])
    elif args.what == "reload":
        bench_reload(args.entries or [1_000, 10_000], args.samples)
    else:
        bench_restart((args.entries or [100_000])[0], args.format, args.ttl)


if __name__ == "__main__":
    main()
