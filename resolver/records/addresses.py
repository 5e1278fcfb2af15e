"""Which addresses the registry may hand to a Dapr sidecar, and which spellings of them count.

Every cluster writes into the shared registry, so an address in it is untrusted input: one
record saying ``127.0.0.1`` or ``169.254.169.254`` would point other clusters' sidecars at
themselves or at their cloud's metadata service. The same policy runs on both sides — the
publisher refuses to write such an address and every reader refuses to serve it — so a
compromised or buggy writer (or a hand-edited key) changes nothing for anyone else.

Spelling matters as much as value: glibc's ``inet_aton`` reads ``2130706433``, ``0x7f000001``
and ``0177.0.0.01`` as 127.0.0.1, so an "address" that is not a canonical dotted quad and is
not a valid host name is refused outright rather than interpreted. Scoped IPv6 (``fe80::1%eth0``)
names an interface on the *writer's* host and means nothing elsewhere.

An optional per-cluster allowlist (``clusterCIDRs``) is the cheap defence against a cluster
advertising addresses that belong to another cluster's pod ranges.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from resolver.errors import ValidationError, shown
from resolver.records import names

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

HOSTNAMES: Final = "hostnames"
"""The ``clusterCIDRs`` value that lets a cluster with an allowlist keep publishing host names."""

_CANONICAL_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")
# Every form inet_aton accepts: 1-4 parts, each decimal, octal (leading 0) or hex (0x).
_INET_ATON_FORM = re.compile(r"(?:0[xX][0-9A-Fa-f]*|\d+)(?:\.(?:0[xX][0-9A-Fa-f]*|\d+)){0,3}\.?")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?")

_METADATA_ADDRESSES: Final = frozenset({
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OCI (also link-local)
    ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6 (unique-local, so not link-local)
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud (shared address space)
})
# First octets of canonical IPv4 text that need the full check; anything else with no
# allowlist is routable unicast, which lets the reader skip ipaddress for 100k records.
_SUSPECT_FIRST_OCTETS: Final = frozenset({0, 100, 127, 169, *range(224, 256)})


def parse_host(text: str) -> IPAddress | str:
    """A canonical IP literal → its address object; a valid DNS host name → the name, lower-cased.

    Anything else raises :class:`ValidationError` on field ``address``: non-canonical IPv4
    spellings, numeric look-alikes such as ``999.1.1.1``, scoped IPv6 and invalid names.
    """
    if not text:
        raise ValidationError("address", "must not be empty")
    if "%" in text:
        raise ValidationError("address", f"{shown(text)} is a scoped IPv6 address; its zone names an "
                                         "interface on the writer's host and is meaningless elsewhere")
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            raise ValidationError("address", f"{shown(text)} is not a valid IPv6 address") from None
    if _CANONICAL_IPV4.fullmatch(text):
        return ipaddress.IPv4Address(text)
    if _INET_ATON_FORM.fullmatch(text) or text.rstrip(".").rsplit(".", 1)[-1].isdigit():
        raise ValidationError("address", f"{shown(text)} is not a canonical IPv4 address (write a dotted "
                                         "quad of decimal numbers 0-255 without leading zeros)")
    name = text[:-1] if text.endswith(".") else text
    if len(name) > names.SUBDOMAIN_MAX or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValidationError("address", f"{shown(text)} is neither an IP address nor a valid DNS host name")
    return name.lower()


def ip_class_refusal(ip: IPAddress, allow_loopback: bool = False) -> str | None:
    """Why ``ip`` must never be handed to another cluster's sidecar, or None if it may be."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or _ipv4_compatible(ip)
        if embedded is not None:
            reason = ip_class_refusal(embedded, allow_loopback)
            return f"{reason} (as {ip})" if reason else None
    if ip in _METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata service address"
    if ip.is_loopback:
        return None if allow_loopback else f"{ip} is a loopback address (set allowLoopback=true on one machine)"
    if ip.is_unspecified:
        return f"{ip} is the unspecified address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if ip.is_reserved or ip == _BROADCAST:
        return f"{ip} is a reserved or broadcast address"
    return None


_BROADCAST: Final = ipaddress.IPv4Address("255.255.255.255")


def _ipv4_compatible(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside a deprecated ``::a.b.c.d`` form (RFC 4291 §2.5.5.1), if any."""
    packed = ip.packed
    if packed[:12] == bytes(12) and packed[12:] not in (bytes(4), b"\x00\x00\x00\x01"):
        return ipaddress.IPv4Address(packed[12:])
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """The address rules one reader or publisher applies; hashable so readers can share by it.

    ``cluster_cidrs`` maps a cluster to its allowlist (clusters absent from it have none);
    ``hostname_clusters`` are clusters with an allowlist that still accept host-name records.
    """

    cluster_cidrs: Mapping[str, tuple[IPNetwork, ...]] = field(default_factory=dict)
    hostname_clusters: frozenset[str] = frozenset()
    allow_loopback: bool = False

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.cluster_cidrs.items())), self.hostname_clusters, self.allow_loopback))

    @staticmethod
    def parse_cluster_cidrs(spec: str) -> tuple[dict[str, tuple[IPNetwork, ...]], frozenset[str]]:
        """Parse ``cluster-1=10.1.0.0/16,cluster-1=fd00:1::/48,cluster-2=hostnames``.

        A cluster may repeat; ``hostnames`` lets that cluster keep publishing host names.
        Raises :class:`ValueError` naming the bad entry.
        """
        cidrs: dict[str, list[IPNetwork]] = {}
        hostname_clusters: set[str] = set()
        for entry in (part.strip() for part in spec.split(",")):
            if not entry:
                continue
            cluster, sep, value = (part.strip() for part in entry.partition("="))
            if not sep or not cluster or not value:
                raise ValueError(f"{shown(entry)} is not cluster=CIDR (e.g. cluster-1=10.1.0.0/16)")
            try:
                names.check_label(cluster, "cluster")
            except ValidationError as error:
                raise ValueError(f"{shown(entry)}: {error.message}") from None
            cidrs.setdefault(cluster, [])
            if value == HOSTNAMES:
                hostname_clusters.add(cluster)
                continue
            try:
                cidrs[cluster].append(ipaddress.ip_network(value, strict=True))
            except ValueError as error:
                raise ValueError(f"{shown(entry)}: {error}") from None
        return {cluster: tuple(nets) for cluster, nets in cidrs.items()}, frozenset(hostname_clusters)

    @classmethod
    def from_spec(cls, spec: str = "", allow_loopback: bool = False) -> AddressPolicy:
        cidrs, hostname_clusters = cls.parse_cluster_cidrs(spec)
        return cls(cidrs, hostname_clusters, allow_loopback)

    def host_refusal(self, cluster: str, host: str) -> str | None:
        """None if a record of ``cluster`` may carry ``host``, else a short reason."""
        if not self.cluster_cidrs and _CANONICAL_IPV4.fullmatch(host):
            first = int(host[: host.index(".")])
            if first not in _SUSPECT_FIRST_OCTETS:
                return None  # routable unicast, no allowlist: the reader's hot path
        try:
            parsed = parse_host(host)
        except ValidationError as error:
            return error.message
        if isinstance(parsed, str):
            return self._hostname_refusal(cluster, parsed)
        return self.ip_refusal(cluster, parsed)

    def ip_refusal(self, cluster: str, ip: IPAddress) -> str | None:
        """None if ``cluster`` may advertise ``ip`` (also for addresses a host name resolved to)."""
        reason = ip_class_refusal(ip, self.allow_loopback)
        if reason is not None:
            return reason
        allowed = self.cluster_cidrs.get(cluster)
        if allowed is not None:
            candidates = [ip]
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                candidates.append(ip.ipv4_mapped)
            if not any(candidate in network for candidate in candidates for network in allowed):
                return f"{ip} is outside clusterCIDRs for {cluster}"
        return None

    def _hostname_refusal(self, cluster: str, name: str) -> str | None:
        if name == "localhost" or name.endswith(".localhost"):
            return None if self.allow_loopback else f"{name!r} is a loopback name (RFC 6761)"
        if cluster in self.cluster_cidrs and cluster not in self.hostname_clusters:
            return (f"host name {name!r} refused: {cluster} has a clusterCIDRs allowlist "
                    f"without {cluster}={HOSTNAMES}")
        return None


DEFAULT_POLICY: Final = AddressPolicy()
"""Refuse the dangerous classes; no allowlists; no loopback."""
