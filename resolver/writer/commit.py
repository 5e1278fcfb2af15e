"""How a set of puts and deletes reaches etcd, whatever its size and whatever one record holds.

Split from :mod:`resolver.writer.writer` along the line between *what* and *how*: the writer
decides what must change (its desired state against what it wrote); this module gets one
change set into etcd and says what made it:

* at most :data:`COMMIT_CHUNK` puts per step (the gateway turns a step into transactions of at
  most 128 operations), keeping our leases — and a predecessor's — alive between steps, since a
  100k-record write takes longer than a short TTL; leases found lost meanwhile are reported;
* a record larger than the registry's record limit is never sent, and one etcd refuses as too
  large is isolated by bisecting the transaction that carried it; either is skipped, counted and
  reported once, and the rest is written — one bad entry never freezes a publication.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from resolver.errors import RegistryError
from resolver.etcd.gateway import EtcdGateway
from resolver.etcd.leases import LeasePool
from resolver.etcd.range_reads import too_large
from resolver.observability import metrics
from resolver.records.schema import MAX_RECORD_BYTES, EndpointRecord

log = logging.getLogger(__name__)

COMMIT_CHUNK = 1024
"""Puts per step of a large commit; leases are kept alive between steps."""

Put = tuple[str, bytes, int | None]
"""``(key, value, lease)``."""
Source = Mapping[str, EndpointRecord | None]
"""The records the puts were made from, by key (what an oversize record is remembered by)."""


@dataclass
class Committed:
    puts: list[Put] = field(default_factory=list)
    """The puts etcd took (without the oversize ones)."""
    lost: set[str] = field(default_factory=set)
    """Keys whose lease was found lost while keeping leases alive between steps: write them again."""


class Committer:
    """One writer's way into etcd; remembers the records it skipped as oversize (see :meth:`is_oversize`)."""

    def __init__(self, gateway: EtcdGateway, leases: LeasePool, cluster: str) -> None:
        self.gateway = gateway
        self.leases = leases
        self.cluster = cluster
        self._oversize: dict[str, EndpointRecord] = {}

    def is_oversize(self, key: str, record: EndpointRecord) -> bool:
        """True when exactly this record was skipped as too large: re-putting it would fail again."""
        return self._oversize.get(key) == record

    def commit(self, puts: Sequence[Put], deletes: list[str], source: Source) -> Committed | None:
        """Apply ``puts`` and ``deletes`` (deletes with the first step); None when there was nothing to do."""
        puts = [put for put in puts if not self._refuse_oversize(put, source)]
        if not puts and not deletes:
            return None
        done = Committed()
        for start in range(0, max(len(puts), 1), COMMIT_CHUNK):
            part, part_deletes = puts[start : start + COMMIT_CHUNK], deletes if start == 0 else []
            try:
                self.gateway.apply(part, part_deletes)
            except RegistryError as error:
                if not too_large(error):
                    raise
                self.gateway.apply([], part_deletes)
                part = self._apply_split(part, source)
            done.puts += part
            # A 100k-record write takes longer than a short TTL: keep our (and a predecessor's) leases alive.
            for keys in self.leases.keepalive(only_due=True):
                done.lost |= keys
        return done

    def _refuse_oversize(self, put: Put, source: Source, why: str = "") -> bool:
        key, value, _ = put
        record = source[key]
        assert record is not None
        known = self._oversize.get(key) == record
        if not why and not known and len(value) <= MAX_RECORD_BYTES:
            return False
        if not known:
            self._oversize[key] = record
            metrics.PUBLISHER_OVERSIZE.inc()
            log.error("cluster %s: record %s skipped: %s (%d bytes); the other records are written", self.cluster,
                      key, why or f"larger than the registry's {MAX_RECORD_BYTES}-byte record limit", len(value))
        self.leases.release(key)
        return True

    def _apply_split(self, puts: list[Put], source: Source) -> list[Put]:
        """Bisect a transaction etcd refused for size until the offending records are isolated."""
        try:
            self.gateway.apply(puts, [])
            return puts
        except RegistryError as error:
            if not too_large(error):
                raise
            if len(puts) == 1:
                self._refuse_oversize(puts[0], source, f"etcd refuses it ({error})")
                return []
        middle = len(puts) // 2
        return self._apply_split(puts[:middle], source) + self._apply_split(puts[middle:], source)
