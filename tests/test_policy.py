"""Selection: policy × weights × which clusters have endpoints × caller cluster (table-driven),
and the statistics of weighted picks with a fixed seed."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from resolver.config import Layer, PolicyName, load_settings
from resolver.resolution.policy import Candidate, PolicyBook, build_policy, pick_one, spread

A = ("10.1.0.1:1", "10.1.0.2:1")
B = ("10.2.0.1:1",)
C = ("10.3.0.1:1", "10.3.0.2:1", "10.3.0.3:1")
ALL = {"c1": A, "c2": B, "c3": C}

L, F, AA = PolicyName.LOCALITY, PolicyName.FAILOVER, PolicyName.ACTIVE_ACTIVE

CASES = [
    # policy, weights, failover order, endpoints, caller, expected [(cluster, weight)]
    (L, {}, (), ALL, "c1", [("c1", 100)]),
    (L, {}, (), {"c2": B}, "c1", []),
    (L, {}, (), ALL, "", []),
    (L, {"c1": 0}, (), ALL, "c1", []),
    (F, {}, (), ALL, "c1", [("c1", 100)]),
    (F, {}, (), {"c2": B, "c3": C}, "c1", [("c2", 100), ("c3", 100)]),
    (F, {"c3": 50}, (), {"c2": B, "c3": C}, "c1", [("c2", 100), ("c3", 50)]),
    (F, {}, ("c3", "c2"), {"c2": B, "c3": C}, "c1", [("c3", 100)]),
    (F, {}, ("c4", "c2"), {"c2": B, "c3": C}, "c1", [("c2", 100)]),
    (F, {"c3": 0}, ("c3",), {"c2": B, "c3": C}, "c1", [("c2", 100)]),
    (F, {"c1": 0}, (), ALL, "c1", [("c2", 100), ("c3", 100)]),
    (F, {}, (), ALL, "", [("c1", 100), ("c2", 100), ("c3", 100)]),
    (F, {}, ("c2",), ALL, "", [("c2", 100)]),
    (F, {}, (), {}, "c1", []),
    (F, {"c2": 0, "c3": 0}, (), {"c2": B, "c3": C}, "c1", []),
    (AA, {}, (), ALL, "c1", [("c1", 100), ("c2", 100), ("c3", 100)]),
    (AA, {"c2": 300, "c3": 0}, (), ALL, "c1", [("c1", 100), ("c2", 300)]),
    (AA, {}, (), {"c3": C}, "", [("c3", 100)]),
]


@pytest.mark.parametrize(("policy", "weights", "order", "endpoints", "caller", "expected"), CASES)
def test_selection_table(policy, weights, order, endpoints, caller, expected) -> None:
    selection = build_policy(policy, weights, order).select(endpoints, caller)
    assert [(c.cluster, c.weight) for c in selection] == expected
    for candidate in selection:
        assert candidate.addresses == endpoints[candidate.cluster]


def test_per_app_overrides_replace_only_the_fields_they_name() -> None:
    settings = load_settings([Layer("t", {
        "policy": "ActiveActive", "clusterWeights": "c1=10,c2=20",
        "policies": '{"shop/pay": {"policy": "FailOver", "failoverOrder": "c2"}, "shop/cart": '
                    '{"clusterWeights": {"c1": 0}}}'})])
    book = PolicyBook(settings)
    assert book.for_app("default", "pay").name is AA
    pay = book.for_app("shop", "pay")
    assert pay.name is F
    assert [c.cluster for c in pay.select(ALL, "c9")] == ["c2"]
    cart = book.for_app("shop", "cart")
    assert cart.name is AA
    # the override's clusterWeights replace the global map entirely: c2 is back to the default 100
    assert [(c.cluster, c.weight) for c in cart.select(ALL, "c1")] == [("c2", 100), ("c3", 100)]


def test_pick_one_follows_weights_then_uniform_instances() -> None:
    rng = random.Random(42)
    selection = (Candidate("c1", 100, A), Candidate("c2", 300, B))
    picks = Counter(pick_one(selection, rng) for _ in range(20_000))
    share_c2 = picks[B[0]] / 20_000
    assert abs(share_c2 - 0.75) < 0.02
    assert abs(picks[A[0]] - picks[A[1]]) / 20_000 < 0.02  # instances uniform within c1


def uniform_share(addresses: list[str], members: tuple[str, ...]) -> float:
    return sum(addresses.count(m) for m in members) / len(addresses)


@pytest.mark.parametrize(("weights", "sizes"), [
    ((100, 100), (2, 1)), ((100, 300), (2, 1)), ((100, 50, 25), (2, 1, 3)), ((7, 13), (3, 5)), ((1, 1), (1, 1)),
])
def test_spread_is_exact_when_it_fits(weights: tuple[int, ...], sizes: tuple[int, ...]) -> None:
    clusters = [tuple(f"10.{i}.0.{j}:1" for j in range(n)) for i, n in enumerate(sizes)]
    selection = tuple(Candidate(f"c{i}", w, addrs) for i, (w, addrs) in enumerate(zip(weights, clusters, strict=True)))
    spread_list = spread(selection, random.Random(1))
    assert len(spread_list) <= 1000
    total = sum(weights)
    for weight, addresses in zip(weights, clusters, strict=True):
        assert uniform_share(spread_list, addresses) == pytest.approx(weight / total, abs=1e-9)
        counts = {spread_list.count(a) for a in addresses}
        assert len(counts) == 1  # every instance of a cluster appears equally often


def test_spread_rounds_within_bounds_when_exact_is_too_long() -> None:
    big = tuple(f"10.0.{j // 250}.{j % 250}:1" for j in range(997))  # prime-ish sizes force rounding
    small = tuple(f"10.9.0.{j}:1" for j in range(3))
    selection = (Candidate("big", 1, big), Candidate("small", 2, small))
    spread_list = spread(selection, random.Random(7))
    assert len(spread_list) == 1000
    assert uniform_share(spread_list, small) == pytest.approx(2 / 3, abs=1 / 1000 + 1e-9)
    small_counts = Counter(a for a in spread_list if a in small)
    assert max(small_counts.values()) - min(small_counts.values()) <= 1


def test_spread_of_one_cluster_is_its_instances_and_bounded() -> None:
    assert spread((Candidate("c1", 100, A),), random.Random(0)) == list(A)
    many = tuple(f"10.{j // 256}.{j % 256}.1:1" for j in range(1500))
    sample = spread((Candidate("c1", 100, many),), random.Random(0))
    assert len(sample) == 1000 and len(set(sample)) == 1000
    assert spread((), random.Random(0)) == []


def test_extreme_weight_ratios_keep_every_weighted_cluster() -> None:
    selection = (Candidate("c1", 1_000_000, tuple(f"a{i}:1" for i in range(7))), Candidate("c2", 1, ("b:1",)))
    spread_list = spread(selection, random.Random(3))
    assert "b:1" in spread_list and len(spread_list) <= 1000
