"""``registry``: administer the registry itself (``registry init``: its identity key)."""

from __future__ import annotations

import argparse
import json

from resolver.cli.common import settings_from
from resolver.etcd.gateway import EtcdGateway
from resolver.records.schema import Keys
from resolver.registry.history_id import ensure_identity, read_identity


def add_registry_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                        common: argparse.ArgumentParser) -> None:
    registry = commands.add_parser("registry", parents=[common], help="administer the registry: 'registry init' "
                                   "creates its identity key (once per etcd; safe to repeat)")
    registry.add_argument("action", choices=["init", "show"],
                          help="init: create the identity key if absent (run as an administrator after creating "
                               "or wiping etcd); show: print it")
    registry.add_argument("--output", choices=["text", "json"], default="text")


def cmd_registry(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    keys = Keys(settings.etcd.prefix)
    gateway = EtcdGateway(settings.etcd)
    try:
        if args.action == "init":
            identity, created = ensure_identity(gateway, keys)
        else:
            found = read_identity(gateway, keys)
            if found is None:
                print(f"no registry identity at {keys.identity()}: run 'dapr-etcd-resolver registry init'")
                return 1
            identity, created = found, False
    finally:
        gateway.close()
    if args.output == "json":
        print(json.dumps({"key": keys.identity(), "id": identity.id, "createdAt": identity.created_at,
                          "created": created}))
    else:
        verb = "created" if created else "already present"
        print(f"registry identity {identity.id} at {keys.identity()} ({verb})")
    return 0
