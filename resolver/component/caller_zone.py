"""The calling sidecar's zone, for ``zoneAware`` answers of one component instance.

daprd's Init describes its sidecar (``instance``: app id, namespace, pod IP, internal gRPC
port) but not its zone, and a pod can read its node's zone label only with RBAC nobody grants
to every application. The registry knows it: the publisher writes each pod's node zone into the
pod's record. So the caller's zone is

* the ``zone`` setting when given — an explicit statement beats a discovered one, and it is
  there from the first resolve (self-hosted sidecars and VMs have no publisher to tell);
* else the zone of the caller's own record: the record of Init's app whose address is Init's
  ``address:dapr_internal_port`` (whose host is Init's address, when Init gave no port).

daprd initializes its components before its pod is Ready and the publisher publishes Ready
pods, so the record usually appears *after* Init: it is looked for lazily, on a resolve, when
the registry's version has changed since the last look (a dict lookup; nothing while nothing
changed). Once found it is final — a pod never changes zone — and costs one attribute read per
resolve. Until then answers are cluster-level.

The on-demand cache holds only apps it was asked about, and a caller rarely resolves its own
app; so there the caller's app is followed too (one of the followed apps), by a background
thread — never on a resolve's path — at most every :data:`FOLLOW_RETRY` seconds.
"""

from __future__ import annotations

import logging
import threading
import time

from resolver.config import Settings
from resolver.records import names
from resolver.registry.supervised import SupervisedReader
from resolver.registry.zone_index import host_of

log = logging.getLogger(__name__)

FOLLOW_WAIT = 10.0
"""How long the background read of the caller's app may wait for the registry."""
FOLLOW_RETRY = 30.0
"""Least time between two background reads of the caller's app (on-demand scope)."""


class CallerZone:
    """``current()``: the caller's zone, or "" while it is not known (cluster-level answers)."""

    def __init__(self, settings: Settings, reader: SupervisedReader, app_id: str, namespace: str, address: str,
                 internal_port: int) -> None:
        """The caller as Init's ``instance`` describes it."""
        self._zone = settings.zone
        # Final from the start: a given zone, zones off (nobody asks), or no sidecar to look for.
        self._final = bool(settings.zone) or not settings.zone_aware or not app_id or not address
        self._reader = reader
        self._app = (namespace or "default", app_id)
        self._host = address
        self._address = names.join_host_port(address, internal_port) if internal_port else ""
        self._seen = -1  # the registry version last looked at
        self._followed_at = -FOLLOW_RETRY
        self._follow_lock = threading.Lock()

    def current(self) -> str:
        if self._final:
            return self._zone
        version = self._reader.cache.version
        if version != self._seen:
            self._seen = version
            zone = self._look_up()
            if zone:
                self._zone, self._final = zone, True
                log.info("caller %s/%s (%s) is in zone %s (from its registry record)", *self._app,
                         self._address or self._host, zone)
        return self._zone

    def _look_up(self) -> str:
        zones = self._reader.cache.zones(*self._app)
        if self._address:
            zone = zones.get(self._address, "")
        else:
            zone = next((zone for address, zone in zones.items() if host_of(address) == self._host), "")
        if not zone:
            self._follow_own_app()
        return zone

    def _follow_own_app(self) -> None:
        """On demand, make the reader follow the caller's app (the full mirror has it already)."""
        reader = self._reader
        if not reader.synced or not reader.would_wait(*self._app, FOLLOW_WAIT):
            return
        with self._follow_lock:
            now = time.monotonic()
            if now - self._followed_at < FOLLOW_RETRY:
                return
            self._followed_at = now
        threading.Thread(target=self._follow, name=f"caller-zone {self._app[0]}/{self._app[1]}", daemon=True).start()

    def _follow(self) -> None:
        try:
            self._reader.ready_for(*self._app, FOLLOW_WAIT)
        except Exception:  # a background nicety: never more than a debug line
            log.debug("reading the caller's own app %s/%s failed", *self._app, exc_info=True)
