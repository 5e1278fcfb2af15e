"""``ls``, ``status`` and ``resolve``: look at the registry the way the component sees it."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from resolver.cli.common import settings_from
from resolver.errors import InvalidRecord
from resolver.registry.gateway import EtcdGateway
from resolver.registry.reader import RegistryReader
from resolver.registry.schema import ClusterInfo, EndpointRecord, Keys
from resolver.resolution.resolver import Resolver


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(map(str, header))] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _age(since: float, now: float) -> str:
    if not since:
        return "-"
    seconds = max(0, int(now - since))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def cmd_ls(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    gateway = EtcdGateway(settings.etcd)
    keys = Keys(settings.prefix)
    try:
        _, pages = gateway.list_prefix(keys.apps)
        rows, invalid, now = [], 0, time.time()
        for page in pages:
            for raw_key, value, _ in page:
                key = raw_key.decode("utf-8", errors="replace")
                try:
                    record = EndpointRecord.from_json(value, keys.parse_endpoint(key))
                except InvalidRecord as error:
                    invalid += 1
                    print(f"warning: skipping {key}: {error}", file=sys.stderr)
                    continue
                if (args.namespace and record.namespace != args.namespace) or (args.app and record.app_id != args.app):
                    continue
                rows.append((record.app_id, record.namespace, record.cluster, record.instance, record.host_port,
                             _age(record.updated_at, now)))
    finally:
        gateway.close()
    rows.sort()
    print_table(("APP", "NAMESPACE", "CLUSTER", "INSTANCE", "ADDRESS", "AGE"), rows)
    if invalid:
        print(f"{invalid} invalid record(s) skipped", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    gateway = EtcdGateway(settings.etcd)
    keys = Keys(settings.prefix)
    try:
        _, pages = gateway.list_prefix(keys.clusters)
        infos: list[ClusterInfo] = []
        for page in pages:
            for raw_key, value, _ in page:
                key = raw_key.decode("utf-8", errors="replace")
                try:
                    cluster, leaf = keys.parse_cluster_key(key)
                    if leaf == "info":
                        infos.append(ClusterInfo.from_json(value, cluster))
                except InvalidRecord as error:
                    print(f"warning: skipping {key}: {error}", file=sys.stderr)
    finally:
        gateway.close()
    now = time.time()
    print_table(("CLUSTER", "PUBLISHER", "VERSION", "STARTED", "SYNCED", "ENDPOINTS", "LEASE TTL"), [
        (info.cluster, info.publisher, info.version or "-", _age(info.started_at, now) + " ago",
         (_age(info.synced_at, now) + " ago") if info.synced_at else "not yet", info.endpoints,
         f"{info.lease_ttl:g}s")
        for info in sorted(infos, key=lambda i: i.cluster)
    ])
    return 0


def cmd_resolve(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    reader = RegistryReader(settings.etcd).start()
    try:
        resolver = Resolver(settings, reader, args.caller_namespace)
        if args.all:
            addresses, outcome, policy = resolver.resolve_multi(args.id, args.namespace, args.port)
            print("\n".join(addresses))
        else:
            address, outcome, policy = resolver.resolve(args.id, args.namespace, args.port)
            print(address)
        synced = "" if reader.synced else ", registry not reachable"
        print(f"({outcome.value}, policy {policy.name.value}{synced})", file=sys.stderr)
    finally:
        reader.stop()
    return 0
