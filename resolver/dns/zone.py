"""Names inside the bridge's zone: what a query name denotes, case-insensitively.

::

    {zone}                               the apex: SOA, NS
    ns.{zone}                            the bridge's own name server name: A/AAAA
    {namespace}.{zone}                   an empty non-terminal: exists, no data (RFC 8020)
    {id}.{namespace}.{zone}              an app
    {instance}.{id}.{namespace}.{zone}   one instance of an app (the SRV targets)
    _{label}…{id}.{namespace}.{zone}     service labels (gRPC's ``_grpc_config`` TXT): no data

DNS names are case-insensitive (RFC 4343), registry keys are not: app ids may contain
capitals (``OrderSvc``). Labels are folded to lower case here, and :class:`AppSpellings`
maps a folded app id back to the spelling the registry uses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

import dns.name

from resolver.errors import ValidationError
from resolver.records import names
from resolver.registry.cache import RegistryCache

NS_LABEL = "ns"
REBUILD_SECONDS = 0.25
"""Least time between two rebuilds of the mixed-case index (a rebuild walks every app)."""


class Kind(Enum):
    APEX = 1
    NS_HOST = 2
    NAMESPACE = 3
    APP = 4
    INSTANCE = 5
    SERVICE = 6  # _grpc_config and other underscore labels: NODATA, never SERVFAIL
    NONE = 7  # cannot exist: NXDOMAIN


@dataclass(frozen=True, slots=True)
class ZoneName:
    kind: Kind
    namespace: str = ""
    app: str = ""  # folded to lower case
    instance: str = ""


NONE = ZoneName(Kind.NONE)


def parse(qname: dns.name.Name, zone: dns.name.Name) -> ZoneName:
    """What ``qname`` (already known to be inside ``zone``) denotes."""
    depth = len(qname.labels) - len(zone.labels)
    try:
        labels = [label.decode("ascii").lower() for label in qname.labels[:depth]]
    except UnicodeDecodeError:
        return NONE
    if not labels:
        return ZoneName(Kind.APEX)
    try:
        namespace = names.check_label(labels[-1], "namespace")
        if len(labels) == 1:
            return ZoneName(Kind.NS_HOST if namespace == NS_LABEL else Kind.NAMESPACE, namespace)
        app = names.check_app_id(labels[-2], "id")
        if len(labels) == 2:
            return ZoneName(Kind.APP, namespace, app)
        if labels[0].startswith("_"):
            return ZoneName(Kind.SERVICE, namespace, app)
        instance = names.check_subdomain(".".join(labels[:-2]), "instance")
    except ValidationError:
        return NONE
    return ZoneName(Kind.INSTANCE, namespace, app, instance)


class AppSpellings:
    """Folded ``(namespace, app id)`` → the registry's spelling(s) of that app id.

    Lower-case ids (the usual case) are found directly. Only ids that differ from their
    folded form are indexed. The index is rebuilt on a miss when the number of apps changed
    (an app appeared or left), or when the registry changed at all and the index is older
    than :data:`REBUILD_SECONDS` — so a flood of unknown names under endpoint churn costs at
    most a few walks per second. When two spellings fold together, the lexicographically
    first one with endpoints wins — they are the same DNS name.
    """

    def __init__(self, cache: RegistryCache) -> None:
        self.cache = cache
        self._index: dict[tuple[str, str], tuple[str, ...]] = {}
        self._revision = -1
        self._apps = -1
        self._built_at = 0.0

    def spelling(self, namespace: str, folded: str) -> str:
        """The registry's spelling of ``folded`` (``folded`` itself when nothing else matches)."""
        if self.cache.lookup(namespace, folded):
            return folded
        self._refresh()
        for spelling in self._index.get((namespace, folded), ()):
            if self.cache.lookup(namespace, spelling):
                return spelling
        return folded

    def _refresh(self) -> None:
        revision, apps = self.cache.revision, self.cache.app_count()
        now = time.monotonic()
        if apps == self._apps and (revision == self._revision or now - self._built_at < REBUILD_SECONDS):
            return
        index: dict[tuple[str, str], list[str]] = {}
        for namespace, app_id in _app_keys(self.cache):
            folded = app_id.lower()
            if folded != app_id:
                index.setdefault((namespace, folded), []).append(app_id)
        self._index = {key: tuple(sorted(found)) for key, found in index.items()}
        self._revision, self._apps, self._built_at = revision, apps, now


def _app_keys(cache: RegistryCache) -> list[tuple[str, str]]:
    """Every ``(namespace, app id)`` in the cache."""
    return cache.app_keys()
