"""``etcd-rbac``: print (or ``--apply``) the complete etcd bootstrap for dapr-etcd-resolver.

Root user, one role per cluster's publisher (its own ranges only) and a read-only resolver
role, users named like their roles (= the certificate CNs ``scripts/gen_certs.py`` issues),
``registry init``, and ``auth enable`` last — the order etcd requires. Printing is the default
so an administrator can review it; ``--apply`` performs it through etcd's API, idempotently.
"""

from __future__ import annotations

import argparse
import secrets
import shlex
import sys
from pathlib import Path

from resolver.cli.common import settings_from
from resolver.errors import FlagError
from resolver.etcd.gateway import EtcdGateway
from resolver.records import names
from resolver.records.schema import Keys
from resolver.registry.history_id import ensure_identity
from resolver.security.rbac import (
    RESOLVER_ROLE,
    ROOT_USER,
    Grant,
    apply,
    bootstrap_commands,
    enable_auth,
    ensure_root,
    plan,
    publisher_role,
    roles_of,
    user_exists,
)


def add_rbac_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                    common: argparse.ArgumentParser) -> None:
    rbac = commands.add_parser("etcd-rbac", parents=[common], help="the etcd bootstrap: root user, roles (each "
                               "publisher writes only its own cluster's keys, resolvers only read), users, "
                               "registry init, auth enable")
    rbac.add_argument("--cluster", action="append", default=[], required=True,
                      help="a cluster to make a publisher role and user for (repeatable)")
    rbac.add_argument("--no-resolver-role", action="store_true", help=f"skip the read-only {RESOLVER_ROLE} role")
    rbac.add_argument("--client-certs", action="store_true", help="users authenticate with client certificates "
                      "(CN = user name, see scripts/gen_certs.py): print them without passwords")
    rbac.add_argument("--apply", action="store_true", help="perform the bootstrap through the etcd API (as "
                      "root: etcdUsername=root, or a client certificate with CN root) instead of printing it")
    rbac.add_argument("--password-file", action="append", default=[], metavar="USER=FILE",
                      help="with --apply, the password of USER (a role name) in FILE; users without one get a "
                           "random password and authenticate with their certificate")
    rbac.add_argument("--root-password-file", metavar="FILE", help="with --apply, create the root user with the "
                      "password in FILE if etcd has none yet")
    rbac.add_argument("--no-auth-enable", action="store_true", help="with --apply, leave authentication off")


def _read_secret(flag: str, path: str) -> str:
    try:
        secret = Path(path).read_text().strip()
    except OSError as error:
        raise FlagError(flag, f"cannot read {path}: {error.strerror}; give a file holding that user's "
                        "password") from None
    if not secret:
        raise FlagError(flag, f"{path} is empty; put the password in it")
    return secret


def _passwords(args: argparse.Namespace, roles: list[str]) -> dict[str, str]:
    passwords: dict[str, str] = {}
    for item in args.password_file:
        user, sep, path = item.partition("=")
        if not sep or user not in roles:
            raise FlagError("--password-file", f"{item!r}: expected USER=FILE with USER one of {sorted(roles)}")
        passwords[user] = _read_secret("--password-file", path)
    return passwords


def _settings_args(args: argparse.Namespace) -> str:
    """How the printed ``registry init`` line reaches the same etcd and prefix as this command."""
    parts = []
    if args.config:
        parts += ["--config", args.config]
    for item in args.set:
        if not item.startswith("etcdPassword="):
            parts += ["--set", item]
    return " ".join(shlex.quote(part) for part in parts)


def _apply(args: argparse.Namespace, grants: list[Grant], gateway: EtcdGateway, prefix: str) -> None:
    roles = roles_of(grants)
    passwords = _passwords(args, roles)
    if args.root_password_file:
        steps = ensure_root(gateway, _read_secret("--root-password-file", args.root_password_file))
    elif user_exists(gateway, ROOT_USER):
        steps = ensure_root(gateway, "unused: the user exists")  # "already exists": only the role is granted
    else:
        raise FlagError("--root-password-file", f"etcd has no {ROOT_USER} user yet and 'auth enable' needs one: "
                        "give --root-password-file FILE with the administrator's password")
    for user in roles:
        passwords.setdefault(user, secrets.token_urlsafe(24))  # certificate-only users: never used, never shown
    steps += apply(gateway, grants, passwords)
    identity, created = ensure_identity(gateway, Keys(prefix))
    steps.append(f"registry init: identity {identity.id} ({'created' if created else 'already present'})")
    if not args.no_auth_enable:
        enable_auth(gateway)
        steps.append("auth enable")
    for step in steps:
        print(f"done: {step}")


def cmd_rbac(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    for cluster in args.cluster:
        try:
            names.check_label(cluster, "--cluster")
        except ValueError as error:
            raise FlagError("--cluster", f"{error}; give a DNS-1123 label such as cluster-1") from None
    grants = plan(settings.prefix, args.cluster, resolver=not args.no_resolver_role)
    if not args.apply:
        endpoints = ",".join(str(endpoint) for endpoint in settings.etcd.endpoints)
        print("\n".join(bootstrap_commands(grants, endpoints, _settings_args(args), args.client_certs)))
        return 0
    gateway = EtcdGateway(settings.etcd)
    try:
        _apply(args, grants, gateway, settings.prefix)
    finally:
        gateway.close()
    users = ", ".join([publisher_role(c) for c in args.cluster] + ([] if args.no_resolver_role else [RESOLVER_ROLE]))
    print(f"bootstrap applied: users {users} (certificate CN = user name)", file=sys.stderr)
    return 0
