"""The package's one exception hierarchy, and its one mapping to gRPC status codes.

Every error raised on purpose derives from :class:`ResolverError`. Errors of dependencies
(grpc, etcd3, kubernetes) are translated where they are caught — etcd's in
:mod:`resolver.registry.gateway` — so callers handle our types only, and the component maps
them to status codes in exactly one place (:func:`grpc_status_for`). Dapr's contract is that a
resolver never answers ``UNKNOWN``; anything unexpected becomes ``INTERNAL``.
"""

from __future__ import annotations

import grpc


class ResolverError(Exception):
    """Base class of every error this package raises on purpose."""


class ValidationError(ResolverError, ValueError):
    """A value failed validation; ``field`` names what was wrong (a key, a request field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ConfigError(ValidationError):
    """A configuration key is unknown or its value is bad; ``source`` says where it came from."""

    def __init__(self, key: str, message: str, source: str = "") -> None:
        self.source = source
        where = f" (from {source})" if source else ""
        super().__init__(key, message)
        self.args = (f"invalid configuration key {key!r}{where}: {message}",)

    def __str__(self) -> str:
        return str(self.args[0])


class InvalidRequest(ValidationError):
    """A request field (id, namespace, port, …) is not acceptable."""


class NotInitialized(ResolverError):
    """A resolve reached an instance that was never initialized and has no start-up settings."""


class NotFound(ResolverError):
    """No endpoint matched and the fallback is disabled."""


class RegistryError(ResolverError):
    """etcd refused or failed a request in a way a retry will not fix (e.g. permission denied)."""


class RegistryUnavailable(RegistryError):
    """etcd could not be reached or did not answer in time; retrying later may succeed."""


class LeaseNotFound(RegistryError):
    """A write named a lease etcd no longer has (expired or revoked): re-register on a new one."""


class RegistryCompacted(RegistryError):
    """A watch asked for a revision etcd has compacted away: the reader must re-list."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted (compact revision {compact_revision})")
        self.compact_revision = compact_revision


class InvalidRecord(ValidationError):
    """A registry record does not parse or disagrees with its key; it is skipped, never fatal."""


_STATUS_BY_ERROR: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotInitialized, grpc.StatusCode.FAILED_PRECONDITION),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (RegistryUnavailable, grpc.StatusCode.UNAVAILABLE),
)


def grpc_status_for(error: BaseException) -> grpc.StatusCode:
    """The status code a component call answers with when it fails with ``error``."""
    for error_type, code in _STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return code
    return grpc.StatusCode.INTERNAL
