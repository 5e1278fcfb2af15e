"""``dapr-etcd-resolver demo``: the registry, the component and a daprd-style client, on one machine.

Steps: start an embedded etcd (or use ``--set etcdEndpoints=…``), publish sample records for
two clusters, start ``serve`` on a temporary socket, discover it and resolve through it the
way daprd does, print what happened, and clean up every process and temporary file.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from resolver.cli.common import settings_from, startup_layers
from resolver.cli.inspect_cmds import print_table
from resolver.component.client import ComponentClient
from resolver.config import Layer, load_settings
from resolver.demo.processes import CliProcess, wait_until
from resolver.local_etcd import LocalEtcd
from resolver.registry.gateway import EtcdGateway
from resolver.registry.schema import EndpointRecord, Keys

SAMPLE = [
    # cluster, namespace, app, instance, address
    ("cluster-1", "default", "orders", "orders-7d9f-abcde", "10.1.0.11"),
    ("cluster-1", "default", "orders", "orders-7d9f-fghij", "10.1.0.12"),
    ("cluster-1", "shop", "payments", "payments-5c8b-klmno", "10.1.0.21"),
    ("cluster-2", "default", "orders", "orders-6b4c-pqrst", "10.2.0.11"),
    ("cluster-2", "default", "checkout", "checkout-59d7-uvwxy", "10.2.0.31"),
]


class Narrator:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    narrator = Narrator()
    workdir = Path(tempfile.mkdtemp(prefix="dapr-nr-demo-"))
    etcd: LocalEtcd | None = None
    server: CliProcess | None = None
    gateway: EtcdGateway | None = None
    external = "etcdEndpoints" in " ".join(args.set) or bool(args.config)
    prefix = f"/dapr-etcd-resolver-demo/{uuid.uuid4().hex[:8]}" if external else settings.prefix
    try:
        if external:
            endpoints = ",".join(map(str, settings.etcd_endpoints))
            narrator.say(f"Using your etcd at {endpoints} under the throw-away prefix {prefix}")
        else:
            narrator.say("Starting an embedded etcd on a free loopback port ...")
            etcd = LocalEtcd(workdir / "etcd").start()
            endpoints = etcd.endpoint
            narrator.say(f"etcd is up on {endpoints} (pid {etcd.pid})")
        keys = Keys(prefix)
        demo_settings = load_settings([*startup_layers(args)[0],
                                       Layer("demo", {"prefix": prefix, "etcdEndpoints": endpoints})])
        gateway = EtcdGateway(demo_settings.etcd)
        lease = gateway.grant(120)
        gateway.apply([(keys.endpoint(c, ns, app, inst), EndpointRecord(app, ns, c, inst, addr, 50002).to_json(),
                        lease) for c, ns, app, inst, addr in SAMPLE], [])
        narrator.say(f"Published {len(SAMPLE)} sample endpoints for cluster-1 and cluster-2 "
                     f"(try: etcdctl --endpoints {endpoints} get --prefix {keys.apps})")

        server_args = ["--set", f"prefix={prefix}"]
        server_args += ["--set", f"etcdEndpoints={endpoints}"] if not external else list(_passthrough(args))
        narrator.say("Starting `dapr-etcd-resolver serve` (the pluggable component) ...")
        server = _start_serve(server_args, workdir)
        narrator.say(f"serve is up (pid {server.pid})")
        _resolve_like_daprd(workdir / "sockets" / "etcd.sock", narrator)
        narrator.say("Done. Cleaning up.")
        return 0
    finally:
        if server is not None:
            server.stop()
        if gateway is not None:
            with contextlib.suppress(Exception):
                gateway.delete_prefix(prefix + "/")
            gateway.close()
        if etcd is not None:
            etcd.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
        sys.stdout.flush()


def _resolve_like_daprd(socket_path: Path, narrator: Narrator) -> None:
    with ComponentClient(socket_path, instance="etcd") as client:
        services = client.list_services()
        narrator.say(f"Discovered via gRPC reflection v1alpha, as daprd does: {', '.join(services)}")
        client.init({"clusterName": "cluster-2"}, app_id="checkout", namespace="default", address="10.2.0.31")
        narrator.say("Init: caller is app 'checkout' in namespace 'default' of cluster-2 (policy FailOver)")
        rows = [(request, client.resolve(request), note) for request, note in [
            ("orders", "orders runs in both clusters: FailOver keeps the caller's own cluster"),
            ("payments.shop", "another namespace, only in cluster-1: reached across clusters"),
            ("inventory", "not in the registry: the Kubernetes DNS name is the fallback"),
        ]]
        print()
        print_table(("RESOLVE", "ANSWER", "WHY"), rows)
        print()
        client.close_instance()


def _start_serve(extra: list[str], workdir: Path) -> CliProcess:
    socket_dir = workdir / "sockets"
    server = CliProcess(["serve", "--socket-dir", str(socket_dir), "--name", "etcd", *extra], workdir / "serve.log")
    socket_path = socket_dir / "etcd.sock"
    wait_until(lambda: server.check_running() and socket_path.exists(), 20, "the component's socket")
    return server


def _passthrough(args: argparse.Namespace) -> list[str]:
    passed = [item for assignment in args.set for item in ("--set", assignment)]
    return passed + (["--config", args.config] if args.config else [])
