"""Zones before clusters: the overflow rule as a pure function (resolver/resolution/zones.py), its
properties under random selections, and the order it gives each policy."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.config import Layer, PolicyName, load_settings
from resolver.errors import ConfigValueError
from resolver.resolution.policy import Candidate, build_policy
from resolver.resolution.zones import ZoneRule, narrow

ON = ZoneRule(aware=True, min_endpoints=2, min_percent=20)
ZONES = ("z1", "z2", "z3")


def endpoints(cluster: str, *zones: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """Addresses of one cluster and their zones ("" = no zone)."""
    addresses = tuple(f"10.{cluster[-1]}.0.{i}:50002" for i in range(len(zones)))
    return addresses, {a: z for a, z in zip(addresses, zones, strict=True) if z}


def test_the_rule_counts_and_shares() -> None:
    assert ON.holds(2, 10) and ON.holds(20, 100)
    assert not ON.holds(1, 2), "one endpoint alone is not enough, whatever its share"
    assert not ON.holds(19, 100), "under 20 % of the endpoints"
    assert ZoneRule(True, 1, 0).holds(1, 1000)
    assert ZoneRule(True, 2, 100).holds(3, 3) and not ZoneRule(True, 2, 100).holds(3, 4)


def test_narrow_keeps_cluster_weights_and_drops_clusters_without_the_zone() -> None:
    a, za = endpoints("c1", "z1", "z2", "z1", "z3")
    b, zb = endpoints("c2", "z1", "z2")
    c, zc = endpoints("c3", "z2", "z2")
    selection = (Candidate("c1", 100, a), Candidate("c2", 300, b), Candidate("c3", 50, c))
    narrowed = narrow(selection, {**za, **zb, **zc}, "z1", ON)
    assert narrowed == (Candidate("c1", 100, (a[0], a[2])), Candidate("c2", 300, (b[0],)))


def test_overflow_answers_the_selection_itself() -> None:
    a, za = endpoints("c1", "z1", "z2", "z2", "z2", "z2", "z2")  # z1: 1 of 6
    selection = (Candidate("c1", 100, a),)
    assert narrow(selection, za, "z1", ON) is selection, "1 endpoint < zoneMinEndpoints"
    assert narrow(selection, za, "z1", ZoneRule(True, 1, 20)) is selection, "1/6 = 17 % < 20 %"
    assert narrow(selection, za, "z1", ZoneRule(True, 1, 10)) == (Candidate("c1", 100, (a[0],)),)


@pytest.mark.parametrize(("rule", "zone"), [(ZoneRule(False, 1, 0), "z1"), (ON, "")])
def test_off_or_unknown_zone_changes_nothing(rule: ZoneRule, zone: str) -> None:
    a, za = endpoints("c1", "z1", "z1", "z1", "z2")
    selection = (Candidate("c1", 100, a),)
    assert narrow(selection, za, zone, rule) is selection


def test_endpoints_without_a_zone_are_never_in_the_callers_zone() -> None:
    a, za = endpoints("c1", "", "", "", "z1", "z1")
    selection = (Candidate("c1", 100, a),)
    assert narrow(selection, za, "z1", ON) == (Candidate("c1", 100, a[3:]),)
    assert narrow(selection, za, "", ON) is selection
    a, za = endpoints("c1", "", "", "")
    assert narrow((Candidate("c1", 100, a),), za, "z1", ON) == (Candidate("c1", 100, a),)


def test_failover_order_is_zone_then_cluster_then_other_clusters() -> None:
    """Same zone in the caller's cluster → the caller's cluster → other clusters (zone first there too)."""
    policy = build_policy(PolicyName.FAILOVER, {}, ())
    local, zl = endpoints("c1", "z1", "z1", "z2", "z3", "z2")
    remote, zr = endpoints("c2", "z1", "z1", "z2", "z3")
    zones = {**zl, **zr}

    def answer(snapshot: dict[str, tuple[str, ...]]) -> set[str]:
        return {a for c in narrow(policy.select(snapshot, "c1"), zones, "z1", ON) for a in c.addresses}

    assert answer({"c1": local, "c2": remote}) == {local[0], local[1]}, "the caller's zone in its cluster"
    assert answer({"c1": local[1:], "c2": remote}) == set(local[1:]), "1 left in the zone: the whole cluster"
    assert answer({"c2": remote}) == {remote[0], remote[1]}, "failed over: the caller's zone first again"
    assert answer({"c2": remote[1:]}) == set(remote[1:]), "and overflow there too"


def test_active_active_stays_in_zone_across_clusters() -> None:
    policy = build_policy(PolicyName.ACTIVE_ACTIVE, {"c2": 300}, ())
    a, za = endpoints("c1", "z1", "z2", "z3")
    b, zb = endpoints("c2", "z1", "z2", "z3")
    narrowed = narrow(policy.select({"c1": a, "c2": b}, "c1"), {**za, **zb}, "z1", ON)
    assert narrowed == (Candidate("c1", 100, (a[0],)), Candidate("c2", 300, (b[0],)))


def test_the_defaults_and_the_settings() -> None:
    assert ZoneRule.of(load_settings([])) == ZoneRule(False, 2, 20)
    rule = ZoneRule.of(load_settings([Layer("t", {"zoneAware": "true", "zoneMinEndpoints": "3",
                                                  "zoneMinPercent": "0"})]))
    assert rule == ZoneRule(True, 3, 0)


@pytest.mark.parametrize("zone", ["eu 1", "-a", "a-", "z" * 64, "ä"])
def test_the_zone_setting_is_a_label_value(zone: str) -> None:
    """Records are compared with it, and a self-registered sidecar's record carries it."""
    assert load_settings([Layer("t", {"zone": "europe-west1-b"})]).zone == "europe-west1-b"
    with pytest.raises(ConfigValueError, match="invalid value for 'zone'"):
        load_settings([Layer("t", {"zone": zone})])


# -- properties over random selections ---------------------------------------------------------

@st.composite
def cases(draw: st.DrawFn) -> tuple[tuple[Candidate, ...], dict[str, str], str, ZoneRule]:
    clusters = draw(st.integers(1, 4))
    selection, zones = [], {}
    for c in range(clusters):
        count = draw(st.integers(1, 8))
        addresses = tuple(f"10.{c}.0.{i}:1" for i in range(count))
        for address in addresses:
            zone = draw(st.sampled_from(("", *ZONES)))
            if zone:
                zones[address] = zone
        selection.append(Candidate(f"c{c}", draw(st.integers(1, 1000)), addresses))
    rule = ZoneRule(draw(st.booleans()), draw(st.integers(1, 10)), draw(st.integers(0, 100)))
    return tuple(selection), zones, draw(st.sampled_from(("", *ZONES, "elsewhere"))), rule


@settings(max_examples=500, deadline=None)
@given(case=cases())
def test_properties(case: tuple[tuple[Candidate, ...], dict[str, str], str, ZoneRule]) -> None:
    selection, zones, zone, rule = case
    narrowed = narrow(selection, zones, zone, rule)
    assert narrowed, "never empty when the selection is not"
    before = {(c.cluster, c.weight): set(c.addresses) for c in selection}
    for candidate in narrowed:  # narrowed ⊆ selection, weights as they were
        assert set(candidate.addresses) <= before[(candidate.cluster, candidate.weight)]
        assert len(set(candidate.addresses)) == len(candidate.addresses)
    total = sum(len(c.addresses) for c in selection)
    in_zone = sum(1 for c in selection for a in c.addresses if zones.get(a) == zone) if zone else 0
    stays = rule.aware and bool(zone) and in_zone >= rule.min_endpoints and in_zone * 100 >= rule.min_percent * total
    if not rule.aware or not zone:
        assert narrowed is selection, "unchanged when zoneAware is off or the zone unknown"
    if stays:  # stays in zone iff the rule holds: then exactly the in-zone endpoints
        assert {a for c in narrowed for a in c.addresses} == {a for c in selection for a in c.addresses
                                                              if zones.get(a) == zone}
    else:
        assert narrowed == selection
