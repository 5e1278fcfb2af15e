"""The DNS bridge's transports: asyncio UDP and TCP around :class:`~resolver.dns.answers.DnsAnswers`.

* UDP answers fit in 512 bytes, or the client's EDNS0 payload size (capped at 1232, the
  DNS-flag-day value); bigger answers are truncated with TC set, and the client retries
  over TCP.
* Malformed packets: answered ``FORMERR`` when the header can be read, dropped otherwise;
  never an exception out of the loop. Only standard queries with one question in class IN are
  answered (``NOTIMP`` / ``FORMERR`` / ``REFUSED`` otherwise).
* Record order is ours (``want_shuffle=False``): dnspython would shuffle an RRset on the
  wire, undoing the weighted order of A/AAAA answers.
* A response cache keyed by the query's bytes after its ID (question, flags, EDNS) serves
  repeated questions without parsing them: an entry is valid while the registry's revision
  is unchanged (so answers still change with the very next watch event) and for at most
  :data:`CACHE_SECONDS`. Each entry keeps up to :data:`VARIANTS` independently ordered
  responses and replaces one with a freshly drawn order on 1 hit in :data:`REFRESH_EVERY`,
  so the first address clients see still follows the weights in the long run.
* TCP: length-prefixed messages, several per connection, 10 s idle timeout.
* The fallback name is looked up through the system resolver without blocking the loop
  (``getaddrinfo`` in a thread, 2 s timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import time
from dataclasses import dataclass

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from resolver.dns.answers import Answer, DnsAnswers
from resolver.observability import metrics

log = logging.getLogger(__name__)

UDP_DEFAULT_PAYLOAD = 512
UDP_MAX_PAYLOAD = 1232
OUR_EDNS_PAYLOAD = 1232
TCP_IDLE_SECONDS = 10.0
FALLBACK_LOOKUP_SECONDS = 2.0
CACHE_SECONDS = 1.0
CACHE_ENTRIES = 10_000
VARIANTS = 8
REFRESH_EVERY = 8


def formerr_for(wire: bytes) -> bytes | None:
    """A bare FORMERR reply to an unparseable packet, if at least its header can be read."""
    if len(wire) < 12:
        return None
    query_id, flags = struct.unpack("!HH", wire[:4])
    if flags & dns.flags.QR:
        return None  # a response, not a query: never answer (no reflection loops)
    reply_flags = dns.flags.QR | (flags & (dns.flags.RD | 0x7800)) | dns.rcode.FORMERR
    return struct.pack("!HHHHHH", query_id, reply_flags, 0, 0, 0, 0)


@dataclass
class _Cached:
    revision: int
    expires: float
    variants: list[bytes]


class DnsService:
    def __init__(self, answers: DnsAnswers, rng: random.Random | None = None, cache: bool = True) -> None:
        self.answers = answers
        self.rng = rng or random.Random()
        self.caching = cache
        self._cache: dict[tuple[str, bytes], _Cached] = {}

    async def handle(self, wire: bytes, transport: str) -> bytes | None:
        """Answer one query (``None``: send nothing)."""
        if len(wire) <= 12 or not self.caching:
            return await self._compute(wire, transport)
        key = (transport, wire[2:])
        revision = self.answers.resolver.reader.cache.revision
        now = time.monotonic()
        entry = self._cache.get(key)
        if entry is None or entry.revision != revision or now >= entry.expires:
            entry = None
        elif len(entry.variants) >= VARIANTS and self.rng.randrange(REFRESH_EVERY):
            metrics.DNS_QUERIES.labels("cached", transport).inc()
            return wire[:2] + self.rng.choice(entry.variants)[2:]
        reply = await self._compute(wire, transport)
        if reply is None or reply[3] & 0x0F == dns.rcode.FORMERR:
            return reply
        if entry is None:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[key] = _Cached(revision, now + CACHE_SECONDS, [reply])
        elif len(entry.variants) < VARIANTS:
            entry.variants.append(reply)
        else:
            entry.variants[self.rng.randrange(VARIANTS)] = reply
        return reply

    async def _compute(self, wire: bytes, transport: str) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # any parse failure of untrusted input
            metrics.DNS_QUERIES.labels("FORMERR", transport).inc()
            return formerr_for(wire)
        if query.flags & dns.flags.QR:
            return None
        try:
            response = await self._respond(query)
        except Exception:
            log.exception("DNS query failed unexpectedly")
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
        metrics.DNS_QUERIES.labels(dns.rcode.to_text(response.rcode()), transport).inc()
        if transport == "udp":
            limit = min(max(query.payload, UDP_DEFAULT_PAYLOAD), UDP_MAX_PAYLOAD) if query.edns >= 0 \
                else UDP_DEFAULT_PAYLOAD
            return response.to_wire(max_size=limit, prefer_truncation=True, want_shuffle=False)
        return response.to_wire(max_size=65535, prefer_truncation=True, want_shuffle=False)

    async def _respond(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query, our_payload=OUR_EDNS_PAYLOAD)
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
            return response
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        answer = self.answers.answer(question.name, question.rdtype)
        if answer.fallback_host:
            addresses = await self._system_lookup(answer.fallback_host, question.rdtype)
            answer = self.answers.fallback_records(question.name, question.rdtype, addresses)
        self._fill(response, answer)
        return response

    def _fill(self, response: dns.message.Message, answer: Answer) -> None:
        response.set_rcode(answer.rcode)
        if answer.authoritative and answer.rcode != dns.rcode.REFUSED:
            response.flags |= dns.flags.AA
        response.answer.extend(answer.records)
        if not answer.records and answer.rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            response.authority.append(self.answers.soa_rrset())

    @staticmethod
    async def _system_lookup(host: str, rdtype: int) -> list[str]:
        family = {dns.rdatatype.A: socket.AF_INET, dns.rdatatype.AAAA: socket.AF_INET6}.get(
            dns.rdatatype.RdataType(rdtype), socket.AF_UNSPEC)
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(host, None, family=family, type=socket.SOCK_STREAM),
                                           FALLBACK_LOOKUP_SECONDS)
        except (OSError, TimeoutError, UnicodeError):
            return []
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, service: DnsService) -> None:
        self.service = service
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.ensure_future(self._reply(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.service.handle(data, "udp")
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


async def _tcp_client(service: DnsService, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            header = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_SECONDS)
            (length,) = struct.unpack("!H", header)
            wire = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_SECONDS)
            reply = await service.handle(wire, "tcp")
            if reply is None:
                continue
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def start_dns(service: DnsService, host: str, port: int) -> tuple[asyncio.DatagramTransport, asyncio.Server]:
    """Bind UDP and TCP on ``host:port`` (port 0: a free port, the same for both)."""
    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(lambda r, w: _tcp_client(service, r, w), host, port)
    bound_port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(service), local_addr=(host, bound_port))
    return transport, server
