"""Cluster weights expressed for the client that actually reads the answer: daprd.

daprd (v1.13 and later; read in dapr/dapr ``pkg/messaging/direct_messaging.go``) asks its
kubernetes name resolver's ``ResolveIDMulti``, which formats the ``template`` and calls Go's
``net.LookupIP`` on the host; it keeps that address list for 20 s per namespace/app/port and
**picks one address at random for every invocation**. A failure with ``Unavailable`` or
``Unauthenticated`` drops the cached list (its built-in retries reuse the same address), so
the next invocation resolves again. A caller's share of a cluster is therefore that cluster's
share of the *addresses in the answer it cached*, drawn again at least every 20 s.

So the bridge chooses how many addresses of each cluster an answer holds:

* one cluster has addresses → all of them;
* otherwise the counts ``k_c <= n_c`` (at least one per cluster) whose shares ``k_c / K`` come
  closest to the weights ``w_c / W``, preferring more addresses (more resilient) among equally
  close counts — 3 + 3 instances at 300:100 give 3 + 1 addresses, exactly 0.75;
* when even the closest counts miss a weight by more than :data:`TOLERANCE` (1000:1 over
  3 + 3 instances), the answer holds the addresses of one cluster, cluster ``c`` with
  probability ``w_c / W``: exact in expectation over answers and callers, not per caller.

Which instances a partial answer leaves out is varied: the answer is one of up to
:data:`MAX_VARIANTS` equally likely variants, each a different window of every cluster's
instances (starting at a random offset each time the answer is built), so all instances get
traffic across answers and callers. A DNS answer cannot repeat an address (RFC 2181 §5 merges
duplicates), which is why counts, not repetition, carry the weights.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

TOLERANCE = 0.05
MAX_VARIANTS = 16


@dataclass(frozen=True, slots=True)
class ClusterAddresses:
    cluster: str
    weight: int
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Variant:
    """One possible answer and the probability of drawing it."""

    probability: float
    addresses: tuple[str, ...]


def variants(clusters: Sequence[ClusterAddresses], rng: random.Random | None = None) -> tuple[Variant, ...]:
    """Every answer a query may get, with its probability (empty: no address at all)."""
    present = [c for c in clusters if c.addresses and c.weight > 0]
    if not present:
        return ()
    if len(present) == 1:
        return (Variant(1.0, present[0].addresses),)
    counts, error = closest_counts([len(c.addresses) for c in present], [c.weight for c in present])
    if error > TOLERANCE:
        total = sum(c.weight for c in present)
        return tuple(Variant(c.weight / total, c.addresses) for c in present)
    return _windows(present, counts, rng or random.Random())


def closest_counts(sizes: Sequence[int], weights: Sequence[int]) -> tuple[tuple[int, ...], float]:
    """The per-cluster address counts (1..size each) whose shares are closest to the weights.

    Returns the counts and their worst share error. Every candidate scale is tried: for each
    cluster and each count it could contribute, the others are scaled to match and rounded
    (within their sizes), so the search is linear in the number of instances.
    """
    total_weight = sum(weights)
    best: tuple[int, ...] = tuple(sizes)
    best_key = (_error(best, weights, total_weight), -sum(best))
    for anchor, size in enumerate(sizes):
        for count in range(1, size + 1):
            scale = count / weights[anchor]
            candidate = tuple(min(n, max(1, round(scale * w))) for n, w in zip(sizes, weights, strict=True))
            key = (_error(candidate, weights, total_weight), -sum(candidate))
            if key < best_key:
                best, best_key = candidate, key
    return best, best_key[0]


def _error(counts: Sequence[int], weights: Sequence[int], total_weight: int) -> float:
    total = sum(counts)
    # Rounded so that float noise never makes an exact split lose to a smaller one.
    return round(max(abs(k / total - w / total_weight) for k, w in zip(counts, weights, strict=True)), 9)


def _windows(present: Sequence[ClusterAddresses], counts: Sequence[int], rng: random.Random) -> tuple[Variant, ...]:
    """Equally likely answers, each holding ``counts[c]`` consecutive addresses of cluster c
    (cyclically), the windows moving on by their length from one variant to the next."""
    needed = max(-(-len(c.addresses) // k) for c, k in zip(present, counts, strict=True))
    number = min(MAX_VARIANTS, needed)
    offsets = [rng.randrange(len(c.addresses)) for c in present]
    found = []
    for index in range(number):
        chosen: list[str] = []
        for cluster, count, offset in zip(present, counts, offsets, strict=True):
            size = len(cluster.addresses)
            start = offset + index * count
            chosen.extend(cluster.addresses[(start + i) % size] for i in range(count))
        found.append(Variant(1.0 / number, tuple(chosen)))
    return tuple(found)


def draw(choices: Sequence[Variant], rng: random.Random) -> int:
    """The index of a variant drawn by probability."""
    if len(choices) == 1:
        return 0
    point = rng.random()
    for index, choice in enumerate(choices):
        point -= choice.probability
        if point < 0:
            return index
    return len(choices) - 1
