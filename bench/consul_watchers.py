"""Consul-compatible catalog: blocking-query wake-ups, memory per watcher, and per-call cost.

Runs the real ``consul`` role (``python -m resolver consul``) as a subprocess against a local
etcd holding app ``orders`` with 6 instances in 2 clusters (3 each). The role is ``cluster-1``
with the default FailOver policy, so its answer is cluster-1's 3 instances.

1. **etcd change → every blocking query answered.** N watchers, each on its own keep-alive
   HTTP/1.1 connection (a small asyncio client), do what Dapr's consul resolver does with
   ``useCache: true``: ``GET /v1/health/service/orders?passing`` for the index, then the same
   with ``&index=I&wait=5m``, again with the new index after every answer. Once the role's gauge
   ``dapr_nr_consul_blocking_queries`` shows all N parked, one cluster-1 record is put (or
   deleted again) in etcd. Each watcher's latency runs from the start of that write to the end
   of its answer. ``--changes`` changes per N; p50/p99/max are over all of them.
2. **RSS per 1,000 watchers.** A fresh role with raised caps: VmRSS and threads when idle, then
   with 1,000, 2,000, … parked blocking queries. Then a role with the *default* caps
   (``--max-blocking 1024``, ``--max-connections 2048``) is offered ``--hostile`` watchers. We
   report how many parked, how many got 429, how many connections got 503 (or were reset),
   and the role's RSS.
3. **Per-call cost with ``useCache: false``.** ``GET /v1/health/service/orders?passing`` on a
   keep-alive connection, sequentially and from 8 threads. Then Dapr's own resolver
   (``.peers/bin/consul-peer -mode resolve``, components-contrib) calls ResolveID back to back
   with ``useCache`` off and on. The difference between the two is what the role adds to each
   daprd invocation.

The client shares the machine's cores with the role, and its own time is inside every latency.
The caps raised for parts 1 and 2 are start-up flags of the role (``--max-blocking``,
``--max-connections``), and this process raises its soft ``RLIMIT_NOFILE`` to the hard limit
(children inherit it).

    python -m bench.consul_watchers [--watchers 1 100 2000] [--changes 5] [--rss 1000 2000 10000]
        [--hostile 10000] [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import itertools
import json
import os
import resource
import subprocess
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import local_registry, percentile, print_table, rss_mb, run_in_workdir
from resolver.cli.consul_cmd import LISTENING_PORT
from resolver.demo.processes import CliProcess, wait_until
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd, free_port
from resolver.records.schema import EndpointRecord, Keys

PATH = "/v1/health/service/orders?passing"
PEER = Path(__file__).resolve().parent.parent / ".peers" / "bin" / "consul-peer"
RAISED = ("--max-blocking", "11000", "--max-connections", "11500")


# -- the role ------------------------------------------------------------------------------------

class Role:
    """One ``consul`` role subprocess: its HTTP port, metrics port, RSS and threads."""

    def __init__(self, work: Path, etcd: LocalEtcd, name: str, *extra: str) -> None:
        self.metrics_port = free_port()
        self.process = CliProcess(["consul", "--listen", "127.0.0.1:0", "--metrics-port", str(self.metrics_port),
                                   "--set", f"etcdEndpoints={etcd.endpoint}", "--set", "clusterName=cluster-1",
                                   *extra], work / f"{name}.log")

        def bound() -> int:
            self.process.check_running()
            found = LISTENING_PORT.search(self.process.output())
            return int(found.group(1)) if found else 0

        self.port: int = wait_until(bound, 30, "the consul role to listen")

    def blocking(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("dapr_nr_consul_blocking_queries "):
                    return int(float(line.split()[1]))
        return -1

    def rss(self) -> float:
        return rss_mb(self.process.pid)

    def threads(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        return -1

    def stop(self) -> None:
        self.process.stop(30)


def instance(cluster: int, number: int) -> EndpointRecord:
    return EndpointRecord("orders", "default", f"cluster-{cluster}", f"orders-{cluster}-{number}",
                          f"10.{cluster}.0.{number + 1}", 50002)


# -- a small asyncio HTTP/1.1 client -------------------------------------------------------------

class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def get(self, path: str) -> tuple[int, dict[str, str]]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip()
                   for name, _, value in (line.partition(":") for line in head[1:] if line)}
        await self.reader.readexactly(int(headers.get("content-length", "0")))
        return int(head[0].split()[1]), headers

    def close(self) -> None:
        self.writer.close()


class Herd:
    """Watchers in the shape of Dapr's consul watcher; ``arrivals`` collects their answer times."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.arrivals: list[float] = []
        self.outcomes: Counter[str] = Counter()
        self.connections: list[Connection] = []
        self.tasks: list[asyncio.Task[None]] = []
        self._opening = asyncio.Semaphore(16)  # the role's listen backlog is socketserver's 5

    async def add(self, count: int) -> None:
        joins = [asyncio.create_task(self._join()) for _ in range(count)]
        await asyncio.gather(*joins)

    async def _join(self) -> None:
        async with self._opening:
            try:
                connection = await Connection.open(self.port)
                self.connections.append(connection)
                status, headers = await connection.get(PATH)
            except (OSError, asyncio.IncompleteReadError):
                self.outcomes["connection reset/closed"] += 1
                return
        if status != 200:
            self.outcomes[f"first GET {status}"] += 1
            return
        self.tasks.append(asyncio.create_task(self._watch(connection, headers["x-consul-index"])))

    async def _watch(self, connection: Connection, index: str) -> None:
        while True:
            try:
                status, headers = await connection.get(f"{PATH}&index={index}&wait=5m")
            except (OSError, asyncio.IncompleteReadError):
                self.outcomes["blocking query: connection closed"] += 1
                return
            self.arrivals.append(time.perf_counter())
            if status != 200:
                self.outcomes[f"blocking query {status}"] += 1
                return  # refused (429): the connection stays open, idle, as a hostile client's would
            index = headers["x-consul-index"]

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for connection in self.connections:
            connection.close()


async def parked(role: Role, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while (now := await asyncio.to_thread(role.blocking)) != count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{now} blocking queries parked, expected {count}")
        await asyncio.sleep(0.05)


# -- 1. change → every watcher answered ----------------------------------------------------------

async def wake_ups(role: Role, gateway: EtcdGateway, keys: Keys, watchers: int,
                   changes: int) -> tuple[list[float], float]:
    herd = Herd(role.port)
    started = time.perf_counter()
    await herd.add(watchers)
    await parked(role, watchers)
    park_time = time.perf_counter() - started
    extra = instance(1, 9)
    latencies: list[float] = []
    try:
        for change in range(changes):
            herd.arrivals.clear()
            began = time.perf_counter()
            if change % 2 == 0:
                await asyncio.to_thread(gateway.put, extra.key(keys), extra.to_json())
            else:
                await asyncio.to_thread(gateway.delete, extra.key(keys))
            deadline = time.monotonic() + 60
            while len(herd.arrivals) < watchers and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            if len(herd.arrivals) < watchers or herd.outcomes:
                raise SystemExit(f"N={watchers}: {len(herd.arrivals)} answered; {dict(herd.outcomes)}")
            latencies += [arrival - began for arrival in herd.arrivals[:watchers]]
            await parked(role, watchers)
            await asyncio.sleep(0.2)
    finally:
        herd.close()
        if changes % 2:
            gateway.delete(extra.key(keys))
    return latencies, park_time


# -- 2. RSS per 1,000 watchers, and the default caps under a herd --------------------------------

async def memory(role: Role, steps: list[int]) -> list[tuple[object, ...]]:
    await asyncio.sleep(1)
    idle = role.rss()
    rows: list[tuple[object, ...]] = [("0 (idle)", f"{idle:.0f} MB", role.threads(), "")]
    herd = Herd(role.port)
    try:
        for step in steps:
            started = time.perf_counter()
            await herd.add(step - len(herd.tasks))
            await parked(role, step, timeout=600)
            took = time.perf_counter() - started
            await asyncio.sleep(2)
            rss = role.rss()
            rows.append((f"{step:,} (opened in {took:.1f} s)", f"{rss:.0f} MB", role.threads(),
                         f"{(rss - idle) / step * 1000:.1f} MB"))
    finally:
        herd.close()
    return rows


async def hostile(role: Role, count: int) -> tuple[int, Counter[str], float, int]:
    idle = role.rss()
    herd = Herd(role.port)
    try:
        await herd.add(count)
        await asyncio.sleep(2)
        return await asyncio.to_thread(role.blocking), herd.outcomes, role.rss() - idle, role.threads()
    finally:
        herd.close()


# -- 3. per-call cost with useCache off ----------------------------------------------------------

def sequential_calls(port: int, calls: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies = []
    try:
        for _ in range(calls):
            started = time.perf_counter()
            connection.request("GET", PATH)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"GET {PATH}: {response.status}")
            latencies.append(time.perf_counter() - started)
    finally:
        connection.close()
    return latencies


def concurrent_calls(port: int, calls: int, clients: int) -> tuple[list[float], float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        parts = list(pool.map(lambda _: sequential_calls(port, calls // clients), range(clients)))
    elapsed = time.perf_counter() - started
    return [latency for part in parts for latency in part], elapsed


def peer_calls(port: int, calls: int, use_cache: bool) -> tuple[list[float], int]:
    """ResolveID back to back in Dapr's resolver: the gaps between consecutive calls' end times."""
    result = subprocess.run([str(PEER), "-mode", "resolve", "-address", f"127.0.0.1:{port}", "-app", "orders",
                             "-count", str(calls), f"-use-cache={'true' if use_cache else 'false'}"],
                            capture_output=True, text=True, timeout=300, check=True)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"')]
    ends = [line["t"] for line in lines if "t" in line]
    errors = sum(1 for line in lines if "error" in line)
    gaps = [later - earlier for earlier, later in itertools.pairwise(ends)]
    return gaps[10:], errors  # the first calls warm the connection pool (and, cached, the watcher)


def ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.2f} ms"


def us(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1e6:,.0f} µs"


# -- main ----------------------------------------------------------------------------------------

def run(work: Path, args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; RLIMIT_NOFILE {soft} → {hard}; "
          f"raised caps: {' '.join(RAISED)}")
    with local_registry(work) as (etcd, gateway, keys):
        records = [instance(cluster, number) for cluster in (1, 2) for number in range(3)]
        gateway.apply([(r.key(keys), r.to_json(), None) for r in records], [])

        rows: list[tuple[object, ...]] = []
        for watchers in args.watchers:  # a role per N: a closed watcher's query stays parked until a change
            role = Role(work, etcd, f"wake-{watchers}", *RAISED)
            try:
                latencies, park = asyncio.run(wake_ups(role, gateway, keys, watchers, args.changes))
            finally:
                role.stop()
            rows.append((f"{watchers:,}", args.changes, f"{park:.1f} s", ms(latencies, 50), ms(latencies, 99),
                         f"{max(latencies) * 1000:.2f} ms"))
        if rows:
            print("\n1. etcd write → every blocking query answered")
            print_table(("watchers", "changes", "time to park all", "p50", "p99", "max"), rows)

        if args.rss:
            role = Role(work, etcd, "rss", *RAISED)
            try:
                print("\n2. role RSS with parked blocking queries")
                print_table(("parked", "RSS", "threads", "per 1,000"), asyncio.run(memory(role, args.rss)))
            finally:
                role.stop()
        if args.hostile:
            role = Role(work, etcd, "hostile")
            try:
                parked_now, outcomes, grown, threads = asyncio.run(hostile(role, args.hostile))
                print(f"\n2b. {args.hostile:,} watchers against the default caps: {parked_now} parked; "
                      f"{dict(outcomes)}; RSS +{grown:.0f} MB, {threads} threads")
            finally:
                role.stop()

        if args.calls:
            role = Role(work, etcd, "calls")
            try:
                sequential_calls(role.port, 200)  # warm-up
                alone = sequential_calls(role.port, args.calls)
                together, elapsed = concurrent_calls(role.port, args.calls * 2, 8)
                per_call: list[tuple[object, ...]] = [
                    ("GET ?passing, 1 client", f"{len(alone) / sum(alone):,.0f}", ms(alone, 50), ms(alone, 99)),
                    ("GET ?passing, 8 clients", f"{len(together) / elapsed:,.0f}", ms(together, 50), ms(together, 99))]
                if PEER.exists():
                    for use_cache in (False, True):
                        gaps, errors = peer_calls(role.port, args.calls, use_cache)
                        per_call.append((f"Dapr's ResolveID, useCache {'on' if use_cache else 'off'}"
                                         + (f" ({errors} errors)" if errors else ""),
                                         f"{len(gaps) / sum(gaps):,.0f}", us(gaps, 50), us(gaps, 99)))
                else:
                    print(f"({PEER} missing: run scripts/build-peers.sh for the ResolveID rows)")
                print("\n3. per call, 6 instances in 2 clusters")
                print_table(("what", "calls/s", "p50", "p99"), per_call)
            finally:
                role.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, nargs="*", default=[1, 100, 2000])
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--rss", type=int, nargs="*", default=[1000, 2000, 10000])
    parser.add_argument("--hostile", type=int, default=10000, help="watchers against the default caps (0: skip)")
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls in part 3 (0: skip)")
    args = parser.parse_args()
    run_in_workdir(lambda work: run(work, args))


if __name__ == "__main__":
    main()
