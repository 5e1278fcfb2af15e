"""Zones through the resolver, in-process: the caller's zone (given, defaulted, unknown), the memo
kept right across registry changes, the DNS bridge staying cluster-level, and the component's
discovery of its caller's zone from the caller's own record."""

from __future__ import annotations

import random
from collections import Counter

import dns.name
import dns.rdatatype

from resolver.component.caller_zone import CallerZone
from resolver.component.self_registration import self_record
from resolver.dns.answers import DnsAnswers
from resolver.dns.limits import DnsLimits
from resolver.dns.lookups import HostLookups
from resolver.records.schema import EndpointRecord, Keys
from resolver.registry.mirror import RegistryReader
from resolver.resolution.resolver import Resolver
from tests.conftest import make_settings

KEYS = Keys("/zones")
ZONED = {"zoneAware": "true", "clusterName": "cluster-1"}


def reader() -> RegistryReader:
    """A reader that is never started (no etcd): the test feeds its cache directly."""
    found = RegistryReader(make_settings("127.0.0.1:1", KEYS.prefix).etcd)
    found._synced.set()
    return found


def record(instance: str, address: str, zone: str, cluster: str = "cluster-1", app: str = "orders",
           port: int = 50002) -> EndpointRecord:
    return EndpointRecord(app_id=app, namespace="default", cluster=cluster, instance=instance, address=address,
                          port=port, zone=zone)


def put(registry: RegistryReader, *records: EndpointRecord) -> None:
    registry.cache.apply([(False, r.key(KEYS).encode(), r.to_json()) for r in records],
                         registry.cache.revision + 1)


def fleet(registry: RegistryReader) -> None:
    """orders: cluster-1 has 2 pods in z1, 2 in z2, 1 in z3; cluster-2 has 3 in z1."""
    put(registry, *(record(f"o1-{i}", f"10.1.0.{i}", z) for i, z in enumerate(["z1", "z1", "z2", "z2", "z3"])),
        *(record(f"o2-{i}", f"10.2.0.{i}", "z1", cluster="cluster-2") for i in range(3)))


def addresses(resolver: Resolver, zone: str | None = None) -> set[str]:
    return {a for c in resolver.candidates(resolver.target("orders"), zone).selection for a in c.addresses}


LOCAL_Z1 = {"10.1.0.0:50002", "10.1.0.1:50002"}
LOCAL = {f"10.1.0.{i}:50002" for i in range(5)}


def test_the_callers_zone_given_defaulted_or_unknown() -> None:
    registry = reader()
    fleet(registry)
    resolver = Resolver(make_settings("127.0.0.1:1", KEYS.prefix, zone="z1", **ZONED), registry)
    assert addresses(resolver) == LOCAL_Z1, "None: the zone setting"
    assert addresses(resolver, "z2") == {"10.1.0.2:50002", "10.1.0.3:50002"}
    assert addresses(resolver, "") == LOCAL, "unknown zone: cluster-level"
    assert addresses(resolver, "z3") == LOCAL, "one endpoint is too few: overflow to the cluster"
    assert addresses(resolver, "nowhere") == LOCAL
    rng = random.Random(7)
    resolver.rng = rng
    target = resolver.target("orders")
    assert {resolver.answer(target, 50002)[0] for _ in range(200)} == LOCAL_Z1
    assert set(resolver.answer_multi(target, 50002, "z2")[0]) == {"10.1.0.2:50002", "10.1.0.3:50002"}
    unaware = Resolver(make_settings("127.0.0.1:1", KEYS.prefix, zone="z1", clusterName="cluster-1"), registry)
    assert addresses(unaware) == LOCAL and addresses(unaware, "z1") == LOCAL, "zoneAware is opt-in"


def test_the_memo_follows_registry_changes() -> None:
    registry = reader()
    fleet(registry)
    resolver = Resolver(make_settings("127.0.0.1:1", KEYS.prefix, **ZONED), registry)
    assert addresses(resolver, "z1") == LOCAL_Z1
    first = resolver.candidates(resolver.target("orders"), "z1")
    assert resolver.candidates(resolver.target("orders"), "z1") is first, "memoized while nothing changed"
    put(registry, record("o1-1", "10.1.0.1", "z2"))  # a zone changed: z1 has one pod left
    assert addresses(resolver, "z1") == LOCAL
    put(registry, record("o1-9", "10.1.0.9", "z1"))
    assert addresses(resolver, "z1") == {"10.1.0.0:50002", "10.1.0.9:50002"}
    registry.cache.apply([(True, record("o1-0", "", "").key(KEYS).encode(), b"")], registry.cache.revision + 1)
    assert addresses(resolver, "z1") == LOCAL - {"10.1.0.0:50002"} | {"10.1.0.9:50002"}


def test_failover_keeps_the_zone_first_in_the_next_cluster() -> None:
    registry = reader()
    put(registry, *(record(f"o2-{i}", f"10.2.0.{i}", z, cluster="cluster-2") for i, z in enumerate(["z1", "z1", "z2"])))
    resolver = Resolver(make_settings("127.0.0.1:1", KEYS.prefix, **ZONED), registry)
    assert addresses(resolver, "z1") == {"10.2.0.0:50002", "10.2.0.1:50002"}


def test_active_active_weights_hold_among_the_clusters_with_the_zone() -> None:
    registry = reader()
    fleet(registry)
    put(registry, record("o3-0", "10.3.0.0", "z2", cluster="cluster-3"))
    settings = make_settings("127.0.0.1:1", KEYS.prefix, policy="ActiveActive", zoneMinPercent="10",
                             clusterWeights="cluster-1=100,cluster-2=300", **ZONED)
    resolver = Resolver(settings, registry, rng=random.Random(3))
    selection = resolver.candidates(resolver.target("orders"), "z1").selection
    assert [(c.cluster, c.weight, len(c.addresses)) for c in selection] == [("cluster-1", 100, 2),
                                                                            ("cluster-2", 300, 3)]
    target = resolver.target("orders")
    picks = Counter(resolver.answer(target, 50002, "z1")[0].split(".")[1] for _ in range(4000))
    assert abs(picks["2"] / 4000 - 0.75) < 0.03, picks


def test_the_dns_bridge_stays_cluster_level() -> None:
    registry = reader()
    fleet(registry)
    resolver = Resolver(make_settings("127.0.0.1:1", KEYS.prefix, zone="z1", **ZONED), registry)
    answers = DnsAnswers(resolver, "dapr.internal", ttl=5, lookups=HostLookups(DnsLimits()))
    answer = answers.answer(dns.name.from_text("orders.default.dapr.internal"), dns.rdatatype.A)
    ips = {rdata.address for _, rrsets in answer.variants for rrset in rrsets for rdata in rrset}
    assert ips == {a.split(":")[0] for a in LOCAL}


# -- the component's caller ---------------------------------------------------------------------

def test_the_zone_setting_beats_the_record() -> None:
    registry = reader()
    put(registry, record("me", "10.1.0.50", "z2", app="caller"))
    caller = ("caller", "default", "10.1.0.50", 50002)
    given = make_settings("127.0.0.1:1", KEYS.prefix, zone="z1", **ZONED)
    assert CallerZone(given, registry, *caller).current() == "z1"
    assert CallerZone(make_settings("127.0.0.1:1", KEYS.prefix, **ZONED), registry, *caller).current() == "z2"


def test_the_callers_record_may_appear_after_init_and_is_final_once_found() -> None:
    registry = reader()
    settings = make_settings("127.0.0.1:1", KEYS.prefix, **ZONED)
    zone = CallerZone(settings, registry, "caller", "shop", "fd00::50", 50002)
    assert zone.current() == ""
    put(registry, record("other", "fd00::51", "z3", app="caller"))  # a sibling pod: not the caller
    assert zone.current() == ""
    me = EndpointRecord(app_id="caller", namespace="shop", cluster="cluster-1", instance="me", address="fd00::50",
                        port=50002, zone="z2")
    put(registry, me)
    assert zone.current() == "z2"
    registry.cache.apply([(True, me.key(KEYS).encode(), b"")], registry.cache.revision + 1)
    assert zone.current() == "z2", "a pod never changes zone"


def test_without_a_port_the_host_is_enough_and_without_zoneaware_nothing_is_looked_up() -> None:
    registry = reader()
    put(registry, record("me", "10.1.0.50", "z2", app="caller", port=3501))
    zoned = make_settings("127.0.0.1:1", KEYS.prefix, **ZONED)
    assert CallerZone(zoned, registry, "caller", "", "10.1.0.50", 0).current() == "z2"
    assert CallerZone(zoned, registry, "caller", "", "10.1.0.50", 50002).current() == "", "another port: another one"
    off = CallerZone(make_settings("127.0.0.1:1", KEYS.prefix), registry, "caller", "", "10.1.0.50", 0)
    assert off.current() == "" and off._final


def test_a_self_registered_sidecar_carries_the_zone_setting() -> None:
    assert self_record("vms", "billing", "", "192.168.7.10", 50002, "z1").zone == "z1"
    assert self_record("vms", "billing", "", "192.168.7.10", 50002).zone == ""
