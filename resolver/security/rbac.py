"""Per-cluster etcd RBAC, so one compromised cluster cannot hijack another's names.

The key schema puts each cluster in ranges of its own (``{prefix}/apps/{cluster}/`` and
``{prefix}/clusters/{cluster}/``), so etcd's role-based access control can give:

* each cluster's publisher — role ``dapr-nr-publisher-{cluster}`` — read/write on its two
  ranges only (records, ``info``, ``leader``), and read on the rest of the prefix;
* every resolver and DNS bridge — role ``dapr-nr-resolver`` — read on the prefix, nothing else.

A self-registering sidecar (``selfRegister``) needs the publisher role of its ``clusterName``.

**One naming scheme** for roles, users and certificate common names — ``root`` (the etcd
administrator), ``dapr-nr-publisher-<cluster>`` and ``dapr-nr-resolver``: each user has the
role of the same name, and with client-certificate authentication (etcd's
``--client-cert-auth``) etcd takes the user name from the certificate's CN, so
``scripts/gen_certs.py`` issues certificates with exactly these CNs.

:func:`bootstrap_commands` prints the whole bootstrap for review (root user, roles, users,
``registry init``, ``auth enable``); :func:`apply` performs the roles/users part through etcd's
Auth API and :func:`enable_auth` the last step (idempotent: existing roles and users are reused).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from resolver.etcd import auth
from resolver.etcd.gateway import EtcdGateway
from resolver.records.schema import Keys

ROOT_USER = "root"
RESOLVER_ROLE = "dapr-nr-resolver"
PUBLISHER_ROLE_PREFIX = "dapr-nr-publisher-"


def publisher_role(cluster: str) -> str:
    """The role, user and certificate CN of ``cluster``'s publisher."""
    return f"{PUBLISHER_ROLE_PREFIX}{cluster}"


@dataclass(frozen=True)
class Grant:
    role: str
    permission: str  # read | write | readwrite
    prefix: str


def plan(prefix: str, clusters: list[str], resolver: bool = True) -> list[Grant]:
    keys = Keys(prefix)
    grants = [Grant(RESOLVER_ROLE, "read", keys.root)] if resolver else []
    for cluster in clusters:
        role = publisher_role(cluster)
        grants += [Grant(role, "readwrite", keys.cluster_apps(cluster)),
                   Grant(role, "readwrite", keys.cluster_meta(cluster)),
                   Grant(role, "read", keys.root)]
    return grants


def roles_of(grants: list[Grant]) -> list[str]:
    return list(dict.fromkeys(grant.role for grant in grants))


def bootstrap_commands(grants: list[Grant], endpoints: str, settings_args: str, client_certs: bool) -> list[str]:
    """The complete bootstrap of an etcd for dapr-etcd-resolver, as reviewed shell commands.

    ``client_certs``: users authenticate with certificates (CN = user), so they get no password;
    otherwise each user is asked for one.
    """
    add_user = "--no-password" if client_certs else "--interactive"
    lines = [
        "# dapr-etcd-resolver: complete etcd bootstrap (review, then run as the etcd administrator).",
        f"export ETCDCTL_ENDPOINTS={shlex.quote(endpoints)}",
        "# With TLS also: export ETCDCTL_CACERT=ca.crt ETCDCTL_CERT=root.crt ETCDCTL_KEY=root.key "
        "(scripts/gen_certs.py --root)",
        "",
        f"# 1. the administrator: etcd needs a '{ROOT_USER}' user with the root role before 'auth enable'",
        f"etcdctl user add {ROOT_USER} --interactive",
        f"etcdctl user grant-role {ROOT_USER} {ROOT_USER}",
        "",
        "# 2. roles: each publisher writes only its own cluster's ranges; resolvers only read",
        *etcdctl_commands(grants, with_users=False),
        "",
        "# 3. users, named like their roles. With client certificates etcd takes the user from the",
        "#    certificate's CN: issue them with scripts/gen_certs.py, which uses exactly these names:",
    ]
    for role in roles_of(grants):
        cn_note = f"   # certificate CN={role}" if client_certs else ""
        lines += [f"etcdctl user add {role} {add_user}{cn_note}", f"etcdctl user grant-role {role} {role}"]
    lines += [
        "",
        "# 4. the registry's identity key (readers use it to notice a wiped or replaced etcd)",
        f"dapr-etcd-resolver registry init {settings_args}".rstrip(),
        "",
        "# 5. last: turn authentication on (from now on every client needs a user or a certificate)",
        "etcdctl auth enable",
    ]
    return lines


def etcdctl_commands(grants: list[Grant], with_users: bool = True) -> list[str]:
    """The plan as etcdctl commands (users get a password prompt; add --no-password for mTLS-only users)."""
    lines = [f"etcdctl role add {role}" for role in roles_of(grants)]
    lines += [f"etcdctl role grant-permission {g.role} {g.permission} {shlex.quote(g.prefix)} --prefix=true"
              for g in grants]
    if with_users:
        for role in roles_of(grants):
            lines += [f"etcdctl user add {role} --interactive", f"etcdctl user grant-role {role} {role}"]
    return lines


def apply(gateway: EtcdGateway, grants: list[Grant], passwords: dict[str, str] | None = None) -> list[str]:
    """Create the roles (and users, when ``passwords`` names them) through etcd's Auth API."""
    done: list[str] = []
    for role in roles_of(grants):
        if auth.add_role(gateway, role):
            done.append(f"role add {role}")
    for grant in grants:
        if auth.grant_prefix(gateway, grant.role, grant.prefix, grant.permission):
            done.append(f"grant {grant.permission} {grant.prefix} to {grant.role}")
    for user, password in (passwords or {}).items():
        if auth.add_user(gateway, user, password):
            done.append(f"user add {user}")
        if auth.grant_role(gateway, user, user):
            done.append(f"grant role {user} to user {user}")
    return done


def user_exists(gateway: EtcdGateway, user: str) -> bool:
    return auth.user_exists(gateway, user)


def ensure_root(gateway: EtcdGateway, password: str) -> list[str]:
    """Create the ``root`` user with the root role (etcd refuses ``auth enable`` without it)."""
    done = []
    if auth.add_user(gateway, ROOT_USER, password):
        done.append(f"user add {ROOT_USER}")
    auth.grant_role(gateway, ROOT_USER, ROOT_USER)
    done.append(f"grant role {ROOT_USER} to user {ROOT_USER}")
    return done


def enable_auth(gateway: EtcdGateway) -> None:
    """``auth enable`` (idempotent in etcd: enabling twice is not an error)."""
    auth.enable_auth(gateway)
