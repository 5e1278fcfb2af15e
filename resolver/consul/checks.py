"""Running a registration's HTTP check, as a Consul agent does, without becoming anyone's proxy.

:mod:`~resolver.consul.registration` already refused every check URL whose host is not the
registration's own ``Address``. Here the request itself is kept to that address:

* a host name is resolved once per run and the connection goes to the first resolved address
  the address policy allows (``clusterCIDRs``, no metadata, link-local or — without
  ``allowLoopback`` — loopback addresses); the name is still sent as ``Host`` and as the TLS
  server name. A name resolving only to refused addresses fails the check (reason ``address``).
* redirects are not followed (``http.client`` never follows them): a ``3xx`` is a failure, as
  any answer outside ``2xx`` is. Consul counts ``429`` as *warning*; the resolver asks for
  passing instances only, so here it fails the check like any other status.
* at most 4 KiB of the answer is read (Consul keeps 4 KiB of output), within the check's
  timeout; nothing of it is returned to the registering client.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass

from resolver.consul.registration import HttpCheck
from resolver.records.addresses import AddressPolicy

USER_AGENT = "Consul Health Check"
"""What Consul's agent sends: a health endpoint that logs or filters by it sees the same."""
MAX_OUTPUT = 4096


@dataclass(frozen=True, slots=True)
class Outcome:
    passing: bool
    reason: str  # "" when passing; else status, timeout, error or address (the failures counter's label)
    output: str  # one line for the log


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to a fixed IP, whatever ``host`` says (Host header and TLS name)."""

    def __init__(self, host: str, port: int, timeout: float, ip: str, context: ssl.SSLContext | None,
                 server_name: str) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip
        self._context = context
        self._server_name = server_name or host

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        if self._context is not None:
            sock = self._context.wrap_socket(sock, server_hostname=self._server_name)
        self.sock = sock


def pinned_address(check: HttpCheck, cluster: str, policy: AddressPolicy) -> str:
    """The IP the check connects to; ValueError saying why none is allowed."""
    try:
        ips = [ipaddress.ip_address(check.host)]
    except ValueError:
        try:
            found = socket.getaddrinfo(check.host, check.port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise ValueError(f"cannot resolve {check.host}: {error}") from None
        ips = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in found]
    reasons = []
    for ip in ips:
        reason = policy.ip_refusal(cluster, ip)
        if reason is None:
            return str(ip)
        reasons.append(reason)
    raise ValueError(f"{check.host} has no address the policy allows ({'; '.join(reasons) or 'none found'})")


def run_check(check: HttpCheck, cluster: str, policy: AddressPolicy) -> Outcome:
    """One run of ``check``: passing on a 2xx answer within the timeout, else a reason."""
    try:
        ip = pinned_address(check, cluster, policy)
    except ValueError as error:
        return Outcome(False, "address", str(error))
    context = None
    if check.scheme == "https":
        context = ssl.create_default_context()
        if check.tls_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    connection = _PinnedConnection(check.host, check.port, check.timeout, ip, context, check.tls_server_name)
    try:
        connection.putrequest(check.method, check.target)
        for name, value in (("User-Agent", USER_AGENT), ("Accept", "text/plain, text/*, */*"), *check.headers):
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        response.read(MAX_OUTPUT)
        status = response.status
    except TimeoutError:
        return Outcome(False, "timeout", f"{check.method} {check.url}: no answer within {check.timeout:g}s")
    except (OSError, http.client.HTTPException) as error:
        return Outcome(False, "error", f"{check.method} {check.url}: {type(error).__name__}: {error}")
    finally:
        connection.close()
    if 200 <= status < 300:
        return Outcome(True, "", f"{check.method} {check.url}: {status}")
    return Outcome(False, "status", f"{check.method} {check.url}: {status} (only 2xx passes)")


class CheckState:
    """Consecutive results of one check → its status, with Consul's thresholds.

    ``SuccessBeforePassing`` / ``FailuresBeforeCritical`` of 0 (Consul's defaults, and what
    Dapr sends) mean the first result decides: **critical after the first failure**, passing
    after the first success. A new check is critical until it first passes, unless its
    registration said ``Status: passing``.
    """

    def __init__(self, check: HttpCheck, now: float) -> None:
        self.check = check
        self.passing = check.passing_at_start
        self.critical_since: float | None = None if self.passing else now
        self._successes = 0
        self._failures = 0

    def record(self, outcome: Outcome, now: float) -> None:
        if outcome.passing:
            self._failures = 0
            self._successes += 1
            if self._successes >= max(1, self.check.successes_before_passing):
                self.passing, self.critical_since = True, None
        else:
            self._successes = 0
            self._failures += 1
            if self._failures >= max(1, self.check.failures_before_critical) and self.passing:
                self.passing, self.critical_since = False, now

    def expired(self, now: float) -> bool:
        """Critical for longer than ``DeregisterCriticalServiceAfter`` (never, without one)."""
        after = self.check.deregister_after
        return bool(after) and self.critical_since is not None and now - self.critical_since >= after
