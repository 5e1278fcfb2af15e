"""Helpers shared by the benchmarks: a local registry, percentiles, RSS, a results table."""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from resolver.config import Layer, load_settings
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import EndpointRecord, Keys


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: Sequence[float]) -> str:
    return (f"p50 {percentile(values, 50) * 1000:.2f} ms, p99 {percentile(values, 99) * 1000:.2f} ms, "
            f"mean {statistics.fmean(values) * 1000:.2f} ms (n={len(values)})")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for i, row in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")



@contextlib.contextmanager
def local_registry(work: Path) -> Iterator[tuple[LocalEtcd, EtcdGateway, Keys]]:
    """A local etcd in ``work`` and a gateway to its default registry prefix."""
    with LocalEtcd(work / "etcd") as etcd:
        settings = load_settings([Layer("bench", {"etcdEndpoints": etcd.endpoint})])
        gateway = EtcdGateway(settings.etcd)
        try:
            yield etcd, gateway, Keys(settings.prefix)
        finally:
            gateway.close()


def sample_registry(gateway: EtcdGateway, keys: Keys, apps: int = 100, first_app: str = "app0") -> None:
    """``apps`` apps × 2 clusters × 5 instances (1,000 endpoints); app 0 may get a real name."""
    records = [EndpointRecord(first_app if a == 0 else f"app{a}", "default", f"cluster-{c}", f"i-{a}-{c}-{i}",
                              f"10.{c}.{a}.{i + 1}", 50002) for a in range(apps) for c in (1, 2) for i in range(5)]
    gateway.apply([(r.key(keys), r.to_json(), None) for r in records], [])


def run_in_workdir(run: Callable[[Path], None]) -> None:
    """Run a benchmark in a throw-away directory that is removed afterwards, whatever happens."""
    work = Path(tempfile.mkdtemp(prefix="dapr-nr-bench-"))
    try:
        run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
