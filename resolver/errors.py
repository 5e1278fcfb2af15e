"""The package's one exception hierarchy, and its one mapping to gRPC status codes.

Every error raised on purpose derives from :class:`ResolverError`. Errors of dependencies
(grpc, etcd3, kubernetes) are translated where they are caught — etcd's in
:mod:`resolver.etcd.gateway` — so callers handle our types only, and the component maps
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
        if key.startswith("--"):  # a flag is named as a flag, wherever it is raised
            self.args = (f"invalid {key}: {message}",)
        else:
            self.args = (f"invalid configuration key {key!r}{where}: {message}",)

    def __str__(self) -> str:
        return str(self.args[0])


class ConfigValueError(ConfigError):
    """A *known* configuration key has a bad value: "invalid value for X", never "invalid key"."""

    def __init__(self, key: str, message: str, source: str = "") -> None:
        super().__init__(key, message, source)
        where = f" (from {source})" if source else ""
        self.args = (f"invalid value for {key!r}{where}: {message}",)


class FlagError(ConfigError):
    """A command-line flag (``--config``, ``--set``, ``--socket-dir``…) is bad; named as a flag."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(flag, message, "command line")
        self.args = (f"invalid {flag}: {message}",)


class LimitReached(ResolverError):
    """A process-level limit (instances, registries, streams, first-sync waits) is full."""


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


class RegistrationRefused(RegistryError):
    """etcd refused a self-registration write (permission denied, bad credentials): retrying won't help."""


class LeaseNotFound(RegistryError):
    """A write named a lease etcd no longer has (expired or revoked): re-register on a new one."""


class RegistryCompacted(RegistryError):
    """A watch asked for a revision etcd has compacted away: the reader must re-list."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted (compact revision {compact_revision})")
        self.compact_revision = compact_revision


class InvalidRecord(ValidationError):
    """A registry record does not parse or disagrees with its key; it is skipped, never fatal."""


class RefusedAddress(InvalidRecord):
    """A well-formed record whose address the address policy refuses (loopback, metadata, …)."""


_STATUS_BY_ERROR: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotInitialized, grpc.StatusCode.FAILED_PRECONDITION),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (LimitReached, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (RegistrationRefused, grpc.StatusCode.PERMISSION_DENIED),
    (RegistryUnavailable, grpc.StatusCode.UNAVAILABLE),
)


def grpc_status_for(error: BaseException) -> grpc.StatusCode:
    """The status code a component call answers with when it fails with ``error``."""
    for error_type, code in _STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return code
    return grpc.StatusCode.INTERNAL
