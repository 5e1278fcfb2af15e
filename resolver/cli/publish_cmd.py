"""``publish``: the per-cluster agent that writes Dapr pods (or an inventory) into etcd."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from resolver.cli.common import settings_from
from resolver.config.values import parse_duration
from resolver.errors import ConfigError
from resolver.observability import metrics
from resolver.observability.metrics import serve_metrics
from resolver.publisher.agent import PublisherAgent, PublisherOptions
from resolver.publisher.cluster_ownership import check_cluster_uid
from resolver.records import names

log = logging.getLogger(__name__)

CONFLICT_EXIT = 3
"""Exit code when the cluster name is held by another cluster identity (the error is logged)."""


def add_publish_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                       common: argparse.ArgumentParser) -> None:
    publish = commands.add_parser("publish", parents=[common], help="publish this cluster's Dapr pods into etcd")
    publish.add_argument("--cluster", required=True, help="this cluster's name (a DNS-1123 label)")
    publish.add_argument("--source", choices=["kubernetes", "file"], default="kubernetes")
    publish.add_argument("--file", type=Path, help="inventory for --source file: YAML, or JSON when the name "
                         "ends in .json (faster for large inventories)")
    publish.add_argument("--kubeconfig", help="kubeconfig path (default: in-cluster, else ~/.kube/config)")
    publish.add_argument("--namespaces", default="", help="comma-separated namespaces (default: all)")
    publish.add_argument("--lease-ttl", default="15s", help="lease TTL of the records (default 15s)")
    publish.add_argument("--withdraw", action="store_true", help="revoke the records on exit")
    publish.add_argument("--leader-elect", action="store_true", help="several replicas: one publishes")
    publish.add_argument("--identity", default="", help="replica identity for leader election "
                         "(default: $POD_NAME or hostname, and the PID)")
    publish.add_argument("--cluster-uid", default="", help="this cluster's identity: one cluster name, one owner "
                         "(default: the kube-system namespace UID; file source: /etc/machine-id + the inventory path)")
    publish.add_argument("--verify-interval", default="30s", help="how often etcd is compared with what should be "
                         "published, putting back what is missing (default 30s)")
    publish.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus /metrics (0 = off)")


def options_from(args: argparse.Namespace) -> PublisherOptions:
    try:
        names.check_label(args.cluster, "--cluster")
        namespaces = tuple(ns.strip() for ns in args.namespaces.split(",") if ns.strip())
        for namespace in namespaces:
            names.check_label(namespace, "--namespaces")
    except ValueError as error:
        raise ConfigError(getattr(error, "field", "--cluster"), getattr(error, "message", str(error))) from None
    try:
        lease_ttl = parse_duration(args.lease_ttl)
    except ValueError as error:
        raise ConfigError("--lease-ttl", str(error)) from None
    if lease_ttl < 2:
        raise ConfigError("--lease-ttl", "must be at least 2s")
    try:
        verify_interval = parse_duration(args.verify_interval)
    except ValueError as error:
        raise ConfigError("--verify-interval", str(error)) from None
    if not 1 <= verify_interval <= 3600:
        raise ConfigError("--verify-interval", "must be between 1s and 1h")
    cluster_uid = check_cluster_uid(args.cluster_uid) if args.cluster_uid else ""
    if args.source == "file" and args.file is None:
        raise ConfigError("--file", "--source file needs --file PATH")
    return PublisherOptions(cluster=args.cluster, lease_ttl=lease_ttl, withdraw=args.withdraw,
                            leader_elect=args.leader_elect, source=args.source, file=args.file,
                            kubeconfig=args.kubeconfig, namespaces=namespaces, identity=args.identity,
                            cluster_uid=cluster_uid, verify_interval=verify_interval)


def cmd_publish(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    options = options_from(args)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    serve_metrics(args.metrics_port)
    agent = PublisherAgent(settings, options).start()
    metrics.set_readiness(lambda: agent.synced.is_set() or (args.leader_elect and agent.publication.listed))
    while not stop.wait(0.2) and not agent.failed.is_set():
        pass
    if agent.failed.is_set():  # another cluster identity holds our name: the error is logged
        agent.stop()
        return CONFLICT_EXIT
    log.info("signal received: stopping the publisher")
    agent.stop()
    return 0
