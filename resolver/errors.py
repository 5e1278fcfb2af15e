"""The package's one exception tree, and the one way a value is shown in a message.

Every error raised on purpose derives from :class:`ResolverError`, and every class of the tree
is defined here, so this module is the whole map (as httpx's ``_exceptions`` is)::

    ResolverError
    ├── ValidationError (also a ValueError)
    │   ├── ConfigError
    │   │   ├── ConfigValueError
    │   │   └── FlagError
    │   ├── InvalidRequest
    │   └── InvalidRecord
    │       └── RefusedAddress
    ├── InventoryError (also a ValueError)
    │   └── NoEndpoints
    ├── LimitReached
    ├── NotInitialized
    ├── NotFound
    ├── RegistryError
    │   ├── RegistryUnavailable
    │   ├── RegistrationRefused
    │   ├── LeaseNotFound
    │   └── RegistryCompacted
    ├── KubeError
    │   ├── Gone
    │   └── Forbidden
    ├── ClusterConflict
    ├── SocketInUse
    ├── UnsafeSocketDir
    └── EtcdNotInstalled

Errors of dependencies (grpc, etcd3, kubernetes) are translated where they are caught — etcd's
in :mod:`resolver.etcd.gateway`, the API server's in :mod:`resolver.publisher.kube_source` — so
callers handle our types only. This is the bottom layer: it imports nothing of the project and
knows no protocol; what a gRPC caller is answered for each class is the table of
:mod:`resolver.component.grpc_status`, and what the command line prints and exits with is
:func:`resolver.cli.common.describe_error`.
"""

from __future__ import annotations

SHOWN_CHARS = 80
"""The most characters of a value :func:`shown` puts in a message."""


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how long it was when cut.

    Why: a message that echoes what it refuses must not echo 18 KB back (to a log line, a gRPC
    status detail with its metadata limit, or a terminal), yet must still show enough of the value
    to recognize it — and ``repr`` makes spaces, quotes and control characters visible.
    """
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}... ({len(text)} chars)"


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


class InventoryError(ResolverError, ValueError):
    """An inventory document as a whole is unusable (unreadable, not YAML/JSON, not a list): the
    file source keeps the last good state. Also a ``ValueError``, as it always was, so code that
    treats any unparsable input alike still does."""


class NoEndpoints(InventoryError):
    """Empty, comment-only, ``~``, ``{}`` or ``endpoints:`` without a list: what a truncating editor
    leaves behind, never a wish to withdraw the cluster — keep the last good state."""


class KubeError(ResolverError):
    """The Kubernetes API server failed or could not be reached; the reflector retries."""


class Gone(KubeError):
    """410: the resourceVersion (or continue token) expired — re-list."""


class Forbidden(KubeError):
    """403: this service account may not read that resource."""


class ClusterConflict(ResolverError):
    """The cluster name is held by a live publisher of another cluster identity."""

    def __init__(self, cluster: str, ours: str, theirs: str, holder: str) -> None:
        self.cluster, self.ours, self.theirs, self.holder = cluster, ours, theirs, holder
        super().__init__(
            f"cluster name {cluster!r} is already published by another cluster (identity {theirs}"
            f"{', publisher ' + holder if holder else ''}); this publisher's identity is {ours}, so it "
            f"refuses to touch {cluster!r}'s records. Fix: give this cluster its own --cluster name, or, if it "
            f"really is the same cluster, start it with --cluster-uid {theirs}")


class SocketInUse(ResolverError):
    """Another live server answers on the component socket, or the path is not a socket."""


class UnsafeSocketDir(ResolverError):
    """The socket directory is not safe or not usable (owner, type, permissions, path length)."""


class EtcdNotInstalled(ResolverError):
    """No ``etcd``/``etcdctl`` binary for the throw-away local etcd (demo, tests)."""
