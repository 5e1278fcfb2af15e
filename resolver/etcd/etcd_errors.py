"""What went wrong talking to etcd, in one line: which endpoint, the cause, and the fix.

gRPC reports every failure to connect as ``UNAVAILABLE`` with a free-text detail, and
python3-etcd3 replaces even that with ``ConnectionFailedError("etcd connection failed")`` (the
original ``grpc.RpcError`` survives only as the exception's ``__context__``). So a refused
port, an unresolvable host, plain HTTP against a TLS etcd, a wrong CA and a missing client
certificate all used to read the same. This module digs out the gRPC detail and classifies it;
:func:`resolver.etcd.gateway.translate` uses it for every etcd error.

The classes (:class:`Cause`) are stable for tests and metrics; the wording is for operators.
The detail strings matched here are those of gRPC core (C) 1.6x with BoringSSL, as observed
against etcd 3.4/3.5 — an unknown detail falls through to the raw text, never to a bare
"failed".
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from enum import StrEnum

import etcd3.exceptions
import grpc

from resolver.etcd.connection import EtcdConnection


class Cause(StrEnum):
    REFUSED = "refused"
    NAME_NOT_FOUND = "name not found"
    TIMEOUT = "timeout"
    TLS_PLAIN_TO_TLS = "plain connection to a TLS etcd"
    TLS_TO_PLAIN = "TLS connection to a plain etcd"
    TLS_SERVER_REJECTED = "etcd's server certificate refused"
    TLS_CLIENT_REJECTED = "our client certificate refused"
    TLS_KEY_MISMATCH = "client certificate and key do not match"
    TLS_OTHER = "TLS handshake failed"
    AUTH_FAILED = "authentication failed"
    AUTH_REQUIRED = "authentication required"
    PERMISSION_DENIED = "permission denied"
    UNREACHABLE = "unreachable"
    OTHER = "other"


@dataclass(frozen=True)
class Diagnosis:
    cause: Cause
    endpoint: str
    explanation: str
    fix: str

    def message(self, what: str) -> str:
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"etcd {what} at {self.endpoint} failed: {self.explanation}{fix}"


_PEER = re.compile(r"\b(?:ipv4:|ipv6:)(\[[^\]]+\]:\d+|[\d.]+:\d+)")
_RESOLVING = re.compile(r"(?:errors resolving|DNS resolution failed for|lookup failed for)\s+([^\s:\]]+:?\d*)")


def find_rpc_error(error: BaseException) -> grpc.RpcError | None:
    """The ``grpc.RpcError`` behind ``error`` (python3-etcd3 raises its own types *while handling* it)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, grpc.RpcError) and callable(getattr(current, "code", None)):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _endpoints(connection: EtcdConnection | None) -> str:
    if connection is None or not connection.endpoints:
        return "the etcd endpoint"
    return ",".join(str(endpoint) for endpoint in connection.endpoints)


def _endpoint_in(details: str, connection: EtcdConnection | None) -> str:
    """The endpoint gRPC names in ``details`` (with our scheme when we know it), else the configured ones."""
    match = _PEER.search(details) or _RESOLVING.search(details)
    if match is None:
        return _endpoints(connection)
    found = match.group(1)
    configured = [str(endpoint) for endpoint in connection.endpoints] if connection is not None else []
    exact = [text for text in configured if text.endswith(f"//{found}")]
    same_host = [text for text in configured if _host(text) == _host(found)]
    return (exact or same_host or [found])[0]


def _host(endpoint: str) -> str:
    return endpoint.split("//", 1)[-1].rsplit(":", 1)[0]


def _user(connection: EtcdConnection | None) -> str:
    if connection is None:
        return "the configured user"
    if connection.username:
        return f"user {connection.username!r}"
    if connection.client_cert:
        return f"the user named by the common name (CN) of etcdClientCert={connection.client_cert}"
    return "an anonymous client"


def _key_pair_matches(connection: EtcdConnection) -> bool:
    """Whether the client certificate and key load as a pair (stdlib ssl: no extra dependency)."""
    try:
        ssl.create_default_context().load_cert_chain(connection.client_cert, connection.client_key)
    except (ssl.SSLError, OSError, ValueError):
        return False
    return True


def _tls(details: str, endpoint: str, connection: EtcdConnection | None) -> Diagnosis | None:
    text = details.upper()
    handshake = any(marker in text for marker in ("HANDSHAKE", "SSL_ERROR", "WRONG_VERSION_NUMBER"))
    tls = connection.tls if connection is not None else handshake
    if not tls and "SOCKET CLOSED" in text:
        return Diagnosis(Cause.TLS_PLAIN_TO_TLS, endpoint, "etcd closed a plain (non-TLS) connection during "
                         "connect: it probably serves TLS", "write the endpoint as https://HOST:PORT in "
                         "etcdEndpoints and set etcdCACert (and etcdClientCert/etcdClientKey)")
    if not tls:
        return None
    ca = ("etcdCACert" if connection is None else
          f"etcdCACert={connection.ca_cert}" if connection.ca_cert else "the system CAs (etcdCACert is unset)")
    if "WRONG_VERSION_NUMBER" in text or "HANDSHAKE READ FAILED" in text or "RECORD_TOO_LONG" in text \
            or ("SOCKET CLOSED" in text and "HANDSHAKE" in text):
        return Diagnosis(Cause.TLS_TO_PLAIN, endpoint, "TLS handshake failed: the endpoint does not speak TLS "
                         "(it is a plain-HTTP etcd)", "write the endpoint without https:// and leave etcdCACert "
                         "unset, or point etcdEndpoints at etcd's TLS port")
    if any(marker in text for marker in ("FAILED TO CREATE SECURITY HANDSHAKER", "INVALID PRIVATE KEY",
                                         "KEY_VALUES_MISMATCH")) \
            or (connection is not None and connection.client_cert and connection.client_key
                and "TLS HANDSHAKE" in text and not _key_pair_matches(connection)):
        files = (f"etcdClientCert={connection.client_cert} and etcdClientKey={connection.client_key}"
                 if connection is not None else "etcdClientCert and etcdClientKey")
        return Diagnosis(Cause.TLS_KEY_MISMATCH, endpoint, f"we could not start TLS: {files} do not belong "
                         "together (or the key is not a PEM private key)", "give the key that was issued "
                         "with that certificate")
    if any(marker in text for marker in ("CERTIFICATE_VERIFY_FAILED", "BAD_SIGNATURE", "UNABLE TO GET LOCAL ISSUER",
                                         "CERTIFICATE SIGNATURE FAILURE", "SELF SIGNED", "UNKNOWN CA ",
                                         "CERTIFICATE VERIFY FAILED")):
        return Diagnosis(Cause.TLS_SERVER_REJECTED, endpoint, f"TLS handshake failed on our side: etcd's server "
                         f"certificate is not signed by {ca}", "set etcdCACert to the CA that signed etcd's "
                         "server certificate (etcd's --trusted-ca-file CA)")
    if "PEER NAME" in text or ("HOSTNAME" in text and "MISMATCH" in text):
        return Diagnosis(Cause.TLS_SERVER_REJECTED, endpoint, "TLS handshake failed on our side: etcd's server "
                         "certificate is not issued for this host name", "use a host name or IP listed in the "
                         "server certificate's subjectAltName, or reissue it with this name")
    if any(marker in text for marker in ("ALERT_BAD_CERTIFICATE", "CERTIFICATE_REQUIRED", "ALERT_UNKNOWN_CA",
                                         "ALERT_HANDSHAKE_FAILURE", "ALERT_CERTIFICATE_UNKNOWN")):
        if connection is not None and not connection.client_cert:
            return Diagnosis(Cause.TLS_CLIENT_REJECTED, endpoint, "TLS handshake failed on etcd's side: etcd "
                             "requires a client certificate and none was sent", "set etcdClientCert and "
                             "etcdClientKey (etcd runs with --client-cert-auth)")
        cert = f"etcdClientCert={connection.client_cert}" if connection is not None else "our client certificate"
        return Diagnosis(Cause.TLS_CLIENT_REJECTED, endpoint, f"TLS handshake failed on etcd's side: etcd refused "
                         f"{cert} (missing, expired, or not signed by etcd's --trusted-ca-file CA)",
                         "issue the client certificate from the CA etcd trusts (scripts/gen_certs.py)")
    if "TLS HANDSHAKE" in text or "SSL HANDSHAKE" in text or "SSL_ERROR" in text:
        return Diagnosis(Cause.TLS_OTHER, endpoint, "TLS handshake failed: " + details.rsplit("last error: ", 1)[-1],
                         "check etcdCACert, etcdClientCert and etcdClientKey against etcd's TLS flags")
    return None


def diagnose(error: BaseException, connection: EtcdConnection | None = None, key: str = "") -> Diagnosis:
    """Classify an error raised by grpc/python3-etcd3 (see :class:`Cause`)."""
    rpc = find_rpc_error(error)
    code = rpc.code() if rpc is not None else None
    details = (rpc.details() if rpc is not None else "") or ""
    endpoint = _endpoint_in(details, connection)
    upper = details.upper()
    if code == grpc.StatusCode.PERMISSION_DENIED or "PERMISSION DENIED" in upper:
        where = f"on {key!r}{' and below' if key.endswith('/') else ''}" if key else "on this key range"
        return Diagnosis(Cause.PERMISSION_DENIED, endpoint, f"PERMISSION_DENIED for {_user(connection)} {where}",
                         "grant that user's role the range (dapr-etcd-resolver etcd-rbac prints the grants)")
    if "AUTHENTICATION FAILED" in upper or "INVALID USER ID OR PASSWORD" in upper:
        return Diagnosis(Cause.AUTH_FAILED, endpoint, f"authentication failed: etcd refused {_user(connection)} "
                         "(wrong user name or password)",
                         "check etcdUsername and etcdPassword (or DAPR_NR_ETCD_PASSWORD)")
    if "USER NAME IS EMPTY" in upper or "USER NAME NOT FOUND" in upper:
        return Diagnosis(Cause.AUTH_REQUIRED, endpoint, "etcd has authentication enabled and we sent no user",
                         "set etcdUsername/etcdPassword, or a client certificate whose CN is an etcd user")
    tls = _tls(details, endpoint, connection)
    if tls is not None:
        return tls
    if "CONNECTION REFUSED" in upper:
        return Diagnosis(Cause.REFUSED, endpoint, "connection refused (nothing listens there)",
                         "start etcd there, or correct etcdEndpoints")
    if _RESOLVING.search(details) or "DOMAIN NAME NOT FOUND" in upper or "NAME OR SERVICE NOT KNOWN" in upper:
        return Diagnosis(Cause.NAME_NOT_FOUND, endpoint, f"host name {_host(endpoint)!r} not found in DNS",
                         "correct the host in etcdEndpoints")
    timeout = connection.timeout if connection is not None else None
    if code == grpc.StatusCode.DEADLINE_EXCEEDED or isinstance(error, etcd3.exceptions.ConnectionTimeoutError):
        within = f" within etcdTimeout={timeout:g}s" if timeout else ""
        return Diagnosis(Cause.TIMEOUT, endpoint, f"no answer{within}", "check the network path and that etcd is "
                         "not overloaded or frozen; raise etcdTimeout if answers are merely slow")
    if isinstance(error, etcd3.exceptions.NoServerAvailableError) or "failed node" in str(error):
        return Diagnosis(Cause.UNREACHABLE, endpoint, "every endpoint failed in the last second (see the previous "
                         "error)", "wait for etcd or correct etcdEndpoints")
    if rpc is not None:
        name = code.name if code is not None else "error"
        return Diagnosis(Cause.UNREACHABLE if code == grpc.StatusCode.UNAVAILABLE else Cause.OTHER, endpoint,
                         f"{name}: {details or 'no details'}", "")
    return Diagnosis(Cause.OTHER, endpoint, f"{type(error).__name__}: {error}", "")
