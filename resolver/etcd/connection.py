"""What identifies one etcd connection: endpoints, key prefix, timeout, credentials.

Parsed from settings by :mod:`resolver.config`, used by every part that talks to etcd; it lives
with the etcd client so that client depends on nothing above it (config imports this module,
never the other way round).
"""

from __future__ import annotations

from dataclasses import dataclass

from resolver.records import names


@dataclass(frozen=True)
class EtcdEndpoint:
    """One etcd client URL: ``host:port`` (plain) or ``https://host:port`` (TLS)."""

    host: str
    port: int
    secure: bool = False

    def __str__(self) -> str:
        return f"{'https' if self.secure else 'http'}://{names.join_host_port(self.host, self.port)}"


@dataclass(frozen=True)
class EtcdConnection:
    """Everything that identifies one etcd connection; hashable so readers can be shared."""

    endpoints: tuple[EtcdEndpoint, ...]
    prefix: str
    timeout: float
    username: str = ""
    password: str = ""
    ca_cert: str = ""
    client_cert: str = ""
    client_key: str = ""

    def __repr__(self) -> str:  # never show the password in logs
        return (f"EtcdConnection(endpoints={','.join(map(str, self.endpoints))}, prefix={self.prefix!r}, "
                f"user={self.username or '-'}, tls={'yes' if self.tls else 'no'})")

    @property
    def tls(self) -> bool:
        return bool(self.ca_cert) or any(endpoint.secure for endpoint in self.endpoints)
