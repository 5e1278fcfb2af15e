"""Per-cluster etcd RBAC, so one compromised cluster cannot hijack another's names.

The key schema puts each cluster in ranges of its own (``{prefix}/apps/{cluster}/`` and
``{prefix}/clusters/{cluster}/``), so etcd's role-based access control can give:

* each cluster's publisher — role ``dapr-nr-publisher-{cluster}`` — read/write on its two
  ranges only (records, ``info``, ``leader``), and read on the rest of the prefix;
* every resolver and DNS bridge — role ``dapr-nr-resolver`` — read on the prefix, nothing else.

A self-registering sidecar (``selfRegister``) needs the publisher role of its ``clusterName``.
Users with the same name as the role get it; with client-certificate authentication, etcd
takes the user name from the certificate's common name, so issue certificates with those CNs.
:func:`etcdctl_commands` prints the plan for review; :func:`apply` performs it through etcd's
Auth API (idempotent: existing roles and users are reused).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import etcd3.utils
from etcd3 import etcdrpc
from etcd3.etcdrpc import auth_pb2

from resolver.errors import RegistryError
from resolver.registry.gateway import EtcdGateway
from resolver.registry.schema import Keys

RESOLVER_ROLE = "dapr-nr-resolver"


def publisher_role(cluster: str) -> str:
    return f"dapr-nr-publisher-{cluster}"


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


def etcdctl_commands(grants: list[Grant], with_users: bool = True) -> list[str]:
    """The plan as etcdctl commands (users get a password prompt; add --no-password for mTLS-only users)."""
    lines = [f"etcdctl role add {role}" for role in roles_of(grants)]
    lines += [f"etcdctl role grant-permission {g.role} {g.permission} {shlex.quote(g.prefix)} --prefix=true"
              for g in grants]
    if with_users:
        for role in roles_of(grants):
            lines += [f"etcdctl user add {role} --interactive", f"etcdctl user grant-role {role} {role}"]
    return lines


_PERMISSIONS = {"read": auth_pb2.Permission.READ, "write": auth_pb2.Permission.WRITE,
                "readwrite": auth_pb2.Permission.READWRITE}


def apply(gateway: EtcdGateway, grants: list[Grant], passwords: dict[str, str] | None = None) -> list[str]:
    """Create the roles (and users, when ``passwords`` names them) through etcd's Auth API."""
    done: list[str] = []

    def call(what: str, method: str, request: object, tolerate: str = "") -> None:
        def run(client: etcd3.MultiEndpointEtcd3Client) -> object:
            stub = etcdrpc.AuthStub(client.channel)
            return getattr(stub, method)(request, client.timeout, credentials=client.call_credentials,
                                         metadata=client.metadata)
        try:
            gateway.call(what, run)
            done.append(what)
        except RegistryError as error:
            if not tolerate or tolerate not in str(error):
                raise

    for role in roles_of(grants):
        call(f"role add {role}", "RoleAdd", etcdrpc.AuthRoleAddRequest(name=role), "already exists")
    for grant in grants:
        start = grant.prefix.encode()
        permission = auth_pb2.Permission(permType=_PERMISSIONS[grant.permission], key=start,
                                         range_end=etcd3.utils.prefix_range_end(start))
        call(f"grant {grant.permission} {grant.prefix} to {grant.role}", "RoleGrantPermission",
             etcdrpc.AuthRoleGrantPermissionRequest(name=grant.role, perm=permission))
    for user, password in (passwords or {}).items():
        call(f"user add {user}", "UserAdd", etcdrpc.AuthUserAddRequest(name=user, password=password),
             "already exists")
        call(f"grant role {user} to user {user}", "UserGrantRole",
             etcdrpc.AuthUserGrantRoleRequest(user=user, role=user))
    return done
