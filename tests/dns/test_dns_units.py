"""The DNS bridge's pure parts: weighted membership and the bounded lookup pool (no network)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from fractions import Fraction

import dns.name
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.dns import zone
from resolver.dns.limits import DnsLimits
from resolver.dns.lookups import Found, HostAddresses, HostLookups
from resolver.dns.weights import MAX_VARIANTS, TOLERANCE, ClusterAddresses, closest_counts, variants

CLUSTERS = st.lists(st.tuples(st.integers(0, 500), st.integers(0, 6)), min_size=1, max_size=5)


@settings(max_examples=500, deadline=None)
@given(clusters=CLUSTERS)
def test_random_picks_from_a_drawn_answer_give_every_cluster_its_weight(clusters: list[tuple[int, int]]) -> None:
    """daprd picks one address of its cached answer at random per invocation: a cluster's share of
    a caller's calls is its share of the answer's addresses. Subset answers hold the closest
    counts (within TOLERANCE of the weights, the same counts in every variant); otherwise one
    cluster per answer, exact in expectation."""
    given_clusters = [ClusterAddresses(f"c{i}", weight, tuple(f"10.{i}.0.{n}" for n in range(count)))
                      for i, (weight, count) in enumerate(clusters)]
    choices = variants(given_clusters, random.Random(7))
    present = [c for c in given_clusters if c.weight > 0 and c.addresses]
    if not present:
        assert choices == ()
        return
    assert abs(sum(v.probability for v in choices) - 1) < 1e-9
    total = sum(c.weight for c in present)
    mixed = len(present) > 1 and all(any(a in c.addresses for a in choices[0].addresses) for c in present)
    for cluster in present:
        share = sum(Fraction(v.probability) * Fraction(sum(a in cluster.addresses for a in v.addresses),
                                                       len(v.addresses)) for v in choices)
        assert abs(float(share) - cluster.weight / total) <= (TOLERANCE if mixed else 0) + 1e-9
        if mixed:
            counts = {sum(a in cluster.addresses for a in v.addresses) for v in choices}
            assert len(counts) == 1  # every variant carries the same split
            if len(choices) < MAX_VARIANTS:  # every instance gets traffic across answers
                assert {a for v in choices for a in v.addresses} >= set(cluster.addresses)
    for choice in choices:
        assert len(set(choice.addresses)) == len(choice.addresses)  # DNS merges duplicates


def test_proportional_instance_counts_give_one_answer_with_everything() -> None:
    both = variants([ClusterAddresses("a", 300, ("1", "2", "3")), ClusterAddresses("b", 100, ("4",))])
    assert len(both) == 1 and sorted(both[0].addresses) == ["1", "2", "3", "4"]


def test_three_and_three_at_300_to_100_answer_three_and_one_rotating_the_one() -> None:
    """The real-daprd case: 3 + 3 instances at 300:100 → 3 + 1 addresses (exactly 0.75), the
    left-out instances varying so that all of cluster b's get traffic."""
    b = ("4", "5", "6")
    choices = variants([ClusterAddresses("a", 300, ("1", "2", "3")), ClusterAddresses("b", 100, b)], random.Random(1))
    assert len(choices) == 3
    for choice in choices:
        assert sorted(a for a in choice.addresses if a not in b) == ["1", "2", "3"]
        assert sum(a in b for a in choice.addresses) == 1
    assert {a for v in choices for a in v.addresses if a in b} == set(b)


def test_counts_that_cannot_express_the_weights_fall_back_to_one_cluster_per_answer() -> None:
    assert closest_counts([3, 3], [1000, 1])[1] > TOLERANCE
    choices = variants([ClusterAddresses("a", 1000, ("1", "2", "3")), ClusterAddresses("b", 1, ("4", "5", "6"))])
    assert [v.addresses for v in choices] == [("1", "2", "3"), ("4", "5", "6")]
    assert choices[0].probability == 1000 / 1001


@given(labels=st.lists(st.text(alphabet="abcXYZ019-_", min_size=1, max_size=8), min_size=0, max_size=4))
def test_names_parse_the_same_in_every_spelling(labels: list[str]) -> None:
    origin = dns.name.from_text("dapr.internal")
    try:
        lower = dns.name.from_text(".".join([*(s.lower() for s in labels), "dapr", "internal"]))
        upper = dns.name.from_text(".".join([*(s.upper() for s in labels), "DAPR", "Internal"]))
    except Exception:
        return
    assert zone.parse(lower, origin) == zone.parse(upper, origin)


class Blocking:
    """A lookup function the test controls: blocks until released, counts calls."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0
        self.answer = HostAddresses(Found.OK, ("10.0.0.1",))

    def __call__(self, host: str) -> HostAddresses:
        self.calls += 1
        if host.startswith("slow"):
            self.release.wait(10)
        if host.startswith("missing"):
            return HostAddresses(Found.NXDOMAIN)
        return self.answer


def test_lookups_time_out_to_failed_are_coalesced_capped_and_cached() -> None:
    fake = Blocking()
    limits = DnsLimits(lookups=2, lookup_queue=1, lookup_timeout=0.2, lookup_cache_seconds=0.5)
    lookups = HostLookups(limits, fake)

    async def scenario() -> None:
        started = time.monotonic()
        slow = await asyncio.gather(*(lookups.lookup("slow-1") for _ in range(5)))  # one lookup, five waiters
        assert all(r.found is Found.FAILED for r in slow) and fake.calls == 1
        # the timeout (0.2 s), not the lookup (blocked 10 s), decides: generous for a loaded machine
        assert time.monotonic() - started < 5
        assert lookups.peek("slow-1") == HostAddresses(Found.FAILED)  # negative cache: no new lookup
        await asyncio.gather(lookups.lookup("slow-2"), lookups.lookup("slow-3"))
        rejected = await lookups.lookup("slow-4")  # 3 outstanding = 2 threads + 1 queued: full
        assert rejected.found is Found.FAILED and fake.calls == 2  # slow-3 still waits for a thread
        assert (await lookups.lookup("missing.example")).found is Found.FAILED  # rejected too: lane full
        fake.release.set()
        await asyncio.sleep(0.3)
        assert (await lookups.lookup("missing.example")).found is Found.NXDOMAIN
        assert (await lookups.lookup("fine.example")).v4 == ("10.0.0.1",)

    asyncio.run(scenario())
    lookups.close()


def test_a_known_host_keeps_its_last_answer_when_refreshes_fail() -> None:
    fake = Blocking()
    lookups = HostLookups(DnsLimits(lookups=2, lookup_queue=0, lookup_timeout=0.2, lookup_cache_seconds=0.2), fake)

    async def scenario() -> None:
        assert (await lookups.lookup("known.example")).v4 == ("10.0.0.1",)
        fake.answer = HostAddresses(Found.FAILED)  # the upstream breaks
        await asyncio.sleep(0.25)
        assert (await lookups.lookup("known.example")).v4 == ("10.0.0.1",)  # served stale
        assert lookups.peek("known.example") == HostAddresses(Found.OK, ("10.0.0.1",))

    asyncio.run(scenario())
    lookups.close()
