"""``etcd-rbac``: print (or apply) the etcd roles that confine each cluster's publisher to its own keys."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resolver.cli.common import settings_from
from resolver.errors import ConfigError
from resolver.registry import names
from resolver.registry.gateway import EtcdGateway
from resolver.security.rbac import RESOLVER_ROLE, apply, etcdctl_commands, plan, publisher_role


def add_rbac_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                    common: argparse.ArgumentParser) -> None:
    rbac = commands.add_parser("etcd-rbac", parents=[common], help="etcd roles: each publisher writes only its "
                               "own cluster's keys, resolvers only read")
    rbac.add_argument("--cluster", action="append", default=[], required=True,
                      help="a cluster to make a publisher role for (repeatable)")
    rbac.add_argument("--no-resolver-role", action="store_true", help=f"skip the read-only {RESOLVER_ROLE} role")
    rbac.add_argument("--apply", action="store_true", help="create the roles through the etcd API (as the "
                      "etcdUsername of the settings, normally root) instead of printing etcdctl commands")
    rbac.add_argument("--password-file", action="append", default=[], metavar="USER=FILE",
                      help="with --apply, also create USER (named like its role) with the password in FILE")


def cmd_rbac(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    for cluster in args.cluster:
        try:
            names.check_label(cluster, "--cluster")
        except ValueError as error:
            raise ConfigError("--cluster", str(error)) from None
    grants = plan(settings.prefix, args.cluster, resolver=not args.no_resolver_role)
    if not args.apply:
        print("# etcd RBAC for dapr-etcd-resolver (review, then run with etcdctl as root; `etcdctl auth enable` last)")
        print("\n".join(etcdctl_commands(grants)))
        return 0
    passwords: dict[str, str] = {}
    roles = {publisher_role(c) for c in args.cluster} | ({RESOLVER_ROLE} if not args.no_resolver_role else set())
    for item in args.password_file:
        user, sep, path = item.partition("=")
        if not sep or user not in roles:
            raise ConfigError("--password-file", f"{item!r}: expected USER=FILE with USER one of {sorted(roles)}")
        try:
            passwords[user] = Path(path).read_text().strip()
        except OSError as error:
            raise ConfigError("--password-file", f"cannot read {path}: {error.strerror}") from None
    gateway = EtcdGateway(settings.etcd)
    try:
        for line in apply(gateway, grants, passwords):
            print(f"done: {line}")
    finally:
        gateway.close()
    print("roles applied; enable authentication with `etcdctl auth enable` once a root user exists", file=sys.stderr)
    return 0
