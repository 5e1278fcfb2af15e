"""The HTTP side: Consul's routes, status codes, headers and blocking queries, on ``ThreadingHTTPServer``.

Why the standard library's threaded server: the endpoints are few, bodies are small JSON, and a
blocking query is simplest as a thread that waits on a condition (:class:`~resolver.consul.index.ChangeFeed`);
threads are bounded by the connection and blocking caps (:mod:`resolver.consul.limits`). No new
dependency (README "Dependencies, and why").

Routes (anything else is ``404 page not found``, as Consul's mux answers; other methods on a
served path are ``405``):

* ``GET /v1/agent/self`` — Dapr's Init calls it; a JSON object of objects, what consul/api decodes.
* ``GET /v1/health/service/:service`` — the app's weighted entries (:mod:`resolver.consul.catalog`).
* ``GET /v1/health/state/:state`` — ``any``/``passing``: one passing check per entry of the apps
  the ``filter`` names (:mod:`resolver.consul.filters`), or of every app in the namespace without
  one; ``warning``/``critical``: always empty (a registry record is there or it is not).
* ``GET /v1/status/leader`` — this catalog's own address, so a client that checks for a leader finds one.
* ``PUT /v1/agent/service/register`` and ``PUT /v1/agent/service/deregister/:id`` — self-registration
  (:mod:`resolver.consul.agent`): ``200`` with an empty body as Consul answers, ``400`` naming the
  bad field, ``404`` for an unknown ID, ``429`` over ``--max-registrations``; they need the write
  token (``--write-token-file``), else ``403``.

The two health routes are blocking queries: with ``index`` equal to the current index the
request waits (up to ``wait``) until *its own answer* changes, then answers with the new index;
any other ``index`` is answered at once (see :mod:`resolver.consul.index` for why that is
exact). Every health answer carries ``X-Consul-Index``, ``X-Consul-KnownLeader: true`` and
``X-Consul-LastContact: 0`` — consul/api refuses an answer without the last one.

An optional read token (``--token-file``) is compared in constant time against
``X-Consul-Token``, ``Authorization: Bearer`` or ``?token=``; missing or wrong is ``403``. The
write token is accepted for reads too: Dapr's resolver sends one ``client.token`` for both.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from resolver import __version__
from resolver.consul.agent import Agent
from resolver.consul.catalog import Catalog, Entry
from resolver.consul.filters import service_names
from resolver.consul.index import ChangeFeed
from resolver.consul.limits import LIMITS, ConsulLimits
from resolver.consul.params import Query, parse_query
from resolver.consul.tokens import Tokens
from resolver.errors import InvalidRequest, LimitReached, RegistrationRefused, ValidationError, shown
from resolver.observability import metrics
from resolver.records import names

log = logging.getLogger(__name__)

STATES = ("any", "passing", "warning", "critical")
NOT_FOUND = b"404 page not found\n"  # Go's http.NotFound, what Consul's mux answers
_CAP_TEXT = b"too many connections (--max-connections)\n"
OVER_CONNECTION_CAP = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: "
                       + str(len(_CAP_TEXT)).encode() + b"\r\nConnection: close\r\n\r\n" + _CAP_TEXT)


class CatalogServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], catalog: Catalog, feed: ChangeFeed, limits: ConsulLimits,
                 namespace: str, datacenter: str, token: str = "", agent: Agent | None = None,
                 write_token: str = "") -> None:
        super().__init__(address, CatalogHandler)
        self.agent = agent
        self.catalog = catalog
        self.feed = feed
        self.limits = limits
        self.namespace = namespace
        self.datacenter = datacenter
        self.tokens = Tokens.of(token, write_token)
        self._connections = threading.BoundedSemaphore(limits.max_connections)
        self._blocking = 0
        self._blocking_lock = threading.Lock()

    # -- connection cap ------------------------------------------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connections.acquire(blocking=False):
            LIMITS.reached("connections", f"{self.limits.max_connections} connections already open")
            with contextlib.suppress(OSError):
                request.sendall(OVER_CONNECTION_CAP)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that broke outside a request (reset, timeout): one debug line, no traceback."""
        log.debug("consul catalog: connection from %s ended with an error", client_address, exc_info=True)

    # -- blocking-query cap --------------------------------------------------------------------

    def start_blocking(self) -> bool:
        with self._blocking_lock:
            if self._blocking >= self.limits.max_blocking:
                return False
            self._blocking += 1
        metrics.CONSUL_BLOCKING.inc()
        return True

    def end_blocking(self) -> None:
        with self._blocking_lock:
            self._blocking -= 1
        metrics.CONSUL_BLOCKING.dec()


class _Refusal(Exception):
    """An answer other than 200: a status code and a one-line message; caught in CatalogHandler._serve."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class CatalogHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the second waits for the client's
    # delayed ACK: every answer took ~44 ms, added to each daprd call with useCache off
    # (bench/consul_watchers.py). TCP_NODELAY: 0.26 ms per ResolveID.
    disable_nagle_algorithm = True
    server_version = "dapr-etcd-resolver-consul/" + __version__
    sys_version = ""
    server: CatalogServer

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.limits.idle_timeout)  # an idle keep-alive connection ends then

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # -- methods -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        path, _, raw_query = self.path.partition("?")
        endpoint, allowed, route = self._route(path)
        code = 200
        try:
            self._body = self._check_size()
            if route is None:
                raise _Refusal(404, NOT_FOUND.decode().strip())
            if method != allowed:
                raise _Refusal(405, f"method {method} not allowed")
            query = parse_query(raw_query, self.server.namespace, self.server.limits)
            if allowed == "PUT":
                self._check_write_token(query)
            else:
                self._check_token(query)
            route(query)
        except _Refusal as refusal:
            code = refusal.code
            self._text(code, refusal.args[0] + "\n")
        except ValidationError as error:
            code = 400
            self._text(code, f"{error}\n")
        except OSError:
            code = 499  # the client went away (a blocking query it gave up): nothing to answer
            self.close_connection = True
        except Exception as error:  # never a traceback to the client, and never a dead connection thread
            code = 500
            log.exception("consul catalog: %s %s failed", method, shown(self.path))
            self._text(code, f"internal error: {type(error).__name__}\n")
        finally:
            metrics.CONSUL_REQUESTS.labels(endpoint, str(code)).inc()

    def _route(self, path: str) -> tuple[str, str, Callable[[Query], None] | None]:
        """``(endpoint label, the one method served, handler)``; no handler: 404."""
        if path == "/v1/agent/self":
            return "agent_self", "GET", self._agent_self
        if path == "/v1/status/leader":
            return "status_leader", "GET", self._leader
        if path == "/v1/agent/service/register":
            return "agent_service_register", "PUT", self._register
        for prefix, endpoint, method, handler in (
                ("/v1/health/service/", "health_service", "GET", self._health_service),
                ("/v1/health/state/", "health_state", "GET", self._health_state),
                ("/v1/agent/service/deregister/", "agent_service_deregister", "PUT", self._deregister)):
            if path.startswith(prefix):
                return endpoint, method, partial(handler, unquote(path[len(prefix):]))
        return "other", "GET", None

    def _check_size(self) -> bytes:
        cap = self.server.limits.max_request_bytes
        if len(self.requestline) > cap:
            LIMITS.reached("request_size", f"request line of {len(self.requestline)} bytes")
            self.close_connection = True
            raise _Refusal(414, f"request line longer than {cap} bytes (--max-request-bytes)")
        length_text = self.headers.get("Content-Length", "0")
        length = int(length_text) if length_text.isascii() and length_text.isdigit() else cap + 1
        if length > cap:
            LIMITS.reached("request_size", f"body of {shown(length_text)} bytes")
            self.close_connection = True
            raise _Refusal(413, f"request body larger than {cap} bytes (--max-request-bytes)")
        return self.rfile.read(length) if length else b""

    def _given_token(self, query: Query) -> str:
        given = self.headers.get("X-Consul-Token") or query.token
        bearer = self.headers.get("Authorization", "")
        if not given and bearer.lower().startswith("bearer "):
            given = bearer[7:].strip()
        return given

    def _check_token(self, query: Query) -> None:
        refusal = self.server.tokens.read_refusal(self._given_token(query))
        if refusal is not None:
            raise _Refusal(403, refusal)

    def _check_write_token(self, query: Query) -> None:
        refusal = self.server.tokens.write_refusal(self._given_token(query))
        if refusal is not None or self.server.agent is None:
            raise _Refusal(403, refusal or "Permission denied: self-registration is off")

    # -- routes --------------------------------------------------------------------------------

    def _address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return (host if isinstance(host, str) else bytes(host).decode()), int(port)

    def _agent_self(self, query: Query) -> None:
        host, port = self._address()
        name = "dapr-etcd-resolver"
        self._json(200, {
            "Config": {"Datacenter": self.server.datacenter, "PrimaryDatacenter": self.server.datacenter,
                       "NodeName": name, "NodeID": "", "Server": False, "Revision": "",
                       "Version": f"0.0.0+dapr-etcd-resolver.{__version__}", "BuildDate": ""},
            "Member": {"Name": name, "Addr": host, "Port": port, "Tags": {}, "Status": 1},
            "Meta": {"dapr-etcd-resolver": __version__},
            "Stats": {}, "DebugConfig": {}, "xDS": {},
        }, {})

    def _leader(self, query: Query) -> None:
        host, port = self._address()
        self._json(200, f"{host}:{port}", {})

    def _health_service(self, service: str, query: Query) -> None:
        if not service:
            raise _Refusal(400, "Missing service name")
        if query.filter:
            raise InvalidRequest("filter", f"{shown(query.filter)}: filters on /v1/health/service are not "
                                 "supported; remove queryOptions.filter from the resolver's configuration")
        namespace = self._namespace(query)
        catalog = self.server.catalog

        def compute() -> tuple[Entry, ...]:
            if query.tags:
                return ()  # no registry entry has tags
            try:
                target = catalog.target(service, namespace)
            except ValidationError:
                return ()  # not an app id: no such service, as Consul answers an unknown one
            return catalog.entries(target, service, self.client_address[0])

        self._blocking_answer(query, compute, catalog.services_json)

    def _health_state(self, state: str, query: Query) -> None:
        if state not in STATES:
            raise _Refusal(400, f"Invalid state {shown(state)}: give one of {', '.join(STATES)}")
        namespace = self._namespace(query)
        catalog = self.server.catalog
        wanted = service_names(query.filter) if query.filter else None

        def compute() -> tuple[Entry, ...]:
            if state in ("warning", "critical"):
                return ()
            services = wanted if wanted is not None else tuple(
                app for ns, app in catalog.resolver.reader.cache.app_keys() if ns == namespace)
            found: list[Entry] = []
            for service in services:
                try:
                    target = catalog.target(service, namespace)
                except ValidationError:
                    continue  # never in the registry: no checks (a watcher of one bad name must not fail all)
                found.extend(catalog.entries(target, service, self.client_address[0]))
            return tuple(found)

        self._blocking_answer(query, compute, catalog.checks_json)

    def _namespace(self, query: Query) -> str:
        try:
            return names.check_label(query.namespace, "ns")
        except ValidationError as error:
            raise InvalidRequest("ns", error.message) from None

    def _register(self, query: Query) -> None:
        agent = self.server.agent
        assert agent is not None  # _check_write_token refused otherwise
        registration = agent.parse(self._body)
        try:
            agent.register(registration)
        except LimitReached as error:
            raise _Refusal(429, f"{error}; deregister one first") from None
        except RegistrationRefused as error:
            raise _Refusal(500, str(error)) from None
        self._send(200, b"", "text/plain; charset=utf-8", {})

    def _deregister(self, service_id: str, query: Query) -> None:
        agent = self.server.agent
        assert agent is not None
        if not agent.deregister(service_id):
            raise _Refusal(404, f"Unknown service ID {shown(service_id)}. Ensure that the service ID is passed, "
                          "not the service name.")
        self._send(200, b"", "text/plain; charset=utf-8", {})

    # -- blocking queries ----------------------------------------------------------------------

    def _blocking_answer(self, query: Query, compute: Callable[[], tuple[Entry, ...]],
                         render: Callable[[tuple[Entry, ...], int], list[dict[str, Any]]]) -> None:
        feed = self.server.feed
        index = feed.current()  # read before computing: an index is never newer than its answer
        entries = compute()
        if query.index and query.index == index and feed.current() == index:
            entries, index = self._wait_for_change(query, compute, entries, index)
        self._json(200, render(entries, index), {"X-Consul-Index": str(index)})

    def _wait_for_change(self, query: Query, compute: Callable[[], tuple[Entry, ...]],
                         base: tuple[Entry, ...], index: int) -> tuple[tuple[Entry, ...], int]:
        server = self.server
        if not server.start_blocking():
            LIMITS.reached("blocking", f"{server.limits.max_blocking} blocking queries already wait")
            raise _Refusal(429, f"too many blocking queries in flight (cap {server.limits.max_blocking}, "
                          "--max-blocking); retry later")
        try:
            deadline = time.monotonic() + query.wait
            seen = index
            while not server.feed.stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                now = server.feed.wait_past(seen, left)
                if now == seen:
                    continue
                seen = now
                latest = compute()
                if latest != base:
                    return latest, seen
            seen = server.feed.current()
            return compute(), seen
        finally:
            server.end_blocking()

    # -- writing -------------------------------------------------------------------------------

    def _json(self, code: int, body: object, headers: dict[str, str]) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        extra = {"X-Consul-KnownLeader": "true", "X-Consul-LastContact": "0",
                 "X-Consul-Default-ACL-Policy": "deny" if self.server.tokens.read_required else "allow", **headers}
        self._send(code, data, "application/json", extra)

    def _text(self, code: int, message: str) -> None:
        self._send(code, message.encode(errors="replace"), "text/plain; charset=utf-8", {})

    def _send(self, code: int, data: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

