"""What a component call answers when it fails: one table, every class of the exception tree.

Why a table beside the servicer, not in :mod:`resolver.errors`: the errors are the bottom layer
and shared by every role (the publisher, the DNS bridge and the command line never speak gRPC);
only the component maps them to status codes, so the component owns the mapping. Why explicit,
one row per class rather than a few base classes: a new error must be *decided* — a class
without a row fails ``tests/test_errors_table.py`` — instead of silently inheriting whatever its
base answers.

Dapr's contract is that a resolver never answers ``UNKNOWN``: anything not in the table (an
exception of a dependency, a bug) is ``INTERNAL``. A subclass defined outside the package (a
test's, say) answers what its nearest ancestor in the table answers (:func:`status_for` walks
the MRO).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import grpc

from resolver.errors import (
    ClusterConflict,
    ConfigError,
    ConfigValueError,
    EtcdNotInstalled,
    FlagError,
    Forbidden,
    Gone,
    InvalidRecord,
    InvalidRequest,
    InventoryError,
    KubeError,
    LeaseNotFound,
    LimitReached,
    NoEndpoints,
    NotFound,
    NotInitialized,
    RefusedAddress,
    RegistrationRefused,
    RegistryCompacted,
    RegistryError,
    RegistryUnavailable,
    ResolverError,
    SocketInUse,
    UnsafeSocketDir,
    ValidationError,
)

_Code = grpc.StatusCode

STATUS_BY_ERROR: Mapping[type[BaseException], grpc.StatusCode] = MappingProxyType({
    ResolverError: _Code.INTERNAL,
    # The caller sent (or configured) something unacceptable: retrying the same call cannot help.
    ValidationError: _Code.INVALID_ARGUMENT,
    ConfigError: _Code.INVALID_ARGUMENT,
    ConfigValueError: _Code.INVALID_ARGUMENT,
    FlagError: _Code.INVALID_ARGUMENT,
    InvalidRequest: _Code.INVALID_ARGUMENT,
    InvalidRecord: _Code.INVALID_ARGUMENT,
    RefusedAddress: _Code.INVALID_ARGUMENT,
    # Resolve before Init: daprd must initialize the instance first.
    NotInitialized: _Code.FAILED_PRECONDITION,
    NotFound: _Code.NOT_FOUND,
    # A process-level cap is full: daprd may retry later, another client may be the cause.
    LimitReached: _Code.RESOURCE_EXHAUSTED,
    # etcd: unreachable is worth a retry (UNAVAILABLE), a refused self-registration is not; the
    # rest (a lost lease, a compacted watch, any other refusal) is handled inside the component
    # and reaching a caller means a fault of ours.
    RegistryError: _Code.INTERNAL,
    RegistryUnavailable: _Code.UNAVAILABLE,
    RegistrationRefused: _Code.PERMISSION_DENIED,
    LeaseNotFound: _Code.INTERNAL,
    RegistryCompacted: _Code.INTERNAL,
    # Raised only by other roles (the publisher, serve's start-up, the local etcd): a component
    # call that met one would be a fault of ours.
    InventoryError: _Code.INTERNAL,
    NoEndpoints: _Code.INTERNAL,
    KubeError: _Code.INTERNAL,
    Gone: _Code.INTERNAL,
    Forbidden: _Code.INTERNAL,
    ClusterConflict: _Code.INTERNAL,
    SocketInUse: _Code.INTERNAL,
    UnsafeSocketDir: _Code.INTERNAL,
    EtcdNotInstalled: _Code.INTERNAL,
})
"""Every class of :mod:`resolver.errors`' tree → the status a component call answers with."""


def status_for(error: BaseException) -> grpc.StatusCode:
    """The status code a component call answers with when it fails with ``error`` (never ``UNKNOWN``)."""
    for cls in type(error).__mro__:
        code = STATUS_BY_ERROR.get(cls)
        if code is not None:
            return code
    return _Code.INTERNAL
