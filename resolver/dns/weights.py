"""Cluster weights expressed for the client that actually reads the answer: gRPC ``round_robin``.

daprd in Kubernetes mode dials ``dns:///{host}:{port}`` with the service config
``{"loadBalancingPolicy":"round_robin"}`` (dapr/dapr ``pkg/api/grpc/manager``). gRPC-Go's DNS
resolver hands *every* address of the answer to round_robin, which connects to all of them
and spreads calls evenly; it re-resolves only when a connection fails (at most every 30 s)
and ignores the TTL. So the order of an answer carries no weight, and its membership sticks to
a caller until a failure.

The weighted answer is therefore a weighted choice of *membership*, drawn per query:

* one cluster has addresses → all of them;
* the clusters' instance counts already split traffic as the weights ask
  (``n_c / N == w_c / W`` for every cluster) → all addresses, the most resilient answer;
* otherwise → the addresses of one cluster, cluster ``c`` with probability ``w_c / W``. A
  caller then sends all its traffic to that cluster until its connections fail; over many
  callers (and restarts) the split matches the weights exactly in expectation.

A DNS answer cannot repeat an address (RFC 2181 §5 merges duplicates), so no answer that
mixes clusters could carry an arbitrary split; one-cluster answers can.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


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


def variants(clusters: Sequence[ClusterAddresses]) -> tuple[Variant, ...]:
    """Every answer a query may get, with its probability (empty: no address at all)."""
    present = [c for c in clusters if c.addresses and c.weight > 0]
    if not present:
        return ()
    if len(present) == 1 or _proportional(present):
        return (Variant(1.0, tuple(a for c in present for a in c.addresses)),)
    total = sum(c.weight for c in present)
    return tuple(Variant(c.weight / total, c.addresses) for c in present)


def _proportional(present: Sequence[ClusterAddresses]) -> bool:
    """True when round-robin over all addresses already gives each cluster its weight's share."""
    total_weight = sum(c.weight for c in present)
    total_count = sum(len(c.addresses) for c in present)
    return all(len(c.addresses) * total_weight == c.weight * total_count for c in present)


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
