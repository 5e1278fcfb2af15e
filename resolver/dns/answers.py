"""DNS questions → answers, from the same cache and selection code as the gRPC component.

The names are described in :mod:`resolver.dns.zone`. The answer follows the policy for a
caller in the bridge's ``clusterName`` (the same :class:`~resolver.resolution.resolver.Resolver`
as the component), with the rules real resolvers need:

* **Existence does not depend on the type** (RFC 8020): a name that exists answers NOERROR
  for every type, with no data (and the SOA in authority) where it has none — TXT for
  gRPC's ``_grpc_config`` lookups included. ``{namespace}.{zone}`` is an empty non-terminal.
* **Weights** are carried by membership (:mod:`resolver.dns.weights`): an A/AAAA answer is one
  of a few variants, each drawn with its probability; SRV carries all instances and weights.
* **SRV targets are always names**: ``{instance}.{id}.{namespace}.{zone}``.
* **Host-name endpoints** (inventory entries) are looked up by the bridge
  (:mod:`resolver.dns.lookups`) and their addresses pass the address policy before they
  join the app's and the instance's A/AAAA records. The instance name answers those
  addresses itself rather than a CNAME: a CNAME would let the client resolve the host on
  its own and bypass the policy.
* **Fallback**: no candidate → the ``template`` host's addresses (IP literal, or looked up;
  the operator configured it, so no address policy), else NXDOMAIN with ``fallback=none``
  or when the system resolver says the host does not exist. A lookup that fails or times
  out is SERVFAIL: "we don't know" is never an authoritative "no".
* Outside the zone → REFUSED. TTL ``dnsTTL``, never longer than a lease TTL.
* **Cluster-level only**: the asker is CoreDNS (or a node-local cache), not the calling pod, so
  the caller's availability zone is unknown here and ``zoneAware`` never narrows an answer.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

from resolver.dns import weights, zone
from resolver.dns.lookups import Found, HostAddresses, HostLookups
from resolver.dns.zone import AppSpellings, Kind, ZoneName
from resolver.errors import NotFound
from resolver.observability import metrics
from resolver.records import names
from resolver.records.addresses import AddressPolicy
from resolver.resolution.policy import Selection
from resolver.resolution.resolver import Resolver, Target

log = logging.getLogger(__name__)

SRV_PRIORITY = 10
SRV_WEIGHT_SCALE = 1000
HOST_MEMO = 100_000

_A, _AAAA, _ANY, _SRV, _NS, _SOA = (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY, dns.rdatatype.SRV,
                                    dns.rdatatype.NS, dns.rdatatype.SOA)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class Answer:
    """An answer before it becomes wire format.

    ``variants``: alternative answer sections and their probabilities (one per query is
    drawn); ``pending``: host names to look up before the question can be answered.
    """

    rcode: dns.rcode.Rcode
    variants: tuple[tuple[float, list[dns.rrset.RRset]], ...] = ()
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    pending: tuple[str, ...] = ()
    authoritative: bool = True

    @property
    def records(self) -> list[dns.rrset.RRset]:
        """The first variant's records (for callers that want one answer)."""
        return self.variants[0][1] if self.variants else []


@dataclass(frozen=True, slots=True)
class _Host:
    ip: IPAddress | None
    name: str  # the host as written (lower-cased if a name)
    port: int


class _Pending(Exception):
    def __init__(self, hosts: Iterable[str]) -> None:
        super().__init__("lookups pending")
        self.hosts = tuple(hosts)


class _Unknown(Exception):
    """A lookup this answer needs has failed: SERVFAIL."""


class DnsAnswers:
    def __init__(self, resolver: Resolver, zone_name: str, ttl: int, lookups: HostLookups,
                 ns_addresses: tuple[str, ...] = ("127.0.0.1",)) -> None:
        self.resolver = resolver
        self.zone = dns.name.from_text(zone_name)
        self.ttl = ttl
        self.lookups = lookups
        self.spellings = AppSpellings(resolver.reader.cache)
        self.policy: AddressPolicy = resolver.settings.address_policy
        self.ns_name = dns.name.from_text(zone.NS_LABEL, self.zone)
        self.ns_addresses = tuple(ipaddress.ip_address(a) for a in ns_addresses)
        self._hosts: dict[str, _Host] = {}
        self._soa = SOA(dns.rdataclass.IN, _SOA, self.ns_name, dns.name.from_text("hostmaster", self.zone),
                        1, 3600, 600, 86400, ttl)  # type: ignore[no-untyped-call]

    # -- entry point -----------------------------------------------------------------------

    def answer(self, qname: dns.name.Name, qtype: int,
               resolved: Mapping[str, HostAddresses] | None = None) -> Answer:
        """The answer to one question; ``resolved`` adds lookup results not (or no longer) cached."""
        if not qname.is_subdomain(self.zone):
            return Answer(dns.rcode.REFUSED, authoritative=False)
        name = zone.parse(qname, self.zone)
        try:
            return self._answer(qname, qtype, name, resolved or {})
        except _Pending as pending:
            return Answer(dns.rcode.NOERROR, pending=pending.hosts)
        except _Unknown:
            return Answer(dns.rcode.SERVFAIL, authoritative=False)

    def _answer(self, qname: dns.name.Name, qtype: int, name: ZoneName,
                resolved: Mapping[str, HostAddresses]) -> Answer:
        if name.kind is Kind.APEX:
            return self._apex(qname, qtype)
        if name.kind is Kind.NS_HOST:
            return self._addresses_answer(qname, qtype, [weights.ClusterAddresses(
                "", 1, tuple(str(a) for a in self.ns_addresses))], self.ttl)
        if name.kind in (Kind.NAMESPACE, Kind.SERVICE):
            return self.nodata()
        if name.kind is Kind.NONE:
            return self.nxdomain()
        target = Target(self.spellings.spelling(name.namespace, name.app), name.namespace)
        # "": the asker is CoreDNS or a node cache, not the calling pod, so its zone is unknown
        # and the answer stays cluster-level whatever zone/zoneAware say (docs/dns.md "Zones").
        selection = self.resolver.candidates(target, caller_zone="").selection
        if name.kind is Kind.INSTANCE:
            return self._instance(qname, qtype, target, name.instance, resolved)
        if not selection:
            return self._fallback(qname, qtype, target, resolved)
        ttl = self._ttl(selection)
        if qtype == _SRV:
            return Answer(dns.rcode.NOERROR, ((1.0, self._srv(qname, target, selection, ttl)),))
        if qtype not in (_A, _AAAA, _ANY):
            return self.nodata()
        clusters = [weights.ClusterAddresses(c.cluster, c.weight, self._ips(c.cluster, c.addresses, resolved))
                    for c in selection]
        return self._addresses_answer(qname, qtype, clusters, ttl)

    # -- negative answers ------------------------------------------------------------------

    def nodata(self) -> Answer:
        return Answer(dns.rcode.NOERROR, authority=[self.soa_rrset()])

    def nxdomain(self) -> Answer:
        return Answer(dns.rcode.NXDOMAIN, authority=[self.soa_rrset()])

    def soa_rrset(self) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(self.zone, dns.rdataclass.IN, _SOA)
        rrset.add(self._soa, self.ttl)
        return rrset

    # -- the apex --------------------------------------------------------------------------

    def _apex(self, qname: dns.name.Name, qtype: int) -> Answer:
        records = []
        if qtype in (_SOA, _ANY):
            soa = dns.rrset.RRset(qname, dns.rdataclass.IN, _SOA)
            soa.add(self._soa, self.ttl)
            records.append(soa)
        if qtype in (_NS, _ANY):
            ns = dns.rrset.RRset(qname, dns.rdataclass.IN, _NS)
            ns.add(NS(dns.rdataclass.IN, _NS, self.ns_name), self.ttl)  # type: ignore[no-untyped-call]
            records.append(ns)
        return Answer(dns.rcode.NOERROR, ((1.0, records),)) if records else self.nodata()

    # -- addresses -------------------------------------------------------------------------

    def _addresses_answer(self, qname: dns.name.Name, qtype: int, clusters: list[weights.ClusterAddresses],
                          ttl: int) -> Answer:
        """A/AAAA/ANY from per-cluster IPs; anything else at an existing name is NODATA."""
        if qtype not in (_A, _AAAA, _ANY):
            return self.nodata()
        want_v4, want_v6 = qtype != _AAAA, qtype != _A
        family = [weights.ClusterAddresses(c.cluster, c.weight, tuple(
            a for a in c.addresses if (want_v6 if ":" in a else want_v4))) for c in clusters]
        choices = weights.variants(family)
        if not choices:
            return self.nodata()
        return Answer(dns.rcode.NOERROR, tuple((v.probability, self._rrsets(qname, v.addresses, ttl))
                                                for v in choices))

    def _rrsets(self, qname: dns.name.Name, addresses: Iterable[str], ttl: int) -> list[dns.rrset.RRset]:
        v4 = dns.rrset.RRset(qname, dns.rdataclass.IN, _A)
        v6 = dns.rrset.RRset(qname, dns.rdataclass.IN, _AAAA)
        for address in addresses:
            if ":" in address:
                v6.add(AAAA(dns.rdataclass.IN, _AAAA, address), ttl)  # type: ignore[no-untyped-call]
            else:
                v4.add(A(dns.rdataclass.IN, _A, address), ttl)  # type: ignore[no-untyped-call]
        return [rrset for rrset in (v4, v6) if len(rrset)]

    def _host(self, address: str) -> _Host:
        """``host:port`` parsed once (memoized; bounded)."""
        host = self._hosts.get(address)
        if host is None:
            text, port = names.split_host_port(address)
            try:
                ip: IPAddress | None = ipaddress.ip_address(text)
            except ValueError:
                ip = None
            host = _Host(ip, str(ip) if ip is not None else text.rstrip(".").lower(), port)
            if len(self._hosts) >= HOST_MEMO:
                self._hosts.clear()
            self._hosts[address] = host
        return host

    def _ips(self, cluster: str, addresses: Iterable[str], resolved: Mapping[str, HostAddresses]) -> tuple[str, ...]:
        """The IPs of endpoints: literals as they are, host names looked up and policy-checked.

        Raises _Pending when a lookup is needed first; a failed lookup contributes nothing
        here (the other endpoints still answer), see :meth:`_lookup_all` for the case where
        nothing at all is known.
        """
        ips: list[str] = []
        pending: list[str] = []
        failed = False
        for address in addresses:
            host = self._host(address)
            if host.ip is not None:
                ips.append(host.name)
                continue
            found = resolved.get(host.name) or self.lookups.peek(host.name)
            if found is None:
                pending.append(host.name)
            elif found.found is Found.FAILED:
                failed = True
            else:
                ips.extend(self._allowed(cluster, host.name, found))
        if pending:
            raise _Pending(pending)
        if failed and not ips:
            raise _Unknown
        return tuple(dict.fromkeys(ips))

    def _allowed(self, cluster: str, host: str, found: HostAddresses) -> list[str]:
        allowed = []
        for text in (*found.v4, *found.v6):
            reason = self.policy.ip_refusal(cluster, ipaddress.ip_address(text))
            if reason is None:
                allowed.append(text)
            else:
                metrics.DNS_REFUSED_ADDRESSES.inc()
                log.debug("not serving %s for host-name endpoint %s of %s: %s", text, host, cluster, reason)
        return allowed

    def _ttl(self, selection: Selection) -> int:
        clusters = self.resolver.reader.cache.clusters()
        lease_ttls = [int(clusters[c.cluster].lease_ttl) for c in selection
                      if c.cluster in clusters and clusters[c.cluster].lease_ttl >= 1]
        return min([self.ttl, *lease_ttls])

    # -- SRV and instances -----------------------------------------------------------------

    def _srv(self, qname: dns.name.Name, target: Target, selection: Selection, ttl: int) -> list[dns.rrset.RRset]:
        rrset = dns.rrset.RRset(qname, dns.rdataclass.IN, _SRV)
        total = sum(c.weight for c in selection)
        by_cluster: dict[str, list[tuple[str, str]]] = {}
        for (cluster, address), instance in self.resolver.reader.cache.instances(
                target.namespace, target.app_id).items():
            by_cluster.setdefault(cluster, []).append((instance, address))
        app_name = dns.name.from_text(f"{target.app_id.lower()}.{target.namespace}", self.zone)
        for candidate in selection:
            instances = sorted(by_cluster.get(candidate.cluster, ()))
            if not instances:
                continue
            share = max(1, round(SRV_WEIGHT_SCALE * candidate.weight / total / len(instances)))
            for instance, address in instances:
                port = self._host(address).port
                srv = SRV(dns.rdataclass.IN, _SRV, SRV_PRIORITY, share, port,  # type: ignore[no-untyped-call]
                          dns.name.from_text(instance, app_name))
                rrset.add(srv, ttl)
        return [rrset] if len(rrset) else []

    def _instance(self, qname: dns.name.Name, qtype: int, target: Target, instance: str,
                  resolved: Mapping[str, HostAddresses]) -> Answer:
        """``{instance}.{id}.{ns}.{zone}``: that instance, in whichever cluster has it."""
        found = [(cluster, address) for (cluster, address), name in self.resolver.reader.cache.instances(
            target.namespace, target.app_id).items() if name == instance]
        if not found:
            return self.nxdomain()
        if qtype not in (_A, _AAAA, _ANY):
            return self.nodata()
        ips: list[str] = []
        for cluster, address in found:
            ips.extend(self._ips(cluster, (address,), resolved))
        clusters = self.resolver.reader.cache.clusters()
        lease_ttls = [int(clusters[c].lease_ttl) for c, _ in found if c in clusters and clusters[c].lease_ttl >= 1]
        ttl = min([self.ttl, *lease_ttls])
        return self._addresses_answer(qname, qtype, [weights.ClusterAddresses("", 1, tuple(dict.fromkeys(ips)))],
                                      ttl)

    # -- fallback --------------------------------------------------------------------------

    def fallback_host(self, target: Target) -> str | None:
        """The template's host for ``target`` (None with ``fallback=none``)."""
        try:
            address = self.resolver.fallback(target, port=1)
        except NotFound:
            return None
        host, sep, port = address.rpartition(":")
        return (host if sep and port.isdigit() else address).strip("[]").rstrip(".")

    def _fallback(self, qname: dns.name.Name, qtype: int, target: Target,
                  resolved: Mapping[str, HostAddresses]) -> Answer:
        host = self.fallback_host(target)
        metrics.FALLBACK_ANSWERS.labels("dns").inc()  # per computed answer (a cached one lives ≤ 1 s)
        if host is None:
            return self.nxdomain()
        try:
            ip: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None:
            found = HostAddresses(Found.OK, (str(ip),) if ip.version == 4 else (),
                                  (str(ip),) if ip.version == 6 else ())
        else:
            try:
                if dns.name.from_text(host).is_subdomain(self.zone):
                    raise _Unknown  # a loop: refused at start-up, never followed here
            except dns.exception.DNSException:
                raise _Unknown from None
            known = resolved.get(host.lower()) or self.lookups.peek(host.lower())
            if known is None:
                raise _Pending((host.lower(),))
            found = known
        if found.found is Found.NXDOMAIN:
            return self.nxdomain()
        if found.found is Found.FAILED:
            raise _Unknown
        return self._addresses_answer(qname, qtype, [weights.ClusterAddresses("", 1, (*found.v4, *found.v6))],
                                      self.ttl)
