"""How the cache keeps each endpoint's zone, and the host → zone index the consul role asks.

**Storage.** An endpoint's cached value is its ``"host:port"`` string; an endpoint *with* a
zone stores ``"host:port\\0zone"`` in that same one string (:func:`stored`). So an endpoint
without a zone costs nothing more than before, and one with a zone costs the zone's few
characters inside a string that exists anyway — no per-endpoint zone object, tuple or dict
entry (a per-cluster ``instance → zone`` dict cost ~110 bytes per endpoint on the cold-start
layout of ``bench/cold_start.py``; this costs ~7). ``\\0`` cannot occur in an address (every
address is a validated IP literal or DNS name), and it sorts before every other character, so
stored values sort exactly like their addresses. The split happens when an app's snapshot is
built (:class:`~resolver.registry.entries.AppEndpoints`); the zone strings are interned there.

**Host index.** The consul role knows a caller only by the source address of its HTTP request,
so it asks "the zone of whichever record has this host" (:class:`HostZones`). Keeping that
index costs a host string and a dict entry per zoned endpoint (~100 bytes), so a cache builds it
only when first asked (the consul role with ``zoneAware``) and keeps it current from then on;
the component, which runs in every pod, never pays for it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from types import MappingProxyType

ZONE_MARK = "\0"
"""Separates an address from its zone in a stored value; sorts before any address character."""

Zones = Mapping[str, str]
"""``host:port`` → zone, for an app's endpoints that have a zone."""
NO_ZONES: Zones = MappingProxyType({})


def stored(address: str, zone: str) -> str:
    """The cached value of an endpoint: its address, with ``\\0zone`` appended when it has one."""
    return f"{address}{ZONE_MARK}{zone}" if zone else address


def address_of(value: str) -> str:
    """The ``host:port`` of a stored value (the same string object when it has no zone)."""
    return value.partition(ZONE_MARK)[0]


def split(value: str) -> tuple[str, str]:
    """``(host:port, zone)`` of a stored value; the zone is interned (thousands of endpoints share a few)."""
    address, _, zone = value.partition(ZONE_MARK)
    return address, (sys.intern(zone) if zone else "")


def host_of(address: str) -> str:
    """The host of ``host:port`` or ``[v6]:port``, as a socket reports a peer (no brackets)."""
    host = address.rpartition(":")[0]
    return host[1:-1] if host.startswith("[") else host


class HostZones:
    """``host → zone`` of every zoned endpoint. Two records may share a host (a pod registered
    twice, an address reused while the old record waits out its lease): the latest written one
    answers, and the zones of the others wait — in a dict that holds only such hosts — so that
    deleting one record never forgets, nor misstates, a host that still has another. Changed only
    under the cache's lock; read without it (a dict lookup is atomic)."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._zones: dict[str, str] = {}
        self._others: dict[str, list[str]] = {}  # host → zones of its other records (only hosts with some)
        for value in values:
            self.replace(None, value)

    def get(self, host: str) -> str:
        return self._zones.get(host, "")

    def __len__(self) -> int:
        return len(self._zones)

    def replace(self, old: str | None, new: str | None) -> None:
        """An endpoint's stored value went from ``old`` to ``new`` (None: absent)."""
        if old is not None and ZONE_MARK in old:
            address, zone = split(old)
            host = host_of(address)
            others = self._others.get(host)
            if not others:
                self._zones.pop(host, None)
            else:
                if self._zones.get(host) == zone:
                    self._zones[host] = others.pop()
                elif zone in others:
                    others.remove(zone)
                if not others:
                    del self._others[host]
        if new is not None and ZONE_MARK in new:
            address, zone = split(new)
            host = host_of(address)
            current = self._zones.get(host)
            if current is not None:
                self._others.setdefault(host, []).append(current)
            self._zones[host] = zone

    def snapshot(self) -> Mapping[str, str]:
        """A copy, for tests and debugging."""
        return dict(self._zones)
