"""Cross-cluster traffic policies: which clusters' endpoints are candidates, and how much each weighs.

The one interface is :class:`Policy` — ``select(endpoints, caller_cluster) -> Selection`` —
with three implementations (README "Cross-cluster traffic policies"):

* :class:`Locality` — only the caller's cluster; none → fallback.
* :class:`FailOver` — the caller's cluster if it has endpoints; else the first cluster of
  ``failoverOrder`` that has any; else every other cluster, weighted.
* :class:`ActiveActive` — every cluster with weight > 0, weighted.

A weight of 0 excludes a cluster under every policy. Without ``clusterName`` the caller is in
no cluster, so every cluster counts as remote. :func:`pick_one` and :func:`spread` turn a
:class:`Selection` into ResolveID's one address and ResolveIDMulti's weighted list.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from resolver.config import PolicyName, Settings
from resolver.config.settings import DEFAULT_WEIGHT
from resolver.registry.entries import Snapshot

MULTI_LIMIT = 1000
"""Longest ResolveIDMulti list; see :func:`spread` for the rounding when weights need more."""


@dataclass(frozen=True, slots=True)
class Candidate:
    cluster: str
    weight: int
    addresses: tuple[str, ...]


Selection = tuple[Candidate, ...]


class Policy(Protocol):
    @property
    def name(self) -> PolicyName: ...

    def select(self, endpoints: Snapshot, caller_cluster: str) -> Selection:
        """The candidate clusters for one app; empty means "use the fallback"."""
        ...


@dataclass(frozen=True)
class _Weighted:
    weights: Mapping[str, int]

    def weight(self, cluster: str) -> int:
        return self.weights.get(cluster, DEFAULT_WEIGHT)

    def _candidates(self, endpoints: Snapshot, clusters: list[str] | None = None) -> Selection:
        chosen = sorted(endpoints) if clusters is None else clusters
        return tuple(Candidate(c, w, endpoints[c]) for c in chosen if (w := self.weight(c)) > 0 and endpoints.get(c))


@dataclass(frozen=True)
class Locality(_Weighted):
    name: PolicyName = PolicyName.LOCALITY

    def select(self, endpoints: Snapshot, caller_cluster: str) -> Selection:
        return self._candidates(endpoints, [caller_cluster]) if caller_cluster else ()


@dataclass(frozen=True)
class FailOver(_Weighted):
    failover_order: tuple[str, ...] = ()
    name: PolicyName = PolicyName.FAILOVER

    def select(self, endpoints: Snapshot, caller_cluster: str) -> Selection:
        if caller_cluster:
            local = self._candidates(endpoints, [caller_cluster])
            if local:
                return local
        for cluster in self.failover_order:
            if cluster != caller_cluster:
                preferred = self._candidates(endpoints, [cluster])
                if preferred:
                    return preferred
        return self._candidates(endpoints, [c for c in sorted(endpoints) if c != caller_cluster])


@dataclass(frozen=True)
class ActiveActive(_Weighted):
    name: PolicyName = PolicyName.ACTIVE_ACTIVE

    def select(self, endpoints: Snapshot, caller_cluster: str) -> Selection:
        return self._candidates(endpoints)


def build_policy(name: PolicyName, weights: Mapping[str, int], failover_order: tuple[str, ...]) -> Policy:
    if name is PolicyName.LOCALITY:
        return Locality(weights)
    if name is PolicyName.ACTIVE_ACTIVE:
        return ActiveActive(weights)
    return FailOver(weights, failover_order)


class PolicyBook:
    """The policy for every app: the global one, or a ``policies`` override for ``ns/app``.

    An override's fields replace the global field of the same name; fields it leaves out
    are inherited. Built once per Init, so a resolve does one dict lookup.
    """

    def __init__(self, settings: Settings) -> None:
        self.default = build_policy(settings.policy, settings.cluster_weights, settings.failover_order)
        self._overrides: dict[str, Policy] = {
            app_key: build_policy(
                override.policy or settings.policy,
                settings.cluster_weights if override.cluster_weights is None else override.cluster_weights,
                settings.failover_order if override.failover_order is None else override.failover_order,
            )
            for app_key, override in settings.policies.items()
        }

    def for_app(self, namespace: str, app_id: str) -> Policy:
        if not self._overrides:
            return self.default
        return self._overrides.get(f"{namespace}/{app_id}", self.default)


def pick_one(selection: Selection, rng: random.Random) -> str:
    """ResolveID: a cluster by weight, then one of its instances uniformly."""
    if len(selection) == 1:
        candidate = selection[0]
    else:
        candidate = rng.choices(selection, weights=[c.weight for c in selection])[0]
    return rng.choice(candidate.addresses)


def spread(selection: Selection, rng: random.Random, limit: int = MULTI_LIMIT) -> list[str]:
    """ResolveIDMulti: a list whose uniform pick follows the weights (daprd picks uniformly).

    Exact when possible: cluster *i* with weight *wᵢ* and *nᵢ* instances gets each instance
    repeated *kᵢ* times with *kᵢ·nᵢ ∝ wᵢ*, the smallest such integers. When that list would
    exceed ``limit`` entries, cluster *i* gets ``round(limit·wᵢ/Σw)`` entries (at least one;
    largest remainders first) filled round-robin from a shuffled copy of its instances:
    cluster shares are then within ``1/limit`` of the weights and a cluster's instances
    differ by at most one entry.
    """
    if not selection:
        return []
    if len(selection) == 1:
        addresses = list(selection[0].addresses)
        return addresses if len(addresses) <= limit else rng.sample(addresses, limit)
    shares = [Fraction(c.weight, len(c.addresses)) for c in selection]
    scale = math.lcm(*(share.denominator for share in shares))
    scaled = [int(share * scale) for share in shares]
    divisor = math.gcd(*scaled)
    repeats = [value // divisor for value in scaled]
    if sum(r * len(c.addresses) for r, c in zip(repeats, selection, strict=True)) <= limit:
        return [address for r, c in zip(repeats, selection, strict=True) for address in c.addresses for _ in range(r)]
    return _apportion(selection, rng, limit)


def _apportion(selection: Selection, rng: random.Random, limit: int) -> list[str]:
    total = sum(c.weight for c in selection)
    quotas = [limit * c.weight / total for c in selection]
    counts = [max(1, math.floor(q)) for q in quotas]
    by_remainder = sorted(range(len(selection)), key=lambda i: quotas[i] - math.floor(quotas[i]), reverse=True)
    for i in by_remainder[: max(0, limit - sum(counts))]:
        counts[i] += 1
    result: list[str] = []
    for count, candidate in zip(counts, selection, strict=True):
        shuffled = list(candidate.addresses)
        rng.shuffle(shuffled)
        result.extend(shuffled[i % len(shuffled)] for i in range(count))
    return result
