"""``dapr-etcd-resolver demo``: cross-cluster resolution, told on one machine in under a minute.

Starts an embedded etcd (or uses ``--set etcdEndpoints=…`` under a throw-away prefix), two
file-source publishers for ``cluster-1`` and ``cluster-2``, the component for a caller in
``cluster-2``, and the DNS bridge; then shows local vs. remote resolution, FailOver when an
app leaves the caller's cluster and when cluster-1's publisher dies (its records expire with
its lease), ActiveActive spreading by weight, and the DNS bridge giving the same answers.
Every process and temporary file is cleaned up, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable

import dns.message
import dns.query
import grpc

from resolver.cli.common import settings_from
from resolver.cli.inspect_cmds import print_table
from resolver.component.client import ComponentClient
from resolver.demo.stage import INVENTORIES, LEASE_TTL, Stage
from resolver.etcd.gateway import EtcdGateway


class Narrator:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", flush=True)

    def title(self, text: str) -> None:
        print(f"\n== {text}", flush=True)

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float) -> float:
        """Poll until ``condition``, showing progress; returns the seconds it took."""
        started = time.monotonic()
        while not condition():
            waited = time.monotonic() - started
            if waited > timeout:
                raise TimeoutError(f"gave up after {timeout:.0f}s waiting for {what}")
            if sys.stdout.isatty():
                print(f"\r         waiting for {what} ... {waited:4.1f}s", end="", flush=True)
            time.sleep(0.05)
        waited = time.monotonic() - started
        if sys.stdout.isatty():
            print("\r" + " " * 100 + "\r", end="")
        self.say(f"{what}: {waited:.1f}s")
        return waited


def cluster_of(address: str) -> str:
    """The demo's addresses encode their cluster: 10.1.x.x is cluster-1, 10.2.x.x cluster-2."""
    if address.startswith("10.1."):
        return "cluster-1"
    if address.startswith("10.2."):
        return "cluster-2"
    return "fallback (DNS name)"


def show(client: ComponentClient, names: list[str], note: dict[str, str] | None = None) -> None:
    rows = []
    for name in names:
        answer = client.resolve(name)
        rows.append((name, answer, cluster_of(answer), (note or {}).get(name, "")))
    print()
    print_table(("RESOLVE", "ANSWER", "FROM", "WHY"), rows)
    print()


def cmd_demo(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    external = any(item.startswith("etcdEndpoints=") for item in args.set) or bool(args.config)
    prefix = f"/dapr-etcd-resolver-demo/{uuid.uuid4().hex[:8]}" if external else settings.prefix
    stage = Stage(",".join(map(str, settings.etcd_endpoints)) if external else None, prefix)
    narrator = Narrator()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupt)
    try:
        _tell(stage, narrator, external)
        return 0
    except KeyboardInterrupt:
        narrator.say("interrupted: cleaning up")
        return 130
    except grpc.RpcError:
        if not _interrupted:
            raise
        # A signal that arrived inside a gRPC call can surface as that call's failure.
        narrator.say("interrupted: cleaning up")
        return 130
    finally:
        stage.teardown()  # first: a publisher still running would write its keys again
        if external:
            with contextlib.suppress(Exception):
                gateway = EtcdGateway(settings.etcd)
                gateway.delete_prefix(prefix + "/")
                gateway.close()
        narrator.say(f"cleaned up: {', '.join(f'{n} (pid {p})' for n, p in stage.pids())} "
                     f"and {stage.workdir}")


_interrupted: list[int] = []


def _interrupt(signum: int, _frame: object) -> None:
    """SIGTERM ends the demo like Ctrl-C does: through the clean-up in ``finally``. The children
    run in sessions of their own (see :class:`CliProcess`), so a terminal's Ctrl-C reaches only
    the demo, which then ends them in order; a second Ctrl-C during the clean-up is ignored."""
    if _interrupted:
        return
    _interrupted.append(signum)
    raise KeyboardInterrupt


def _tell(stage: Stage, narrator: Narrator, external: bool) -> None:
    narrator.title("The stage")
    if external:
        narrator.say(f"Using your etcd at {stage.endpoints} under the throw-away prefix {stage.prefix}")
    else:
        stage.start_etcd()
        narrator.say(f"Embedded etcd on {stage.endpoints} (pid {dict(stage.pids())['etcd']})")
    narrator.say(f"registry init: the registry's identity is {stage.init_registry()[:12]}…")
    for cluster in INVENTORIES:
        stage.start_publisher(cluster)
    stage.start_serve()
    narrator.say(f"Two publishers (file source, lease TTL {LEASE_TTL}s) fill the registry for cluster-1 and "
                 "cluster-2; `serve` runs the pluggable component")
    client = ComponentClient(stage.socket_path, instance="etcd")
    try:
        services = client.list_services()
        narrator.say(f"Discovered via gRPC reflection v1alpha, as daprd does: {', '.join(services)}")
        client.init({"clusterName": "cluster-2"}, app_id="checkout", namespace="default", address="10.2.0.31")
        narrator.say("Init: the caller is app 'checkout' in namespace 'default' of cluster-2 (policy FailOver)")
        narrator.wait_for("both clusters in the registry",
                          lambda: client.resolve("payments.shop").startswith("10.1.")
                          and client.resolve("order-service").startswith("10.2."), 30)
        _local_and_remote(client, narrator)
        _failover(stage, client, narrator)
        _active_active(stage, narrator)
        _dns_bridge(stage, client, narrator)
        client.close_instance()
    finally:
        client.close()


def _local_and_remote(client: ComponentClient, narrator: Narrator) -> None:
    narrator.title("Local vs. remote")
    show(client, ["order-service", "payments.shop", "inventory"], {
        "order-service": "runs in both clusters: FailOver keeps the caller's own",
        "payments.shop": "namespace shop, runs only in cluster-1: reached across clusters",
        "inventory": "in no cluster: the Kubernetes DNS name, as daprd would use",
    })


def _failover(stage: Stage, client: ComponentClient, narrator: Narrator) -> None:
    narrator.title("FailOver")
    narrator.say("order-service is scaled to zero in cluster-2 (its entry leaves cluster-2's inventory) ...")
    stage.write_inventory("cluster-2", [e for e in INVENTORIES["cluster-2"] if e["appId"] != "order-service"])
    narrator.wait_for("order-service to fail over to cluster-1",
                      lambda: client.resolve("order-service").startswith("10.1."), 20)
    show(client, ["order-service"], {"order-service": "no instance left in cluster-2: the next cluster serves"})
    stage.write_inventory("cluster-2", INVENTORIES["cluster-2"])
    narrator.wait_for("order-service to come back to cluster-2",
                      lambda: client.resolve("order-service").startswith("10.2."), 20)
    narrator.say("cluster-1's publisher is killed (SIGKILL): its records live on until their lease expires ...")
    stage.processes["publisher cluster-1"].kill()
    waited = narrator.wait_for("cluster-1's records to expire",
                               lambda: not client.resolve("payments.shop").startswith("10.1."), LEASE_TTL + 10)
    show(client, ["payments.shop", "order-service"], {
        "payments.shop": f"cluster-1 gone after {waited:.1f}s (lease TTL {LEASE_TTL}s): fallback",
        "order-service": "the caller's own cluster is unaffected",
    })
    stage.start_publisher("cluster-1")
    narrator.say("cluster-1's publisher restarts ...")
    narrator.wait_for("cluster-1 to be back", lambda: client.resolve("payments.shop").startswith("10.1."), 30)


def _active_active(stage: Stage, narrator: Narrator) -> None:
    narrator.title("ActiveActive, by weight")
    with ComponentClient(stage.socket_path, instance="active-active") as weighted:
        weighted.init({"clusterName": "cluster-2", "policy": "ActiveActive",
                       "clusterWeights": "cluster-1=300,cluster-2=100"}, app_id="checkout")
        calls = 1000
        picks = Counter(cluster_of(weighted.resolve("order-service")) for _ in range(calls))
        multi = Counter(cluster_of(a) for a in weighted.resolve_multi("order-service"))
    narrator.say(f"a second component instance: policy ActiveActive, clusterWeights cluster-1=300,cluster-2=100; "
                 f"{calls} ResolveID calls for order-service:")
    print()
    total = sum(multi.values())
    print_table(("CLUSTER", "WEIGHT", "RESOLVEID SHARE", "RESOLVEIDMULTI LIST"), [
        (cluster, weight, f"{picks[cluster] / calls:.0%}", f"{multi[cluster]} of {total} entries")
        for cluster, weight in (("cluster-1", 300), ("cluster-2", 100))
    ])
    print()


def _dns_bridge(stage: Stage, client: ComponentClient, narrator: Narrator) -> None:
    narrator.title("The DNS bridge, for a stock daprd")
    stage.start_dns()
    narrator.say(f"`dns` serves zone dapr.internal on 127.0.0.1:{stage.dns_port} for a caller in cluster-2")
    rows = []
    for name, question in (("order-service", "order-service.default.dapr.internal"),
                           ("payments.shop", "payments.shop.dapr.internal")):
        reply = dns.query.udp(dns.message.make_query(question, "A"), "127.0.0.1", port=stage.dns_port, timeout=5)
        answer = " ".join(item.to_text() for rrset in reply.answer for item in rrset)
        rows.append((question, answer, client.resolve(name).rpartition(":")[0]))
    print()
    print_table(("DNS QUESTION (A)", "DNS ANSWER", "COMPONENT'S ANSWER"), rows)
    print()
    narrator.say("A stock daprd gets these through its Kubernetes resolver's template "
                 "{{.ID}}.{{.Namespace}}.dapr.internal.:{{.Port}} and one CoreDNS forward stanza.")
