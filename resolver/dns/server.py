"""The DNS bridge's transports: UDP and TCP around :class:`~resolver.dns.service.DnsService`.

* **UDP**: everything that needs no lookup — cache hits and misses alike — is answered inside
  ``datagram_received``, with no task per datagram (a task costs more than a cached answer).
  Only a query waiting for a host lookup becomes a task, and those are capped
  (``DnsLimits.pending``).
* **TCP** (RFC 7766): length-prefixed messages, several per connection, answered in order.
  A client costs itself, not others: at most ``tcp_connections`` at once (more are closed at
  accept); ``tcp_idle`` to start the next message; ``tcp_read`` to finish one once its first
  byte arrived (a client stalled mid-length-prefix is dropped); ``tcp_write`` for a reply to
  drain, with a 16 KB write buffer and a 16 KB kernel send buffer (loopback would otherwise
  absorb megabytes of replies first), so a client that sends queries and never reads is cut
  off and its buffers freed — the idle timer cannot see that case: such a client is never idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct

from resolver.dns.limits import LIMITS, DnsLimits
from resolver.dns.service import Deferred, DnsService, formerr_for
from resolver.observability import metrics

__all__ = ["DnsService", "formerr_for", "start_dns"]

log = logging.getLogger(__name__)

WRITE_BUFFER_HIGH = 16 * 1024
KERNEL_SEND_BUFFER = 16 * 1024
READ_BUFFER = 16 * 1024
"""Reading pauses at twice this much unread input (asyncio's default would let 128 KB queue up)."""


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, service: DnsService) -> None:
        self.service = service
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        service = self.service
        if service.caching:
            hit = service.cached(data, "udp")
            if hit is not None:
                self.transport.sendto(hit, addr)  # type: ignore[union-attr]
                return
        try:
            result = service.answer_now(data, "udp", check_cache=False)
        except Exception:
            log.exception("DNS query failed unexpectedly")
            return
        if isinstance(result, Deferred):
            task = asyncio.ensure_future(self._later(result, addr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif result is not None and self.transport is not None:
            self.transport.sendto(result, addr)

    async def _later(self, deferred: Deferred, addr: tuple[str, int]) -> None:
        try:
            reply = await self.service.complete(deferred)
        except Exception:
            log.exception("DNS query failed unexpectedly")
            return
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class TcpClients:
    """The TCP side: one coroutine per connection, counted against the cap."""

    def __init__(self, service: DnsService, limits: DnsLimits) -> None:
        self.service = service
        self.limits = limits
        self.open = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= self.limits.tcp_connections:
            LIMITS.reached("tcp_connections", f"{self.open} TCP connections open; closing a new one")
            writer.transport.abort()
            return
        self.open += 1
        metrics.DNS_TCP_CONNECTIONS.inc()
        writer.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        sock = writer.get_extra_info("socket")
        if sock is not None:  # a small kernel buffer too, or it absorbs megabytes before a write ever waits
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER)
        abort = False
        try:
            abort = await self._conversation(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            abort = True
        except Exception:
            log.exception("DNS TCP connection failed unexpectedly")
            abort = True
        finally:
            self.open -= 1
            metrics.DNS_TCP_CONNECTIONS.dec()
            if abort:
                writer.transport.abort()
            else:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), self.limits.tcp_write)

    async def _conversation(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve messages until the client goes; True if the connection must be aborted."""
        limits = self.limits
        while True:
            try:
                first = await asyncio.wait_for(reader.read(1), limits.tcp_idle)
            except TimeoutError:
                metrics.DNS_LIMIT_REACHED.labels("tcp_idle").inc()  # routine: counted, not logged
                return False
            if not first:
                return False
            try:
                async with asyncio.timeout(limits.tcp_read):
                    rest = await reader.readexactly(1)
                    (length,) = struct.unpack("!H", first + rest)
                    wire = await reader.readexactly(length)
            except TimeoutError:
                LIMITS.reached("tcp_read", f"a TCP client stalled mid-message for {limits.tcp_read:g}s")
                return True
            reply = await self.service.handle(wire, "tcp")
            if reply is None:
                continue
            writer.write(struct.pack("!H", len(reply)) + reply)
            try:
                async with asyncio.timeout(limits.tcp_write):
                    await writer.drain()
            except TimeoutError:
                LIMITS.reached("tcp_write", f"a TCP client read nothing for {limits.tcp_write:g}s")
                return True


async def start_dns(service: DnsService, host: str, port: int,
                    ) -> tuple[asyncio.DatagramTransport, asyncio.Server]:
    """Bind UDP and TCP on ``host:port`` (port 0: a free port, the same for both)."""
    loop = asyncio.get_running_loop()
    clients = TcpClients(service, service.limits)
    server = await asyncio.start_server(clients.serve, host, port, backlog=512, limit=READ_BUFFER)
    bound_port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(service), local_addr=(host, bound_port))
    return transport, server
