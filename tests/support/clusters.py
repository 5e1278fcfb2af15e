"""Two Kubernetes-like clusters on one machine, made of network namespaces, running the real daprd.

Every address below exists only inside namespaces this module makes; nothing leaves the machine::

    router  lo 10.200.0.1 (etcd, reachable from both clusters)      ip_forward on
      ├─ br1 10.201.0.1/16 ─ cluster-1: coredns 10.201.0.2, bridge+publisher 10.201.0.3, pods 10.201.1.N
      └─ br2 10.202.0.1/16 ─ cluster-2: coredns 10.202.0.2, bridge+publisher 10.202.0.3, pods 10.202.1.N

A **pod** is a namespace of its own, as in Kubernetes: the echo app on 127.0.0.1:3000 and daprd
(standalone mode, the Configuration of ``deploy/examples/dns-bridge``, ``NAMESPACE=default``,
internal gRPC on 50002 of the pod's address). Its ``resolv.conf`` is a pod's (``ndots:5``,
the three search domains) and names its cluster's **CoreDNS**, which runs the shipped
``deploy/coredns`` stanza (forward + cache 5 to the bridge) and serves ``cluster.local`` from a
hosts file, as the kubernetes plugin would for the fallback names ``{id}-dapr.default.svc…``.

The **publisher** is the file source: the harness writes each cluster's inventory as pods come
and go. The Kubernetes source is tested against an API server of its own; here what matters is
what daprd does with the registry's answers, and the file source lets a test remove a record
and stop a pod in the order Kubernetes does (record first, process after the grace period).

In the ``consul`` mode (tests/support/consul_mode.py) the bridge's namespace also runs the
consul role on port 8500, and pods run daprd with Dapr's consul resolver asking it.

:meth:`Topology.cut_link` separates the two pod networks in the router with ``ip rule``
(``blackhole``: packets dropped; ``prohibit``: refused at once) while both still reach etcd.
:meth:`Topology.close` ends every process (by PID) and removes every namespace, also after a
failure.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml

from resolver.demo.processes import wait_until
from resolver.local_etcd import find_binary
from tests.support import consul_mode, sentry, slots
from tests.support.dns_bridge import NetNs
from tests.support.peers import ROOT, peer
from tests.support.pods import Pod

ETCD_IP = "10.200.0.1"
_spec = importlib.util.spec_from_file_location("merge_corefile", ROOT / "deploy" / "coredns" / "merge_corefile.py")
assert _spec is not None and _spec.loader is not None
_merge_corefile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_merge_corefile)
stanza = _merge_corefile.stanza  # the shipped CoreDNS server block, its bridge address filled in
DAPR_CONFIGURATION = ROOT / "deploy" / "examples" / "dns-bridge" / "configuration.yaml"
PLUGGABLE_CONFIGURATION = ROOT / "deploy" / "examples" / "pluggable" / "configuration.yaml"
NAMESPACE = "default"
INTERNAL_PORT = 50002
METRICS_PORT = 9090  # the bridge's /metrics and /reachability
# The publishers' leases: the default. 5 s was tried and is too short on a loaded machine — a
# keep-alive answered late let cluster-2's lease expire while 20 daprds started.
LEASE_TTL = "15s"
_veths = itertools.count(1)
_topologies = itertools.count(1)


def ip(space: NetNs, *args: str) -> None:
    subprocess.run(["ip", "-n", space.name, *args], check=True, timeout=30, capture_output=True)


class Cluster:
    """One cluster: its CoreDNS, its DNS bridge and publisher, and its pods."""

    def __init__(self, topology: Topology, index: int) -> None:
        self.topology = topology
        self.index = index
        self.name = f"cluster-{index}"
        self.net = f"10.20{index}"
        self.gateway = f"{self.net}.0.1"
        self.coredns_ip = f"{self.net}.0.2"
        self.bridge_ip = f"{self.net}.0.3"
        self.work = topology.work / self.name
        self.work.mkdir(parents=True, exist_ok=True)
        self.pods: dict[str, Pod] = {}
        # Clusters after the second only host callees: a publisher and pods, no CoreDNS or bridge.
        self.callee_only = index > 2
        self._addresses = itertools.count(1)
        self.dns: NetNs | None = None
        self.registry: NetNs | None = None
        self.publisher: subprocess.Popen[bytes] | None = None

    # --- set-up ---------------------------------------------------------------------------
    def start(self, bridge_settings: dict[str, str]) -> None:
        topology = self.topology
        # A fixed MAC: a Linux bridge otherwise takes the lowest MAC of its ports, so every pod
        # added or removed could change the gateway's MAC under everyone's ARP entries and stall
        # all traffic through it (publishers and bridges to etcd, calls between the clusters)
        # for the seconds neighbour re-resolution takes: leases expired and calls hung with it.
        ip(topology.router, "link", "add", f"br{self.index}", "address", f"02:00:00:00:{self.index:02x}:01",
           "type", "bridge")
        ip(topology.router, "addr", "add", f"{self.gateway}/16", "dev", f"br{self.index}")
        ip(topology.router, "link", "set", f"br{self.index}", "up")
        self._write_inventory()
        self._write_hosts()
        if self.callee_only:
            self.registry = topology.namespace(f"c{self.index}-reg", self.work)
            self.attach(self.registry, self.bridge_ip)
            self.start_publisher()
            return

        self.dns = topology.namespace(f"c{self.index}-dns", self.work)
        self.attach(self.dns, self.coredns_ip)
        corefile = stanza(self.bridge_ip) + (
            "cluster.local:53 {\n    errors\n"
            f"    hosts {self.work / 'hosts'} {{\n        ttl 5\n        reload 1s\n    }}\n}}\n")
        (self.work / "Corefile").write_text(corefile)
        self.dns.start([str(peer("coredns")), "-conf", str(self.work / "Corefile")], "coredns.log")
        if topology.mtls:
            self.start_sentry()

        self.registry = topology.namespace(f"c{self.index}-reg", self.work)
        self.attach(self.registry, self.bridge_ip)
        self.registry.write("resolv.conf", f"nameserver {self.coredns_ip}\noptions timeout:1 attempts:2\n")
        self.start_publisher()
        etcd = f"etcdEndpoints={ETCD_IP}:2379"
        settings = [item for key, value in {"clusterName": self.name, **bridge_settings}.items()
                    for item in ("--set", f"{key}={value}")]
        self.registry.start([sys.executable, "-m", "resolver", "dns", "--listen", f"{self.bridge_ip}:53",
                             "--zone", "dapr.internal", "--list-jitter", "0", "--metrics-port", str(METRICS_PORT),
                             "--set", etcd, *settings], "dns.log")
        wait_until(lambda: "serving zone" in self.registry_log("dns.log") or self._exited(), 60,
                   f"{self.name}'s DNS bridge")
        if topology.resolver == "consul":
            consul_mode.start_role(self, f"{ETCD_IP}:2379", bridge_settings)
        wait_until(lambda: self._exited() or self.registry_run("kdig", f"@{self.coredns_ip}", "+short", "+timeout=1",
                                                             "dapr.internal.", "SOA").strip(),
                   60, f"{self.name}'s CoreDNS to answer the zone from the bridge")

    @property
    def credentials(self) -> Path:
        return self.work / "sentry-credentials"

    def start_sentry(self) -> None:
        assert self.dns is not None
        shared = self.topology.cluster(1).credentials if self.topology.mtls == "shared" and self.index > 1 else None
        sentry.start(self.dns, self.work, self.credentials, shared)
        wait_until(lambda: not self._exited() and sentry.ready(self.dns_log("sentry.log"), self.credentials), 60,
                   f"{self.name}'s sentry")

    def dns_log(self, name: str) -> str:
        return self.dns.log(name) if self.dns else ""

    def start_publisher(self) -> None:
        """The file-source publisher of this cluster (leases of :data:`LEASE_TTL`)."""
        assert self.registry is not None
        self.publisher = self.registry.start(
            [sys.executable, "-m", "resolver", "publish", "--cluster", self.name, "--source", "file", "--file",
             str(self.work / "inventory.yaml"), "--lease-ttl", LEASE_TTL, "--set", f"etcdEndpoints={ETCD_IP}:2379"],
            "publish.log")

    def kill_publisher(self) -> None:
        """SIGKILL: its records stay until their leases expire, as when a cluster is lost."""
        assert self.registry is not None and self.publisher is not None
        self.publisher.kill()
        self.publisher.wait(30)
        self.registry.processes.remove(self.publisher)
        self.publisher = None

    def attach(self, space: NetNs, address: str) -> None:
        """A veth from the router's bridge into ``space``, with ``address`` and a default route."""
        router = self.topology.router
        veth = f"v{next(_veths)}"
        ip(router, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", space.name)
        ip(router, "link", "set", veth, "master", f"br{self.index}", "up")
        ip(space, "addr", "add", f"{address}/16", "dev", "eth0")
        ip(space, "link", "set", "eth0", "up")
        ip(space, "route", "add", "default", "via", self.gateway)

    def _exited(self) -> bool:
        for space in (self.dns, self.registry):
            if space and any(p.poll() is not None for p in space.processes):
                raise AssertionError(f"a process of {self.name} exited:\n{self.logs()}")
        return False

    def registry_run(self, *args: str) -> str:
        """Run a program in the bridge's namespace (kdig, to see what a pod's resolver gets)."""
        assert self.registry is not None
        return self.registry.run(list(args))

    def registry_log(self, name: str) -> str:
        return self.registry.log(name) if self.registry else ""

    def logs(self) -> str:
        parts = [f"--- {self.name} {name}\n{(self.work / name).read_text(errors='replace')[-3000:]}"
                 for name in ("coredns.log", "sentry.log", "publish.log", "dns.log", consul_mode.LOG)
                 if (self.work / name).exists()]
        return "\n".join(parts)

    # --- pods -----------------------------------------------------------------------------
    def add_pod(self, app: str, serve: bool = True, publish: bool = True, zone: str = "") -> Pod:
        """A pod running daprd for ``app`` (and the echo app when ``serve``), in the registry when
        ``publish`` (with ``zone``, as the publisher takes it from the node's zone label). Returns
        once daprd says it is running (wait for the record with :meth:`Topology.wait_answer`)."""
        number = next(self._addresses)
        name = f"{app}-{self.index}-{number}"
        address = f"{self.net}.1.{number}"
        work = self.work / name
        work.mkdir(exist_ok=True)
        space = self.topology.namespace(f"c{self.index}-{app[:6]}{number}", work)
        pod = Pod(name, app, self, address, space, publish, zone=zone)
        self.pods[name] = pod
        self.attach(space, address)
        space.write("resolv.conf", f"search {NAMESPACE}.svc.cluster.local svc.cluster.local cluster.local\n"
                    f"nameserver {self.coredns_ip}\noptions ndots:5\n")
        space.write("hosts", f"127.0.0.1 localhost\n{address} {name}\n")
        environment = {**os.environ, "NAMESPACE": NAMESPACE}
        configuration = self.topology.dapr_configuration
        if self.topology.resolver == "component":
            configuration = self._start_component(space, work)
            environment["DAPR_COMPONENTS_SOCKETS_FOLDER"] = str(work / "sockets")
        elif self.topology.resolver == "consul":
            configuration = consul_mode.configuration(self)
        program = peer(self.topology.daprd)
        resources = work / "resources"  # empty: daprd reloads on any Configuration it finds there
        resources.mkdir(exist_ok=True)
        daprd = [str(program), "--app-id", app, "--mode", "standalone", "--dapr-http-port", "3500",
                 "--dapr-grpc-port", "50001", "--dapr-internal-grpc-port", str(INTERNAL_PORT),
                 "--config", str(configuration), "--resources-path", str(resources),
                 "--enable-metrics=false", "--log-level", "info"]
        if self.topology.mtls:
            daprd += ["--enable-mtls", "--sentry-address", f"{self.coredns_ip}:{sentry.PORT}"]
            environment["DAPR_TRUST_ANCHORS"] = (self.credentials / "ca.crt").read_text()
        if serve:
            space.start([str(peer("echoapp")), "-app", app, "-cluster", self.name, "-instance", name], "app.log")
            daprd += ["--app-port", "3000", "--app-protocol", "http"]
        with open(work / "daprd.log", "ab") as log:
            space.processes.append(subprocess.Popen(space.command(*daprd), stdout=log, stderr=subprocess.STDOUT,
                                                    env=environment))
        self._write_hosts()
        if publish:
            self._write_inventory()
        return pod

    def _start_component(self, space: NetNs, work: Path) -> Path:
        """The pod's pluggable component (``serve``, configured only by daprd's Init) and the
        Dapr Configuration of deploy/examples/pluggable with this cluster's settings."""
        sockets = work / "sockets"
        sockets.mkdir(exist_ok=True)
        space.start([sys.executable, "-m", "resolver", "serve", "--socket-dir", str(sockets), "--name", "etcd"],
                    "component.log")
        document = yaml.safe_load(PLUGGABLE_CONFIGURATION.read_text())
        document["spec"]["nameResolution"]["configuration"] = {
            "etcdEndpoints": f"{ETCD_IP}:2379", "clusterName": self.name, **self.topology.bridge_settings}
        path = work / "dapr-config.yaml"
        path.write_text(yaml.safe_dump(document))
        socket = sockets / "etcd.sock"
        wait_until(socket.exists, 60, f"the component's socket in {space.name}")
        return path

    def wait_running(self, pods: Iterable[Pod], timeout: float = 90) -> None:
        for pod in pods:
            wait_until(lambda pod=pod: self._running(pod), timeout, f"daprd of {pod.name}")  # type: ignore[misc]

    @staticmethod
    def _running(pod: Pod) -> bool:
        if any(p.poll() is not None for p in pod.space.processes):
            raise AssertionError(f"a process of pod {pod.name} exited:\n{pod.daprd_log()[-4000:]}")
        return "dapr initialized. Status: Running" in pod.daprd_log()

    def unpublish(self, pod: Pod) -> None:
        """Take ``pod``'s record out of the registry (what a pod's deletion does first)."""
        pod.published = False
        self._write_inventory()
        self._write_hosts()

    def publish(self, pod: Pod) -> None:
        pod.published = True
        self._write_inventory()
        self._write_hosts()

    def stop_pod(self, pod: Pod, kill: bool = False) -> None:
        """End the pod's processes and remove its namespace: its address stops answering.
        ``kill``: SIGKILL, no graceful shutdown (a node lost)."""
        pod.stop_invokers()
        if kill:
            for process in pod.space.processes:
                process.kill()
        del self.pods[pod.name]
        self._write_inventory()
        self._write_hosts()
        pod.space.close()
        self.topology.spaces.remove(pod.space)

    def _write_inventory(self) -> None:
        entries = [{"appId": p.app, "namespace": NAMESPACE, "instance": p.name, "address": p.address,
                    "port": INTERNAL_PORT, **({"zone": p.zone} if p.zone else {})}
                   for p in self.pods.values() if p.published]
        atomic_write(self.work / "inventory.yaml", json.dumps({"endpoints": entries}))

    def _write_hosts(self) -> None:
        """The ``cluster.local`` names of this cluster's pods (what the kubernetes plugin serves
        for daprd's headless services), unpublished pods included: that is the fallback."""
        lines = [f"{p.address} {p.app}-dapr.{NAMESPACE}.svc.cluster.local" for p in self.pods.values()]
        atomic_write(self.work / "hosts", "\n".join(lines) + "\n")


class Topology:
    """The router, etcd and both clusters; :meth:`close` undoes all of it."""

    def __init__(self, work: Path, bridge_settings: dict[str, str] | None = None, mtls: str = "",
                 resolver: str = "dns", daprd: str = "", clusters: int = 2) -> None:
        """``mtls``: "" (off), ``shared`` (each cluster's sentry issues from one root) or
        ``separate`` (each cluster's sentry has a root of its own). ``resolver``: ``dns`` (stock
        daprd, the kubernetes resolver's template, CoreDNS and the bridge) or ``component``
        (daprd-etcd, whose "etcd" resolver forwards to a pluggable component in every pod) or
        ``consul`` (daprd-consul: Dapr's consul resolver asking each cluster's consul role,
        tests/support/consul_mode.py).
        ``daprd``: the program of .peers/bin to run as daprd (default: the resolver's).
        ``clusters``: 2, or 3 for a third cluster of callees only (10.203.0.0/16)."""
        assert mtls in ("", "shared", "separate"), mtls
        assert resolver in ("dns", "component", "consul"), resolver
        self.mtls = mtls
        self.resolver = resolver
        self.daprd = daprd or {"dns": "daprd", "component": "daprd-etcd", "consul": consul_mode.DAPRD}[resolver]
        self.work = work
        self.tag = f"dnr{os.getpid() % 100000}-{next(_topologies)}"
        self.spaces: list[NetNs] = []
        self.bridge_settings = bridge_settings or {}
        self.dapr_configuration = work / "dapr-config.yaml"
        self.dapr_configuration.write_text(DAPR_CONFIGURATION.read_text())
        self._slot = slots.acquire(str(work))
        self.router = self.namespace("rt", work)
        self.clusters = [Cluster(self, index) for index in range(1, clusters + 1)]
        self.cut_rules: list[list[str]] = []

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def namespace(self, short: str, work: Path) -> NetNs:
        space = NetNs(f"{self.tag}-{short}", work)
        self.spaces.append(space)
        return space

    def start(self) -> Topology:
        try:
            subprocess.run(self.router.command("sysctl", "-qw", "net.ipv4.ip_forward=1"), check=True, timeout=30)
            ip(self.router, "addr", "add", f"{ETCD_IP}/32", "dev", "lo")
            self.router.start([find_binary("etcd"), "--name", "shared", "--data-dir", str(self.work / "etcd"),
                               "--listen-client-urls", f"http://{ETCD_IP}:2379",
                               "--advertise-client-urls", f"http://{ETCD_IP}:2379",
                               "--listen-peer-urls", f"http://{ETCD_IP}:2380",
                               "--initial-advertise-peer-urls", f"http://{ETCD_IP}:2380",
                               "--initial-cluster", f"shared=http://{ETCD_IP}:2380"], "etcd.log")
            wait_until(lambda: "ready to serve client requests" in self.router.log("etcd.log"), 60, "etcd")
            for cluster in self.clusters:
                cluster.start(self.bridge_settings)
        except BaseException:
            self.close()
            raise
        return self

    def cluster(self, index: int) -> Cluster:
        return self.clusters[index - 1]

    # --- faults ---------------------------------------------------------------------------
    def cut_link(self, how: str = "blackhole", pairs: Iterable[tuple[int, int]] = ((1, 2),)) -> None:
        """Pods of each pair of clusters can no longer reach each other (``blackhole``: dropped;
        ``prohibit``: refused at once); etcd stays reachable from all."""
        for pair in pairs:
            one, two = (f"{self.cluster(index).net}.0.0/16" for index in pair)
            for source, destination in ((one, two), (two, one)):
                rule = ["rule", "add", "from", source, "to", destination, "priority", "100", how]
                ip(self.router, *rule)
                self.cut_rules.append(["rule", "del", *rule[2:]])

    def restore_link(self) -> None:
        while self.cut_rules:
            ip(self.router, *self.cut_rules.pop())

    # --- looking -------------------------------------------------------------------------
    def answer(self, cluster: Cluster, app: str, through: str = "coredns") -> list[str]:
        """The A records a pod of ``cluster`` gets for ``app`` now (through CoreDNS or the bridge)."""
        server = cluster.coredns_ip if through == "coredns" else cluster.bridge_ip
        out = cluster.registry_run("kdig", f"@{server}", "+short", "+timeout=2", "+retry=1",
                                   f"{app}.{NAMESPACE}.dapr.internal.", "A")
        return sorted(line for line in out.split() if line)

    def wait_answer(self, cluster: Cluster, app: str, expected: Iterable[str], timeout: float = 60,
                    through: str = "coredns") -> None:
        want = sorted(expected)
        wait_until(lambda: self.answer(cluster, app, through) == want, timeout,
                   f"{cluster.name} to answer {app} with {want} through {through}")

    def logs(self) -> str:
        return "\n".join(c.logs() for c in self.clusters)

    def close(self) -> None:
        for space in reversed(self.spaces):
            try:
                space.close()
            except Exception as error:  # keep removing the rest
                print(f"closing {space.name}: {error}", file=sys.stderr)
        self.spaces.clear()
        self._slot.close()


def atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)

