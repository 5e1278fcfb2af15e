"""A small world for fault tests: etcd, two clusters' API servers and publishers, and resolvers.

Everything is real — etcd processes, ``publish`` and ``serve`` subprocesses, the kubernetes
client — but the API servers, which are the HTTP fake (tests/support/fake_kube.py): the faults
here are mostly etcd's and the publishers', the pods incidental, and the fake churns two
clusters' pods every 20 ms and answers the ground truth in-process (a real server's drops, 410s and
restarts are tested in tests/publisher/test_real_apiserver_*.py).

The single question every fault test asks is :meth:`World.converged`: does etcd hold exactly
the ready pods of every cluster, and does every resolver answer exactly what etcd holds?
Resolvers run ActiveActive with equal weights, so one ResolveIDMulti per app lists every
instance in every cluster: their whole view is visible through the socket, as daprd would see it.

Meanwhile a load thread keeps resolving through every resolver and counts failed calls (a
fallback answer is an answer; an RPC error is a failure).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from resolver.component.client import ComponentClient
from resolver.config import Layer, load_settings
from resolver.demo.processes import CliProcess, wait_until
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import EndpointRecord, Keys
from tests.support.component import ServeProcess
from tests.support.fake_kube import FakeKubeApi, make_pod

CLUSTERS = ("cluster-1", "cluster-2")
APPS = ("orders", "payments", "cart", "billing")
Truth = dict[str, frozenset[str]]  # app id -> {host:port across clusters}


class World:
    def __init__(self, workdir: Path, seed: int = 7, lease_ttl: int = 3, etcd: list[LocalEtcd] | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(seed)
        self.lease_ttl = lease_ttl
        self.etcds = etcd or [LocalEtcd(workdir / "etcd").start()]
        self.endpoints = ",".join(e.endpoint for e in self.etcds)
        self.prefix = "/world"
        self.keys = Keys(self.prefix)
        settings = load_settings([Layer("world", {"etcdEndpoints": self.endpoints, "prefix": self.prefix,
                                                  "etcdTimeout": "1s"})])
        self.gateway = EtcdGateway(settings.etcd)
        self.apis = {cluster: FakeKubeApi(bookmark_interval=0.5) for cluster in CLUSTERS}
        self.publishers: dict[str, list[CliProcess]] = {cluster: [] for cluster in CLUSTERS}
        self.resolvers: list[ServeProcess] = []
        self.clients: list[ComponentClient] = []
        self.resolves = 0
        self.failures: list[str] = []
        self._load_stop = threading.Event()
        self._load: threading.Thread | None = None
        self._next_ip = 1

    # -- the cast ---------------------------------------------------------------------------

    def common(self) -> list[str]:
        return ["--set", f"etcdEndpoints={self.endpoints}", "--set", f"prefix={self.prefix}",
                "--set", "etcdTimeout=1s"]

    def add_pod(self, cluster: str, app: str | None = None) -> None:
        app = app or self.rng.choice(APPS)
        octet = 1 if cluster == "cluster-1" else 2
        ip = f"10.{octet}.{self._next_ip // 250}.{self._next_ip % 250 + 1}"
        self._next_ip += 1
        self.apis[cluster].put_pod(make_pod(f"{app}-{self._next_ip}", app_id=app, ip=ip))

    def populate(self, pods_per_cluster: int = 12) -> None:
        for cluster in CLUSTERS:
            for n in range(pods_per_cluster):
                self.add_pod(cluster, APPS[n % len(APPS)])

    def start_publisher(self, cluster: str, *extra: str) -> CliProcess:
        kubeconfig = self.apis[cluster].kubeconfig(self.workdir / f"kubeconfig-{cluster}")
        process = CliProcess(["publish", "--cluster", cluster, "--kubeconfig", str(kubeconfig),
                              "--lease-ttl", f"{self.lease_ttl}s", *extra, *self.common()],
                             self.workdir / f"publish-{cluster}-{len(self.publishers[cluster])}.log")
        self.publishers[cluster].append(process)
        return process

    def start_resolver(self) -> ServeProcess:
        process = ServeProcess(self.workdir / f"sockets-{len(self.resolvers)}",
                               ["--set", "policy=ActiveActive", "--set", "clusterName=cluster-1", *self.common()],
                               self.workdir / f"serve-{len(self.resolvers)}.log")
        self.resolvers.append(process)
        process.wait_ready()
        self.clients.append(ComponentClient(process.socket_path, instance="world", timeout=5))
        return process

    # -- ground truths --------------------------------------------------------------------------

    def pods_truth(self, clusters: tuple[str, ...] = CLUSTERS) -> Truth:
        truth: dict[str, set[str]] = {}
        for cluster in clusters:
            for pod in self.apis[cluster].pods():
                ready = pod["status"]["conditions"][0]["status"] == "True"
                if ready and not pod["metadata"].get("deletionTimestamp"):
                    truth.setdefault(pod["metadata"]["labels"]["dapr.io/app-id"], set()).add(
                        f"{pod['status']['podIP']}:50002")
        return {app: frozenset(addresses) for app, addresses in truth.items()}

    def etcd_truth(self) -> Truth:
        truth: dict[str, set[str]] = {}
        _, pages = self.gateway.list_prefix(self.keys.apps)
        for page in pages:
            for _, value, _ in page:
                record = EndpointRecord.from_json(value)
                truth.setdefault(record.app_id, set()).add(record.host_port)
        return {app: frozenset(addresses) for app, addresses in truth.items()}

    def resolver_view(self, client: ComponentClient) -> Truth:
        view: dict[str, frozenset[str]] = {}
        for app in APPS:
            addresses = frozenset(client.resolve_multi(app))
            if not any(a.startswith(f"{app}-dapr.") for a in addresses):
                view[app] = addresses
        return view

    def converged(self, clusters: tuple[str, ...] = CLUSTERS) -> bool:
        """etcd == the ready pods of ``clusters`` (the others' publishers are down), resolvers == etcd."""
        return bool(self.sample_converged(clusters))

    def sample_converged(self, clusters: tuple[str, ...] = CLUSTERS) -> bool | None:
        """:meth:`converged`, or None when the test itself could not look (its own etcd read or a
        resolver call failed): a starved machine stalls the test's reads too, and a sample the test
        failed to take says nothing about the registry."""
        try:
            expected = self.pods_truth(clusters)
            if self.etcd_truth() != expected:
                return False
            return all(self.resolver_view(client) == expected for client in self.clients)
        except Exception:  # etcd down, a resolver restarting: no sample
            return None

    def wait_converged(self, timeout: float = 30.0, clusters: tuple[str, ...] = CLUSTERS) -> float:
        started = time.monotonic()
        try:
            wait_until(lambda: self.converged(clusters), timeout, "convergence", interval=0.1)
        except TimeoutError:
            raise AssertionError(f"no convergence within {timeout:.0f}s:\n{self.explain()}") from None
        return time.monotonic() - started

    def explain(self) -> str:
        lines = [f"pods: {self.pods_truth()}"]
        try:
            lines.append(f"etcd: {self.etcd_truth()}")
        except Exception as error:
            lines.append(f"etcd: {error}")
        for n, client in enumerate(self.clients):
            try:
                lines.append(f"resolver {n}: {self.resolver_view(client)}")
            except grpc.RpcError as error:
                lines.append(f"resolver {n}: {error.code()}")
        return "\n".join(lines)

    # -- load and churn -----------------------------------------------------------------------

    def start_load(self) -> None:
        def run() -> None:
            while not self._load_stop.is_set():
                for n, client in enumerate(self.clients):
                    try:
                        client.resolve(self.rng.choice(APPS))
                        self.resolves += 1
                    except grpc.RpcError as error:
                        self.failures.append(f"resolver {n}: {error.code().name} {error.details()}")
                self._load_stop.wait(0.005)

        self._load = threading.Thread(target=run, daemon=True)
        self._load.start()

    def churn(self, steps: int, pause: float = 0.02, clusters: tuple[str, ...] = CLUSTERS) -> None:
        """Random pod adds, deletes, readiness flips and IP changes."""
        for _ in range(steps):
            cluster = self.rng.choice(clusters)
            api = self.apis[cluster]
            pods = api.pods()
            action = self.rng.random()
            if action < 0.35 or not pods:
                self.add_pod(cluster)
            elif action < 0.6:
                victim = self.rng.choice(pods)
                api.delete_pod(victim["metadata"]["namespace"], victim["metadata"]["name"])
            elif action < 0.8:
                pod = self.rng.choice(pods)
                condition = pod["status"]["conditions"][0]
                condition["status"] = "False" if condition["status"] == "True" else "True"
                api.put_pod(pod)
            else:
                pod = self.rng.choice(pods)
                self._next_ip += 1
                octet = 1 if cluster == "cluster-1" else 2
                pod["status"]["podIP"] = f"10.{octet}.{self._next_ip // 250}.{self._next_ip % 250 + 1}"
                api.put_pod(pod)
            time.sleep(pause)

    # -- the end ------------------------------------------------------------------------------

    def close(self) -> None:
        self._load_stop.set()
        if self._load is not None:
            self._load.join(5)
        for client in self.clients:
            client.close()
        for process in [*self.resolvers, *(p for ps in self.publishers.values() for p in ps)]:
            process.stop(timeout=5)
        self.gateway.close()
        for api in self.apis.values():
            api.close()
        for etcd in self.etcds:
            etcd.cleanup()


def run_in_world(workdir: Path, scenario: Callable[[World], None], **options: object) -> World:
    world = World(workdir, **options)  # type: ignore[arg-type]
    try:
        scenario(world)
    finally:
        world.close()
    return world
