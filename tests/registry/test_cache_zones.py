"""Zones in the registry cache: each endpoint's zone kept inside its cached address string, the
per-app zone map, and the host → zone index the consul role asks — through every way the
cache changes (events, lists, on-demand range reads, dropped apps, carried-over histories)."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.records.schema import ClusterInfo, EndpointRecord, Keys
from resolver.registry.cache import RegistryCache
from resolver.registry.liveness import ClusterLiveness
from resolver.registry.zone_index import NO_ZONES, HostZones, address_of, host_of, split, stored

KEYS = Keys("/p")


def rec(instance: str, address: str, zone: str = "", cluster: str = "cluster-1", app: str = "a",
        port: int = 50002) -> EndpointRecord:
    return EndpointRecord(app_id=app, namespace="default", cluster=cluster, instance=instance, address=address,
                          port=port, zone=zone)


def put(cache: RegistryCache, *records: EndpointRecord) -> int:
    return cache.apply([(False, r.key(KEYS).encode(), r.to_json()) for r in records], cache.revision + 1)


def delete(cache: RegistryCache, record: EndpointRecord) -> int:
    return cache.apply([(True, record.key(KEYS).encode(), b"")], cache.revision + 1)


def kv(record: EndpointRecord) -> tuple[bytes, bytes]:
    return record.key(KEYS).encode(), record.to_json()


def test_stored_values_split_and_sort_like_their_addresses() -> None:
    assert stored("10.0.0.1:50002", "") == "10.0.0.1:50002"
    assert split(stored("[fd00::1]:50002", "z1")) == ("[fd00::1]:50002", "z1")
    assert host_of("[fd00::1]:50002") == "fd00::1" and host_of("10.0.0.1:1") == "10.0.0.1"
    plain = "10.0.0.1:50002"
    assert address_of(plain) is plain, "no zone, no copy"
    addresses = ["10.0.0.1:5000", "10.0.0.1:50002", "10.0.0.10:1", "10.0.0.1:50003"]
    zoned = [stored(a, z) for a, z in zip(addresses, ["zz", "", "a", "b"], strict=True)]
    assert [address_of(v) for v in sorted(zoned)] == sorted(addresses)


def test_zones_of_an_app_are_immutable_and_rebuilt_only_on_change() -> None:
    cache = RegistryCache(KEYS)
    a1, a2, a3 = rec("a-1", "10.0.0.1", "z1"), rec("a-2", "10.0.0.2", "z2"), rec("a-3", "10.0.0.3")
    b1 = rec("b-1", "10.0.1.1", "z1", cluster="cluster-2")
    put(cache, a1, a2, a3, b1)
    zones = cache.zones("default", "a")
    assert zones == {"10.0.0.1:50002": "z1", "10.0.0.2:50002": "z2", "10.0.1.1:50002": "z1"}
    assert cache.zones("default", "a") is zones
    with pytest.raises(TypeError):
        zones["10.0.0.3:50002"] = "z9"  # type: ignore[index]
    assert cache.lookup("default", "a") == {"cluster-1": ("10.0.0.1:50002", "10.0.0.2:50002", "10.0.0.3:50002"),
                                            "cluster-2": ("10.0.1.1:50002",)}
    keys = set(zones)
    snapshot_addresses = {a for addresses in cache.lookup("default", "a").values() for a in addresses}
    assert all(any(k is a for a in snapshot_addresses) for k in keys), "the zone map shares the snapshot's strings"
    version = cache.version
    assert put(cache, rec("a-2", "10.0.0.2", "z3")) == 1, "a zone change alone is a change"
    assert cache.version == version + 1
    assert cache.zones("default", "a")["10.0.0.2:50002"] == "z3"
    put(cache, rec("a-1", "10.0.0.1"))
    assert "10.0.0.1:50002" not in cache.zones("default", "a"), "an endpoint that lost its zone has none"
    assert cache.zones("default", "nobody") is NO_ZONES
    put(cache, rec("c-1", "10.0.2.1", app="c"))
    assert cache.zones("default", "c") is NO_ZONES, "no zone, nothing stored"


def test_reads_other_than_zones_see_plain_addresses() -> None:
    cache = RegistryCache(KEYS)
    a1 = rec("a-1", "fd00::1", "z1")
    cache.replace_all([kv(a1)], 1)
    assert cache.lookup("default", "a") == {"cluster-1": ("[fd00::1]:50002",)}
    assert cache.instances("default", "a") == {("cluster-1", "[fd00::1]:50002"): "a-1"}
    assert cache.dump() == {a1.key(KEYS): "[fd00::1]:50002"}
    assert cache.zones("default", "a") == {"[fd00::1]:50002": "z1"}


def test_a_withdrawn_cluster_leaves_the_zone_map_too() -> None:
    cache = RegistryCache(KEYS)
    clock = [0.0]
    cache.liveness = ClusterLiveness(lambda: clock[0])
    put(cache, rec("a-1", "10.0.0.1", "z1"), rec("b-1", "10.0.1.1", "z1", cluster="cluster-2"))
    assert len(cache.zones("default", "a")) == 2
    cache.liveness.beat("cluster-2", 1, 1.0)
    clock[0] = 100.0  # the heartbeat stood still for 100 lease TTLs
    cache.tick()
    assert cache.withdrawn == {"cluster-2"}
    assert cache.zones("default", "a") == {"10.0.0.1:50002": "z1"}


def test_zone_of_host_follows_every_change() -> None:
    cache = RegistryCache(KEYS)
    a1, a2 = rec("a-1", "10.0.0.1", "z1"), rec("a-2", "fd00::2", "z2")
    cache.replace_all([kv(a1), kv(a2)], 1)
    assert cache._hosts is None, "nobody asked: no index"
    assert cache.zone_of_host("10.0.0.1") == "z1"
    assert cache.zone_of_host("fd00::2") == "z2"
    assert cache.zone_of_host("10.9.9.9") == ""
    put(cache, rec("a-1", "10.0.0.1", "z3"))  # zone changed
    assert cache.zone_of_host("10.0.0.1") == "z3"
    put(cache, rec("a-1", "10.0.0.7", "z3"))  # address changed
    assert cache.zone_of_host("10.0.0.1") == "" and cache.zone_of_host("10.0.0.7") == "z3"
    delete(cache, rec("a-2", "fd00::2"))
    assert cache.zone_of_host("fd00::2") == ""
    cache.replace_all([kv(rec("b-1", "10.0.1.1", "z1", app="b"))], 9)  # a re-list rebuilds it
    assert cache.zone_of_host("10.0.0.7") == "" and cache.zone_of_host("10.0.1.1") == "z1"
    cache.drop_app("default", "b")  # the on-demand scope stopped following b
    assert cache.zone_of_host("10.0.1.1") == ""


def test_a_host_with_two_records_keeps_its_zone_until_both_are_gone() -> None:
    cache = RegistryCache(KEYS)
    cache.zone_of_host("")  # index on from the start
    first, second = rec("a-1", "10.0.0.1", "z1"), rec("a-1", "10.0.0.1", "z1", app="b")
    put(cache, first, second, rec("a-1", "10.0.0.1", "z1", port=50003, app="c"))
    delete(cache, first)
    assert cache.zone_of_host("10.0.0.1") == "z1"
    delete(cache, second)
    assert cache.zone_of_host("10.0.0.1") == "z1"
    delete(cache, rec("a-1", "10.0.0.1", app="c"))
    assert cache.zone_of_host("10.0.0.1") == ""
    assert len(cache._hosts or HostZones()) == 0


def test_on_demand_range_reads_and_carried_records_keep_the_index_right() -> None:
    cache = RegistryCache(KEYS, carry_over=60.0)
    kept, dropped = rec("a-1", "10.0.0.1", "z1"), rec("a-2", "10.0.0.2", "z2")
    cache.replace_all([kv(kept), kv(dropped)], 1)
    cache.zone_of_host("")
    cache.replace_range(f"{KEYS.cluster_apps('cluster-1')}default/a/", [kv(kept)], 2)
    assert cache.zone_of_host("10.0.0.1") == "z1" and cache.zone_of_host("10.0.0.2") == ""
    cache.replace_all([], 3, new_history=True)  # etcd wiped: the old records are carried over
    assert cache.zone_of_host("10.0.0.1") == "z1"
    synced = ClusterInfo("cluster-1", "pub", "1", 1.0, synced_at=2.0)
    cache.apply([(False, KEYS.info("cluster-1").encode(), synced.to_json())], 4)  # never re-put: dropped
    assert cache.lookup("default", "a") == {}
    assert cache.zone_of_host("10.0.0.1") == ""


def test_a_zone_costs_a_few_bytes_per_record() -> None:
    """The zone rides inside the address string: no object per endpoint, nothing for an endpoint without one."""
    def held(zone: str) -> int:
        items = [kv(rec(f"a{i}-x", f"10.0.{i // 256}.{i % 256}", zone, app=f"app{i % 500}")) for i in range(5000)]
        gc.collect()
        tracemalloc.start()
        try:
            cache = RegistryCache(KEYS)
            cache.replace_all(items, 1)
            gc.collect()
            return tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
            del items

    plain, zoned = held(""), held("europe-west1-b")
    assert zoned - plain < 5000 * 24, (plain, zoned)


# -- the index against a model, through random histories --------------------------------------

HOSTS = ("10.0.0.1", "10.0.0.2", "fd00::3")
op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(("a", "b")), st.sampled_from(("i1", "i2", "i3")),
              st.sampled_from(("cluster-1", "cluster-2")), st.sampled_from(HOSTS), st.sampled_from(("", "z1", "z2"))),
    st.tuples(st.just("delete"), st.sampled_from(("a", "b")), st.sampled_from(("i1", "i2", "i3")),
              st.sampled_from(("cluster-1", "cluster-2"))),
    st.tuples(st.just("relist")), st.tuples(st.just("index")), st.tuples(st.just("drop"), st.sampled_from(("a", "b"))),
)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(op, max_size=40))
def test_zones_and_the_host_index_match_a_model(ops: list[tuple[str, ...]]) -> None:
    cache = RegistryCache(KEYS)
    model: dict[tuple[str, str, str], EndpointRecord] = {}  # (app, cluster, instance) → record
    for step in ops:
        if step[0] == "put":
            _, app, instance, cluster, host, zone = step
            record = rec(instance, host, zone, cluster=cluster, app=app)
            model[(app, cluster, instance)] = record
            put(cache, record)
        elif step[0] == "delete":
            _, app, instance, cluster = step
            model.pop((app, cluster, instance), None)
            delete(cache, rec(instance, "10.0.0.1", cluster=cluster, app=app))
        elif step[0] == "relist":
            cache.replace_all([kv(r) for r in model.values()], cache.revision + 1)
        elif step[0] == "index":
            cache.zone_of_host("")
        else:
            model = {key: r for key, r in model.items() if key[0] != step[1]}
            cache.drop_app("default", step[1])
        for app in ("a", "b"):
            zones = cache.zones("default", app)
            for (owner, _, _), record in model.items():
                if owner == app and record.zone:
                    assert zones.get(record.host_port) in {r.zone for r in model.values()
                                                           if r.app_id == app and r.host_port == record.host_port}
            assert set(zones) == {r.host_port for r in model.values() if r.app_id == app and r.zone}
        for host in HOSTS:
            expected = {r.zone for r in model.values() if r.address == host and r.zone}
            found = cache.zone_of_host(host) if cache._hosts is not None else None
            if found is not None:
                assert (found in expected) if expected else found == "", (host, found, expected)
