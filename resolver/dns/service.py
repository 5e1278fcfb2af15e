"""One DNS message in, one out: protocol rules, the response cache, and deferred lookups.

* Only standard queries (opcode QUERY) with one question in class IN are answered: other
  opcodes (UPDATE, NOTIFY, …) get NOTIMP from the header alone, zone transfers (AXFR, IXFR)
  REFUSED, EDNS versions above 0 BADVERS (RFC 6891 §6.1.3). Unparseable packets get FORMERR
  when the header can be read and nothing otherwise; responses are never answered.
* The reply copies RD and CD (RFC 4035 §3.1.6) and echoes DO (RFC 3225 §3); it is not
  signed. UDP replies fit in 512 bytes or the client's EDNS payload (capped at 1232, the
  DNS-flag-day value) and set TC when cut; TCP replies go up to 65,535 bytes.
* **Response cache**, keyed by the query's bytes after the ID (flags, question with its
  spelling, EDNS): a hit is a dict lookup, an ID splice and a weighted draw among the cached
  variants (:mod:`resolver.dns.weights`), with no parsing — cheap enough to run inline in
  ``datagram_received``. An entry lives while the registry and reachability view
  (``Resolver.version``) is unchanged and for at most :data:`CACHE_SECONDS`; the table holds at
  most ``cache_entries`` and is cleared when full (a flood of unique names costs a bounded
  amount of memory). SERVFAIL is never cached.
* An answer that needs a host lookup is *deferred*: the caller awaits :meth:`complete`, at
  most ``pending`` at a time; over that the query gets SERVFAIL at once.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from prometheus_client import Counter

from resolver.dns.answers import Answer, DnsAnswers
from resolver.dns.limits import LIMITS, DnsLimits
from resolver.observability import metrics

log = logging.getLogger(__name__)

UDP_DEFAULT_PAYLOAD = 512
UDP_MAX_PAYLOAD = 1232
OUR_EDNS_PAYLOAD = 1232
CACHE_SECONDS = 1.0
_OPCODE_MASK = 0x7800
_TRANSFERS = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)


def header_reply(wire: bytes, rcode: int) -> bytes | None:
    """A bare reply (no sections) carrying ``rcode``, if at least the header can be read."""
    if len(wire) < 12:
        return None
    query_id, flags = struct.unpack("!HH", wire[:4])
    if flags & dns.flags.QR:
        return None  # a response, not a query: never answer (no reflection loops)
    reply_flags = dns.flags.QR | (flags & (dns.flags.RD | dns.flags.CD | _OPCODE_MASK)) | rcode
    return struct.pack("!HHHHHH", query_id, reply_flags, 0, 0, 0, 0)


def formerr_for(wire: bytes) -> bytes | None:
    """A bare FORMERR reply to an unparseable packet, if at least its header can be read."""
    return header_reply(wire, dns.rcode.FORMERR)


@dataclass(slots=True)
class _Cached:
    revision: int
    expires: float
    cumulative: tuple[float, ...]  # upper bounds of each variant's probability interval
    wires: tuple[bytes, ...]
    counter: Counter


@dataclass(slots=True)
class Deferred:
    """A query whose answer waits for host lookups (see :meth:`DnsService.complete`)."""

    query: dns.message.Message
    transport: str
    key: tuple[str, bytes] | None
    hosts: tuple[str, ...]
    revision: int


class DnsService:
    def __init__(self, answers: DnsAnswers, rng: random.Random | None = None, cache: bool = True,
                 limits: DnsLimits | None = None) -> None:
        self.answers = answers
        self.rng = rng or random.Random()
        self.caching = cache
        self.limits = limits or DnsLimits()
        self._cache: dict[tuple[str, bytes], _Cached] = {}
        self._counters: dict[tuple[str, str], Counter] = {}
        self.pending = 0

    # -- entry points ----------------------------------------------------------------------

    def cached(self, wire: bytes, transport: str) -> bytes | None:
        """The reply from the response cache, or None (the hot path: no parsing)."""
        entry = self._cache.get((transport, wire[2:]))
        if entry is None or entry.revision != self.answers.resolver.version \
                or time.monotonic() >= entry.expires:
            return None
        entry.counter.inc()
        wires = entry.wires
        if len(wires) == 1:
            return wire[:2] + wires[0][2:]
        point = self.rng.random()
        for bound, reply in zip(entry.cumulative, wires, strict=True):
            if point < bound:
                return wire[:2] + reply[2:]
        return wire[:2] + wires[-1][2:]

    def answer_now(self, wire: bytes, transport: str, check_cache: bool = True) -> bytes | Deferred | None:
        """The reply (None: send nothing), or a :class:`Deferred` when a lookup must run first."""
        if check_cache and self.caching and len(wire) > 12:
            hit = self.cached(wire, transport)
            if hit is not None:
                return hit
        if len(wire) < 12 or wire[2] & 0x80:
            return None
        if wire[2] & (_OPCODE_MASK >> 8) != 0:
            self._count("NOTIMP", transport)
            return header_reply(wire, dns.rcode.NOTIMP)
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # any parse failure of untrusted input
            self._count("FORMERR", transport)
            return formerr_for(wire)
        key = (transport, wire[2:]) if self.caching else None
        problem = self._refusal(query)
        if problem is not None:
            return self._send(query, transport, problem, None, 0)
        revision = self.answers.resolver.version  # before computing: never newer than the answer
        question = query.question[0]
        answer = self.answers.answer(question.name, question.rdtype)
        if answer.pending:
            if self.pending >= self.limits.pending:
                LIMITS.reached("pending", f"{self.pending} queries already wait for lookups")
                return self._send(query, transport, Answer(dns.rcode.SERVFAIL, authoritative=False), None, 0)
            self.pending += 1
            return Deferred(query, transport, key, answer.pending, revision)
        return self._send(query, transport, answer, key, revision)

    async def complete(self, deferred: Deferred) -> bytes | None:
        """Run the lookups a deferred query needs, then answer it."""
        try:
            lookups = self.answers.lookups
            resolved = {host: await lookups.lookup(host) for host in deferred.hosts}
            revision = self.answers.resolver.version
            question = deferred.query.question[0]
            answer = self.answers.answer(question.name, question.rdtype, resolved)
            if answer.pending:  # a second host appeared (the registry changed): do not chase
                answer = Answer(dns.rcode.SERVFAIL, authoritative=False)
            return self._send(deferred.query, deferred.transport, answer, deferred.key, revision)
        finally:
            self.pending -= 1

    async def handle(self, wire: bytes, transport: str) -> bytes | None:
        """Answer one query, awaiting lookups if needed (``None``: send nothing)."""
        result = self.answer_now(wire, transport)
        if isinstance(result, Deferred):
            return await self.complete(result)
        return result

    # -- building replies ------------------------------------------------------------------

    @staticmethod
    def _refusal(query: dns.message.Message) -> Answer | None:
        """The answer to a query that is not an ordinary question, else None."""
        if query.edns > 0:
            return Answer(dns.rcode.BADVERS, authoritative=False)
        if len(query.question) != 1:
            return Answer(dns.rcode.FORMERR, authoritative=False)
        question = query.question[0]
        if question.rdclass != dns.rdataclass.IN or question.rdtype in _TRANSFERS:
            return Answer(dns.rcode.REFUSED, authoritative=False)
        return None

    def _send(self, query: dns.message.Message, transport: str, answer: Answer,
              key: tuple[str, bytes] | None, revision: int) -> bytes:
        wires = tuple(self._wire(query, transport, answer, records)
                      for records in ([r for _, r in answer.variants] or [[]]))
        rcode = dns.rcode.to_text(answer.rcode)
        counter = self._counter(rcode, transport)
        counter.inc()
        if key is not None and answer.rcode != dns.rcode.SERVFAIL:
            self._store(key, answer, wires, counter, revision)
        if len(wires) == 1:
            return wires[0]
        point = self.rng.random()
        for (probability, _), reply in zip(answer.variants, wires, strict=True):
            point -= probability
            if point < 0:
                return reply
        return wires[-1]

    def _wire(self, query: dns.message.Message, transport: str, answer: Answer,
              records: list[dns.rrset.RRset]) -> bytes:
        response = dns.message.make_response(query, our_payload=OUR_EDNS_PAYLOAD)
        response.flags |= query.flags & dns.flags.CD
        if query.edns >= 0:
            response.use_edns(0, query.ednsflags & dns.flags.DO, OUR_EDNS_PAYLOAD)
        response.set_rcode(answer.rcode)
        if answer.authoritative:
            response.flags |= dns.flags.AA
        response.authority.extend(answer.authority)
        if transport == "udp":
            limit = min(max(query.payload, UDP_DEFAULT_PAYLOAD), UDP_MAX_PAYLOAD) if query.edns >= 0 \
                else UDP_DEFAULT_PAYLOAD
        else:
            limit = 65535
        response.answer.extend(records)
        try:
            return response.to_wire(max_size=limit, want_shuffle=False)
        except dns.exception.TooBig:
            return self._truncated(response, records, limit)

    def _truncated(self, response: dns.message.Message, records: list[dns.rrset.RRset], limit: int) -> bytes:
        """As many answer records as fit (a random subset), with TC set.

        RFC 2181 §9 lets a client use a partial answer; glibc and Go retry over TCP, but musl
        before 1.2.4 has no TCP fallback and uses what it got — a random subset spreads those
        clients over all instances instead of the first few.
        """
        flat = [(rrset, rdata) for rrset in records for rdata in rrset]
        self.rng.shuffle(flat)
        response.flags |= dns.flags.TC

        def build(count: int) -> bytes | None:
            kept: dict[int, dns.rrset.RRset] = {}
            for rrset, rdata in flat[:count]:
                part = kept.get(id(rrset))
                if part is None:
                    part = kept[id(rrset)] = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype)
                part.add(rdata, rrset.ttl)
            response.answer = list(kept.values())
            try:
                return response.to_wire(max_size=limit, want_shuffle=False)
            except dns.exception.TooBig:
                return None

        low, high, best = 0, len(flat) - 1, build(0)
        while low <= high:  # the largest count that fits
            middle = (low + high + 1) // 2
            wire = build(middle)
            if wire is None:
                high = middle - 1
            else:
                best, low = wire, middle + 1
                if low > high:
                    break
        if best is None:  # not even the header and question fit: dnspython's own truncation
            response.answer = []
            return response.to_wire(max_size=limit, prefer_truncation=True, want_shuffle=False)
        return best

    def _store(self, key: tuple[str, bytes], answer: Answer, wires: tuple[bytes, ...], counter: Counter,
               revision: int) -> None:
        if len(self._cache) >= self.limits.cache_entries:
            self._cache.clear()
        cumulative: list[float] = []
        total = 0.0
        for probability, _ in answer.variants or ((1.0, []),):
            total += probability
            cumulative.append(total)
        self._cache[key] = _Cached(revision, time.monotonic() + CACHE_SECONDS,
                                   tuple(cumulative), wires, counter)

    def _counter(self, rcode: str, transport: str) -> Counter:
        counter = self._counters.get((rcode, transport))
        if counter is None:
            counter = self._counters[(rcode, transport)] = metrics.DNS_QUERIES.labels(rcode, transport)
        return counter

    def _count(self, rcode: str, transport: str) -> None:
        self._counter(rcode, transport).inc()
