"""Zones before clusters: narrow the policy's choice to the caller's zone while the zone can carry it.

A cross-zone hop costs latency and, on every public cloud, money per byte; a cross-cluster one
costs more. The policy (:mod:`resolver.resolution.policy`) already decides *which clusters*;
this decides, inside that choice, whether to stay in the caller's zone. It runs after the
policy, so under FailOver the order is: the caller's zone in the caller's cluster → the caller's
cluster → the next clusters (where the caller's zone is preferred again).

**Overflow rule.** Staying in the zone is right only while the zone can take the traffic. The
answer is narrowed to the in-zone endpoints only if there are at least ``zoneMinEndpoints`` of
them *and* they are at least ``zoneMinPercent`` % of the selection's endpoints; otherwise the
policy's selection is answered unchanged. The count bound keeps one surviving pod from taking a
whole zone's calls; the share bound keeps a thin zone from being overloaded: with callers spread
evenly over three zones, a zone holding 10 % of the endpoints would give each of them about 3.3×
the load of an even spread (1/3 of the calls on 1/10 of the endpoints); at the 20 % default the
worst case is 1.7×, and a zone of an even three-zone spread (33 %) stays in. Endpoints without a
zone are never in the caller's zone.

Weights are per cluster, as in the policy: a narrowed selection keeps each remaining cluster's
weight (clusters with no endpoint in the zone drop out), so ActiveActive's shares hold among the
clusters that have the zone. Pure functions of their arguments: the resolver memoizes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from resolver.config import Settings
from resolver.resolution.policy import Candidate, Selection


@dataclass(frozen=True, slots=True)
class ZoneRule:
    """``zoneAware``, ``zoneMinEndpoints`` and ``zoneMinPercent``: whether, and while what holds, to stay in zone."""

    aware: bool = False
    min_endpoints: int = 2
    min_percent: int = 20

    @classmethod
    def of(cls, settings: Settings) -> ZoneRule:
        return cls(settings.zone_aware, settings.zone_min_endpoints, settings.zone_min_percent)

    def holds(self, in_zone: int, total: int) -> bool:
        """May a selection of ``total`` endpoints, ``in_zone`` of them in the caller's zone, stay in zone?"""
        return in_zone >= self.min_endpoints and in_zone * 100 >= self.min_percent * total


def narrow(selection: Selection, zones: Mapping[str, str], caller_zone: str, rule: ZoneRule) -> Selection:
    """``selection`` narrowed to the endpoints whose zone (in ``zones``, ``address → zone``) is
    ``caller_zone``, if ``rule`` lets the caller stay in its zone; else ``selection`` itself.

    Also ``selection`` itself when the rule is off, the zone unknown, or every endpoint already
    in the zone — so callers may compare by identity.
    """
    if not rule.aware or not caller_zone or not selection or not zones:
        return selection
    narrowed: list[Candidate] = []
    in_zone = total = 0
    for candidate in selection:
        total += len(candidate.addresses)
        mine = tuple(address for address in candidate.addresses if zones.get(address) == caller_zone)
        if mine:
            in_zone += len(mine)
            narrowed.append(candidate if len(mine) == len(candidate.addresses)
                            else Candidate(candidate.cluster, candidate.weight, mine))
    if in_zone == total or not rule.holds(in_zone, total):
        return selection
    return tuple(narrowed)
