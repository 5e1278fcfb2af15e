"""``ls``, ``status`` and ``resolve``: look at the registry the way the component sees it."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from resolver.cli.common import settings_from
from resolver.errors import InvalidRecord
from resolver.registry.gateway import EtcdGateway
from resolver.registry.reader import RegistryReader
from resolver.registry.schema import ClusterInfo, EndpointRecord, Keys
from resolver.resolution.resolver import Resolver

T = TypeVar("T")


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


def _read(args: argparse.Namespace, range_of: Callable[[Keys], str],
          parse: Callable[[Keys, str, bytes], T | None]) -> tuple[list[T], int]:
    """What ``parse`` makes of one range of the registry, and how many entries were invalid (each
    reported on stderr). ``parse`` returns None for keys it does not want."""
    settings = settings_from(args)
    gateway = EtcdGateway(settings.etcd)
    keys = Keys(settings.prefix)
    parsed: list[T] = []
    invalid = 0
    try:
        _, pages = gateway.list_prefix(range_of(keys))
        for page in pages:
            for raw_key, value, _ in page:
                key = raw_key.decode("utf-8", errors="replace")
                try:
                    item = parse(keys, key, value)
                except InvalidRecord as error:
                    invalid += 1
                    print(f"warning: skipping {key}: {error}", file=sys.stderr)
                    continue
                if item is not None:
                    parsed.append(item)
    finally:
        gateway.close()
    return parsed, invalid


def _endpoint(keys: Keys, key: str, value: bytes) -> EndpointRecord:
    return EndpointRecord.from_json(value, keys.parse_endpoint(key))


def _cluster_info(keys: Keys, key: str, value: bytes) -> ClusterInfo | None:
    cluster, leaf = keys.parse_cluster_key(key)
    return ClusterInfo.from_json(value, cluster) if leaf == "info" else None


def cmd_ls(args: argparse.Namespace) -> int:
    records, invalid = _read(args, lambda keys: keys.apps, _endpoint)
    now = time.time()
    rows = sorted((r.app_id, r.namespace, r.cluster, r.instance, r.host_port, _age(r.updated_at, now))
                  for r in records
                  if (not args.namespace or r.namespace == args.namespace) and (not args.app or r.app_id == args.app))
    print_table(("APP", "NAMESPACE", "CLUSTER", "INSTANCE", "ADDRESS", "AGE"), rows)
    if invalid:
        print(f"{invalid} invalid record(s) skipped", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    infos, _ = _read(args, lambda keys: keys.clusters, _cluster_info)
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
