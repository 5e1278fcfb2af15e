"""DNS questions → answers, from the same cache and selection code as the gRPC component.

Names, inside ``--zone`` (default ``dapr.internal``)::

    {id}.{namespace}.{zone}              A / AAAA: the candidates' IPs; SRV: one per instance
    {instance}.{id}.{namespace}.{zone}   A / AAAA of one instance (the SRV targets)
    {zone}                               SOA (and NS) of the zone itself

The answer follows the policy for a caller in the bridge's ``clusterName`` (the same
:class:`~resolver.resolution.resolver.Resolver` as the component). Where weights differ, A/AAAA
records come in a weighted random order — Go's resolver (daprd) dials the first address — and
SRV records carry the weights. No candidate → the fallback ``template`` host's addresses
(looked up through the system resolver; names inside our own zone are refused to avoid a
loop), else NXDOMAIN. Outside the zone → REFUSED. Negative answers carry the zone's SOA so
resolvers cache them for ``dnsTTL`` only. Answers never outlive the records' lease TTL.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

from resolver.errors import InvalidRequest, NotFound
from resolver.registry import names
from resolver.resolution.policy import Selection
from resolver.resolution.resolver import Resolver, Target

SRV_PRIORITY = 10
SRV_WEIGHT_SCALE = 1000
RDATA_MEMO = 100_000


@dataclass(frozen=True)
class Lookup:
    """What a question asks for, once its name has been parsed."""

    target: Target | None  # None: the zone apex
    instance: str = ""


@dataclass
class Answer:
    rcode: dns.rcode.Rcode
    records: list[dns.rrset.RRset]
    fallback_host: str = ""  # set when the caller must resolve the fallback name asynchronously
    authoritative: bool = True


class DnsAnswers:
    def __init__(self, resolver: Resolver, zone: str, ttl: int, rng: random.Random | None = None) -> None:
        self.resolver = resolver
        self.zone = dns.name.from_text(zone)
        self.ttl = ttl
        self.rng = rng or random.Random()
        self._rdatas: dict[str, A | AAAA | None] = {}
        self._soa = SOA(dns.rdataclass.IN, dns.rdatatype.SOA, dns.name.from_text("ns", self.zone),
                        dns.name.from_text("hostmaster", self.zone), 1, 3600, 600, 86400,
                        ttl)  # type: ignore[no-untyped-call]

    # -- names ------------------------------------------------------------------------------

    def parse(self, qname: dns.name.Name) -> Lookup | None:
        """The lookup a name in our zone asks for; None if it names nothing that can exist."""
        relative = qname.relativize(self.zone)
        if relative == dns.name.empty:
            return Lookup(None)
        labels = [label.decode("ascii", errors="replace") for label in relative.labels]
        if len(labels) < 2:
            return None
        *instance_labels, app_id, namespace = labels
        try:
            target = self.resolver.target(app_id, namespace.lower())
        except InvalidRequest:
            return None
        instance = ".".join(instance_labels).lower()
        if instance:
            try:
                names.check_subdomain(instance, "instance")
            except ValueError:
                return None
        return Lookup(target, instance)

    # -- answers ----------------------------------------------------------------------------

    def answer(self, qname: dns.name.Name, qtype: int) -> Answer:
        if not qname.is_subdomain(self.zone):
            return Answer(dns.rcode.REFUSED, [], authoritative=False)
        lookup = self.parse(qname)
        if lookup is None:
            return self._negative(dns.rcode.NXDOMAIN)
        if lookup.target is None:
            return self._apex(qname, qtype)
        selection = self._select(lookup.target)
        if not selection:
            return self._fallback(lookup, qtype)
        ttl = self._ttl(selection)
        if lookup.instance:
            return self._instance(qname, qtype, lookup, selection, ttl)
        if qtype == dns.rdatatype.SRV:
            return Answer(dns.rcode.NOERROR, self._srv(qname, lookup.target, selection, ttl))
        if qtype in (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY):
            records = self._addresses(qname, self._weighted_order(selection), qtype, ttl)
            return Answer(dns.rcode.NOERROR, records) if records else self._negative(dns.rcode.NOERROR)
        return self._negative(dns.rcode.NOERROR)

    def _select(self, target: Target) -> Selection:
        app_id = target.app_id
        found = self.resolver.candidates(target)
        if not found.selection and app_id != app_id.lower():  # DNS names are case-insensitive
            found = self.resolver.candidates(Target(app_id.lower(), target.namespace))
        return found.selection

    def _ttl(self, selection: Selection) -> int:
        clusters = self.resolver.reader.cache.clusters()
        lease_ttls = [int(clusters[c.cluster].lease_ttl) for c in selection
                      if c.cluster in clusters and clusters[c.cluster].lease_ttl >= 1]
        return min([self.ttl, *lease_ttls])

    def _weighted_order(self, selection: Selection) -> list[str]:
        """Every candidate address once, in a random order weighted by instance share."""
        weighted = [(address, candidate.weight / len(candidate.addresses))
                    for candidate in selection for address in candidate.addresses]
        if len({weight for _, weight in weighted}) <= 1:
            addresses = [address for address, _ in weighted]
            self.rng.shuffle(addresses)
            return addresses
        # Efraimidis–Spirakis: sort by u^(1/w), a weighted sample without replacement.
        keyed = [(self.rng.random() ** (1.0 / weight), address) for address, weight in weighted]
        return [address for _, address in sorted(keyed, reverse=True)]

    def _addresses(self, qname: dns.name.Name, addresses: list[str], qtype: int, ttl: int) -> list[dns.rrset.RRset]:
        v4 = dns.rrset.RRset(qname, dns.rdataclass.IN, dns.rdatatype.A)
        v6 = dns.rrset.RRset(qname, dns.rdataclass.IN, dns.rdatatype.AAAA)
        for address in addresses:
            rdata = self._rdata(address)
            if rdata is not None:
                (v4 if rdata.rdtype == dns.rdatatype.A else v6).add(rdata, ttl)
        wanted = {dns.rdatatype.A: [v4], dns.rdatatype.AAAA: [v6]}.get(dns.rdatatype.RdataType(qtype), [v4, v6])
        return [rrset for rrset in wanted if len(rrset)]

    def _rdata(self, address: str) -> A | AAAA | None:
        """The A/AAAA rdata of ``host:port`` (memoized: building one validates the address, ~10 µs)."""
        rdata = self._rdatas.get(address, self)
        if rdata is not self:
            return rdata  # type: ignore[return-value]
        host = names.split_host_port(address)[0]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            rdata = None  # a host name (inventory entry): reachable through SRV only
        else:
            rdata = (A(dns.rdataclass.IN, dns.rdatatype.A, host) if ip.version == 4  # type: ignore[no-untyped-call]
                     else AAAA(dns.rdataclass.IN, dns.rdatatype.AAAA, host))  # type: ignore[no-untyped-call]
        if len(self._rdatas) >= RDATA_MEMO:
            self._rdatas.clear()
        self._rdatas[address] = rdata
        return rdata

    def _srv(self, qname: dns.name.Name, target: Target, selection: Selection, ttl: int) -> list[dns.rrset.RRset]:
        rrset = dns.rrset.RRset(qname, dns.rdataclass.IN, dns.rdatatype.SRV)
        total = sum(c.weight for c in selection)
        instances = self.resolver.reader.cache.instances(target.namespace, target.app_id)
        for candidate in selection:
            share = max(1, round(SRV_WEIGHT_SCALE * candidate.weight / total / len(candidate.addresses)))
            for address in candidate.addresses:
                host, port = names.split_host_port(address)
                instance = instances.get((candidate.cluster, address), "")
                name = dns.name.from_text(instance, qname) if instance else dns.name.from_text(host)
                srv = SRV(dns.rdataclass.IN, dns.rdatatype.SRV, SRV_PRIORITY, share, port, name)  # type: ignore[no-untyped-call]
                rrset.add(srv, ttl)
        return [rrset]

    def _instance(self, qname: dns.name.Name, qtype: int, lookup: Lookup, selection: Selection,
                  ttl: int) -> Answer:
        assert lookup.target is not None
        instances = self.resolver.reader.cache.instances(lookup.target.namespace, lookup.target.app_id)
        addresses = [address for (cluster, address), instance in instances.items()
                     if instance == lookup.instance and any(c.cluster == cluster for c in selection)]
        if not addresses:
            return self._negative(dns.rcode.NXDOMAIN)
        records = self._addresses(qname, addresses, qtype, ttl) if qtype != dns.rdatatype.SRV else []
        return Answer(dns.rcode.NOERROR, records) if records else self._negative(dns.rcode.NOERROR)

    def _fallback(self, lookup: Lookup, qtype: int) -> Answer:
        assert lookup.target is not None
        if lookup.instance or qtype not in (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY):
            return self._negative(dns.rcode.NXDOMAIN if lookup.instance else dns.rcode.NOERROR)
        try:
            address = self.resolver.fallback(lookup.target, port=1)
        except NotFound:
            return self._negative(dns.rcode.NXDOMAIN)
        host = address.rpartition(":")[0].strip("[]") if ":" in address else address
        try:
            if dns.name.from_text(host).is_subdomain(self.zone):
                return self._negative(dns.rcode.NXDOMAIN)  # our own zone: resolving it would loop
        except dns.exception.DNSException:
            return self._negative(dns.rcode.NXDOMAIN)
        return Answer(dns.rcode.NOERROR, [], fallback_host=host)

    def fallback_records(self, qname: dns.name.Name, qtype: int, addresses: list[str]) -> Answer:
        """Complete a fallback once the system resolver has answered (``addresses`` may be empty)."""
        records = self._addresses(qname, [names.join_host_port(a, 1) for a in addresses], qtype, self.ttl)
        if records:
            return Answer(dns.rcode.NOERROR, records, authoritative=False)
        return self._negative(dns.rcode.NXDOMAIN)

    def _apex(self, qname: dns.name.Name, qtype: int) -> Answer:
        if qtype in (dns.rdatatype.SOA, dns.rdatatype.ANY):
            rrset = dns.rrset.RRset(qname, dns.rdataclass.IN, dns.rdatatype.SOA)
            rrset.add(self._soa, self.ttl)
            return Answer(dns.rcode.NOERROR, [rrset])
        return self._negative(dns.rcode.NOERROR)

    def _negative(self, rcode: dns.rcode.Rcode) -> Answer:
        return Answer(rcode, [])

    def soa_rrset(self) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(self.zone, dns.rdataclass.IN, dns.rdatatype.SOA)
        rrset.add(self._soa, self.ttl)
        return rrset
