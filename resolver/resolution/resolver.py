"""The resolve algorithm shared by the gRPC component, the CLI and the DNS bridge.

``resolve`` = validate the request → wait (bounded) until the reader is ready for the app →
look up the app's endpoints → drop remote clusters if the registry is stale → leave out what
this process found unreachable (:mod:`resolver.reachability`; never everything) → let the app's
policy choose candidates → with ``zoneAware``, keep the caller's zone of them while it can carry
the load (:mod:`resolver.resolution.zones`) → pick, or fall back to the ``template`` name (or NOT_FOUND).

What "ready" means is the reader's business (:meth:`~resolver.registry.supervised.SupervisedReader.ready_for`:
the full mirror's first list, or the on-demand scope's first read of the app), so no caller
asks which scope it holds. A caller that must bound its waits itself (the component: slots,
shutdown) asks :meth:`Resolver.would_wait` and waits through :meth:`Resolver.wait_until_ready`,
and validates and falls back through this class too — never by repeating its checks.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from enum import StrEnum

from resolver.config import Settings
from resolver.errors import InvalidRequest, NotFound, ValidationError
from resolver.reachability import Reachability
from resolver.records import names
from resolver.registry.entries import Snapshot
from resolver.registry.supervised import SupervisedReader
from resolver.resolution.policy import Policy, PolicyBook, Selection, pick_one, spread
from resolver.resolution.zones import ZoneRule, narrow

MAX_ID_LENGTH = 256
"""Longer ids are refused before any parsing (an app id is at most 63 characters)."""
MEMO_LIMIT = 10_000
"""Entries kept in each per-resolver memo before it is cleared (bounds memory under random ids)."""


class Outcome(StrEnum):
    REGISTRY = "registry"
    FALLBACK = "fallback"


@dataclass(frozen=True, slots=True)
class Target:
    app_id: str
    namespace: str


@dataclass(frozen=True, slots=True)
class Candidates:
    """What the registry and the policy offer for one target (empty selection: fall back)."""

    target: Target
    policy: Policy
    selection: Selection


class Resolver:
    """Answers resolves for one initialized component instance (or the CLI, or the DNS bridge)."""

    def __init__(self, settings: Settings, reader: SupervisedReader, caller_namespace: str = "",
                 rng: random.Random | None = None, reachability: Reachability | None = None) -> None:
        self.settings = settings
        self.reader = reader
        self.reachability = reachability
        self.caller_namespace = caller_namespace or "default"
        self.policies = PolicyBook(settings)
        self.rng = rng or random.Random()
        # Hot-path memos (a resolve costs ~1 µs with them, ~6 µs without): parsed targets, and each
        # app's selection for the registry snapshot it was computed from (a registry change makes
        # a new snapshot object, so an entry is used only while its snapshot is still current, and
        # while the reachability view it was gated by is current).
        self._targets: dict[tuple[str, str], Target] = {}
        self._selections: dict[Target, tuple[Snapshot, int, Policy, Selection, bool]] = {}
        # Zones (:mod:`.zones`) narrow the policy's selection per caller zone: a memo of its own,
        # keyed by (target, zone), valid while the selection is the same object. That suffices:
        # any change of the app's records (a zone too) makes a new snapshot, hence a new
        # selection, so a selection that is still the same object saw the same zone map.
        # The zone-less path never enters it.
        self.zone_rule = ZoneRule.of(settings)
        self._zone_aware = self.zone_rule.aware
        self._in_zone: dict[tuple[Target, str], tuple[Selection, Candidates]] = {}

    def close(self) -> None:
        """Stop what this resolver runs in the background (its reachability probes)."""
        if self.reachability is not None:
            self.reachability.stop()

    @property
    def version(self) -> int:
        """Grows whenever an answer may change: the registry view's version plus the reachability
        view's (the DNS response cache and the consul role's index follow it)."""
        gate = self.reachability
        return self.reader.cache.version + (gate.version if gate is not None else 0)

    # -- request parsing ------------------------------------------------------------------

    def target(self, request_id: str, request_namespace: str = "") -> Target:
        """Split ``id`` / ``id.namespace``, default the namespace, validate both."""
        memo_key = (request_id, request_namespace)
        found = self._targets.get(memo_key)
        if found is None:
            found = self._parse_target(request_id, request_namespace)
            if len(self._targets) >= MEMO_LIMIT:
                self._targets.clear()
            self._targets[memo_key] = found
        return found

    def _parse_target(self, request_id: str, request_namespace: str) -> Target:
        if len(request_id) > MAX_ID_LENGTH or len(request_namespace) > MAX_ID_LENGTH:
            raise InvalidRequest("id" if len(request_id) > MAX_ID_LENGTH else "namespace",
                                 f"longer than {MAX_ID_LENGTH} characters")
        app_id, dot, id_namespace = request_id.partition(".")
        if dot and (not id_namespace or "." in id_namespace):
            raise InvalidRequest("id", f"{request_id[:80]!r} is not appid or appid.namespace")
        if id_namespace and request_namespace and id_namespace != request_namespace:
            raise InvalidRequest("namespace", f"{request_namespace!r} contradicts the namespace "
                                 f"{id_namespace!r} in id {request_id!r}")
        namespace = id_namespace or request_namespace or self.caller_namespace
        try:
            names.check_app_id(app_id, "id")
            names.check_label(namespace, "namespace")
        except ValidationError as error:
            raise InvalidRequest(error.field, error.message) from None
        return Target(app_id, namespace)

    def request(self, request_id: str, request_namespace: str, port: int) -> tuple[Target, int]:
        """Validate a request once, in the order every answer reports errors: the port, then id and namespace."""
        port = self._checked_port(port)
        return self.target(request_id, request_namespace), port

    # -- readiness ------------------------------------------------------------------------

    def would_wait(self, target: Target) -> bool:
        """Would resolving ``target`` now wait for the registry (first sync, or the app's first read)?"""
        return self.reader.would_wait(target.namespace, target.app_id, self.settings.initial_sync_wait)

    def wait_until_ready(self, target: Target, stop: threading.Event | None = None) -> bool:
        """Wait (bounded by ``initialSyncWait``; ended at once by ``stop``) until ``target`` can be
        answered from the registry; False means its resolve gets the fallback."""
        return self.reader.ready_for(target.namespace, target.app_id, self.settings.initial_sync_wait, stop)

    # -- lookup ---------------------------------------------------------------------------

    def _endpoints(self, target: Target) -> tuple[Snapshot, bool]:
        """The app's endpoints, and whether they are the cache's own (memoizable) snapshot."""
        reader = self.reader
        self.wait_until_ready(target)
        endpoints = reader.cache.lookup(target.namespace, target.app_id)
        stale_after = self.settings.stale_after
        if stale_after and endpoints and reader.unreachable_for() > stale_after:
            own = self.settings.cluster_name
            return ({own: endpoints[own]} if own in endpoints else {}), False
        return endpoints, True

    def candidates(self, target: Target, caller_zone: str | None = None) -> Candidates:
        """What the app's policy chooses for ``target`` — narrowed to the caller's zone under
        ``zoneAware`` (:func:`~resolver.resolution.zones.narrow`). ``caller_zone`` None means
        the ``zone`` setting; "" means the zone is not known (the answer stays cluster-level)."""
        found = self._chosen(target)
        if not self._zone_aware or not found.selection:
            return found
        zone = self.settings.zone if caller_zone is None else caller_zone
        return self._zoned(found, zone) if zone else found

    def _zoned(self, found: Candidates, zone: str) -> Candidates:
        target = found.target
        memo = self._in_zone.get((target, zone))
        if memo is not None and memo[0] is found.selection:
            return memo[1]
        narrowed = narrow(found.selection, self.reader.cache.zones(target.namespace, target.app_id), zone,
                          self.zone_rule)
        zoned = found if narrowed is found.selection else Candidates(target, found.policy, narrowed)
        if len(self._in_zone) >= MEMO_LIMIT:
            self._in_zone.clear()
        self._in_zone[(target, zone)] = (found.selection, zoned)
        return zoned

    def _chosen(self, target: Target) -> Candidates:
        """The policy's choice among the app's (reachable) endpoints, memoized per registry snapshot."""
        endpoints, shared = self._endpoints(target)
        gate = self.reachability
        gate_version = 0
        if gate is not None:
            if endpoints:  # only apps the registry holds: random names must not grow the demand set
                gate.asked(target.namespace, target.app_id)
            gate_version = gate.version
        memo = self._selections.get(target)
        if memo is not None and shared and memo[0] is endpoints and memo[1] == gate_version:
            if memo[4]:
                gate.count_fail_open()  # type: ignore[union-attr]  # only set when gated
            return Candidates(target, memo[2], memo[3])
        policy = self.policies.for_app(target.namespace, target.app_id)
        gated = gate.apply(endpoints) if gate is not None and endpoints else endpoints
        selection = policy.select(gated, self.settings.cluster_name) if gated else ()
        failed_open = False
        if not selection and gated is not endpoints:
            # Gating left the policy nothing — every candidate unreachable or ejected, Locality's
            # only local endpoint ejected, only weight-0 clusters left: fail open, answer as if
            # probing were off. The one place this is decided; never remove the last option.
            selection = policy.select(endpoints, self.settings.cluster_name)
            failed_open = bool(selection)
            if failed_open:
                gate.count_fail_open()  # type: ignore[union-attr]  # gated differs only with a gate
        if shared:
            if len(self._selections) >= MEMO_LIMIT:
                self._selections.clear()
            self._selections[target] = (endpoints, gate_version, policy, selection, failed_open)
        return Candidates(target, policy, selection)

    def fallback(self, target: Target, port: int) -> str:
        if self.settings.fallback == "none":
            raise NotFound(f"no endpoint for app {target.app_id!r} in namespace {target.namespace!r} "
                           "and fallback is none")
        return self.settings.template.format(id=target.app_id, namespace=target.namespace,
                                             clusterDomain=self.settings.cluster_domain, port=port)

    # -- the two RPCs ---------------------------------------------------------------------

    def _checked_port(self, port: int) -> int:
        try:
            return names.check_port(port, "port")
        except ValidationError as error:
            raise InvalidRequest("port", error.message) from None

    def resolve(self, request_id: str, request_namespace: str, port: int) -> tuple[str, Outcome, Policy]:
        """ResolveID: one address, and whether it came from the registry or the fallback."""
        return self.answer(*self.request(request_id, request_namespace, port))

    def resolve_multi(self, request_id: str, request_namespace: str, port: int,
                      ) -> tuple[list[str], Outcome, Policy]:
        """ResolveIDMulti: the weighted candidate list (see :func:`spread`), or the fallback."""
        return self.answer_multi(*self.request(request_id, request_namespace, port))

    def answer(self, target: Target, port: int, caller_zone: str | None = None) -> tuple[str, Outcome, Policy]:
        """:meth:`resolve` for a request already validated by :meth:`request` (``caller_zone``: :meth:`candidates`)."""
        found = self.candidates(target, caller_zone) if self._zone_aware else self._chosen(target)
        if found.selection:
            return pick_one(found.selection, self.rng), Outcome.REGISTRY, found.policy
        return self.fallback(target, port), Outcome.FALLBACK, found.policy

    def answer_multi(self, target: Target, port: int,
                     caller_zone: str | None = None) -> tuple[list[str], Outcome, Policy]:
        """:meth:`resolve_multi` for a validated request (``caller_zone``: :meth:`candidates`)."""
        found = self.candidates(target, caller_zone) if self._zone_aware else self._chosen(target)
        if found.selection:
            return spread(found.selection, self.rng), Outcome.REGISTRY, found.policy
        return [self.fallback(target, port)], Outcome.FALLBACK, found.policy
