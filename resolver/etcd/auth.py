"""etcd's Auth API (roles, users, permissions), which python3-etcd3 does not wrap.

Kept in the etcd client package so that :mod:`resolver.security.rbac` plans and applies grants
without touching ``etcd3``'s generated stubs: every call goes through
:meth:`EtcdGateway.call`, with its deadline and error mapping.
"""

from __future__ import annotations

import etcd3
import etcd3.utils
from etcd3 import etcdrpc
from etcd3.etcdrpc import auth_pb2

from resolver.errors import RegistryError
from resolver.etcd.gateway import EtcdGateway

_PERMISSIONS = {"read": auth_pb2.Permission.READ, "write": auth_pb2.Permission.WRITE,
                "readwrite": auth_pb2.Permission.READWRITE}


def _call(gateway: EtcdGateway, what: str, method: str, request: object, tolerate: str = "") -> bool:
    """One Auth API call; False when etcd answered with the tolerated error (e.g. "already exists")."""
    def run(client: etcd3.MultiEndpointEtcd3Client) -> object:
        stub = etcdrpc.AuthStub(client.channel)
        return getattr(stub, method)(request, client.timeout, credentials=client.call_credentials,
                                     metadata=client.metadata)
    try:
        gateway.call(what, run)
    except RegistryError as error:
        if tolerate and tolerate in str(error):
            return False
        raise
    return True


def add_role(gateway: EtcdGateway, role: str) -> bool:
    """Create ``role``; False when it already exists."""
    return _call(gateway, f"role add {role}", "RoleAdd", etcdrpc.AuthRoleAddRequest(name=role), "already exists")


def grant_prefix(gateway: EtcdGateway, role: str, prefix: str, permission: str) -> bool:
    """Give ``role`` the ``permission`` (read, write, readwrite) on every key under ``prefix``."""
    start = prefix.encode()
    granted = auth_pb2.Permission(permType=_PERMISSIONS[permission], key=start,
                                  range_end=etcd3.utils.prefix_range_end(start))
    return _call(gateway, f"grant {permission} {prefix} to {role}", "RoleGrantPermission",
                 etcdrpc.AuthRoleGrantPermissionRequest(name=role, perm=granted))


def add_user(gateway: EtcdGateway, user: str, password: str) -> bool:
    """Create ``user``; False when it already exists (its password is left as it is)."""
    return _call(gateway, f"user add {user}", "UserAdd", etcdrpc.AuthUserAddRequest(name=user, password=password),
                 "already exists")


def grant_role(gateway: EtcdGateway, user: str, role: str) -> bool:
    return _call(gateway, f"grant role {role} to user {user}", "UserGrantRole",
                 etcdrpc.AuthUserGrantRoleRequest(user=user, role=role))


def user_exists(gateway: EtcdGateway, user: str) -> bool:
    return _call(gateway, f"user get {user}", "UserGet", etcdrpc.AuthUserGetRequest(name=user),
                 "user name not found")


def enable_auth(gateway: EtcdGateway) -> None:
    """``auth enable`` (idempotent in etcd: enabling twice is not an error)."""
    _call(gateway, "auth enable", "AuthEnable", etcdrpc.AuthEnableRequest())
