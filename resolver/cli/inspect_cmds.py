"""``ls`` and ``resolve``: look at the registry the way the component sees it (``status``: status_cmd).

Both print only their answer on stdout (a table, or JSON with ``--output json``) and everything
else — warnings about skipped records, how an answer was reached — on stderr, so scripts can
use stdout as is.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from resolver.cli.common import describe_error, note_key_range, settings_from
from resolver.errors import InvalidRecord, RegistryError
from resolver.etcd.gateway import EtcdGateway
from resolver.records.schema import EndpointRecord, Keys
from resolver.registry.pool import open_reader
from resolver.registry.supervised import SupervisedReader
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
        note_key_range(range_of(keys))
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


def cmd_ls(args: argparse.Namespace) -> int:
    records, invalid = _read(args, lambda keys: keys.apps, _endpoint)
    now = time.time()
    chosen = sorted((r for r in records if (not args.namespace or r.namespace == args.namespace)
                     and (not args.app or r.app_id == args.app)),
                    key=lambda r: (r.app_id, r.namespace, r.cluster, r.instance))
    if getattr(args, "output", "table") == "json":
        print(json.dumps([{"appId": r.app_id, "namespace": r.namespace, "cluster": r.cluster, "instance": r.instance,
                           "address": r.address, "port": r.port, "node": r.node, "zone": r.zone,
                           "updatedAt": r.updated_at} for r in chosen], indent=2))
    else:
        print_table(("APP", "NAMESPACE", "CLUSTER", "INSTANCE", "ADDRESS", "AGE"),
                    [(r.app_id, r.namespace, r.cluster, r.instance, r.host_port, _age(r.updated_at, now))
                     for r in chosen])
    if invalid:
        print(f"{invalid} invalid record(s) skipped", file=sys.stderr)
    return 0


def _why_unreachable(reader: SupervisedReader) -> str:
    """The etcd error behind an unsynced reader, asked once more for the operator (bounded by etcdTimeout)."""
    try:
        reader.gateway.status(reader.keys.root)
    except RegistryError as error:
        return describe_error(error)[0].removeprefix("registry: ")
    return reader.health_reason() or "not synced within initialSyncWait"


def cmd_resolve(args: argparse.Namespace) -> int:
    """One resolve through the component's code: the same reader factory (so the same address policy
    and cache scope) and the same :class:`Resolver`."""
    settings = settings_from(args)
    reader = open_reader(settings)
    try:
        resolver = Resolver(settings, reader, args.caller_namespace)
        if args.all:
            addresses, outcome, policy = resolver.resolve_multi(args.id, args.namespace, args.port)
        else:
            address, outcome, policy = resolver.resolve(args.id, args.namespace, args.port)
            addresses = [address]
        unreachable = "" if reader.synced else _why_unreachable(reader)
    finally:
        reader.stop()
    if getattr(args, "output", "text") == "json":
        print(json.dumps({"id": args.id, "answers" if args.all else "answer": addresses if args.all else addresses[0],
                          "outcome": outcome.value, "policy": policy.name.value,
                          "registry": "unreachable" if unreachable else "synced"}, indent=2))
    else:
        print("\n".join(addresses))
    print(f"({outcome.value}, policy {policy.name.value}{', registry not reachable' if unreachable else ''})",
          file=sys.stderr)
    if unreachable:
        print(f"warning: this is the {outcome.value} answer because the registry was not reachable: {unreachable}",
              file=sys.stderr)
    return 0
