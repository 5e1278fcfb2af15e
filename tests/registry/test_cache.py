"""The in-memory registry view: re-list drops what was not seen, watch events apply, bad records skip."""

from __future__ import annotations

import time

from resolver.records.schema import ClusterInfo, Keys
from resolver.registry.cache import RegistryCache
from tests.conftest import record

KEYS = Keys("/p")


def kv(rec):
    return rec.key(KEYS).encode(), rec.to_json()


def test_replace_all_then_relist_drops_unseen() -> None:
    cache = RegistryCache(KEYS)
    a1, a2 = record("a", address="10.0.0.1"), record("a", cluster="cluster-2", address="10.0.0.2")
    b = record("b", address="10.0.0.3")
    stats = cache.replace_all([kv(a1), kv(a2), kv(b)], revision=5)
    assert (stats.endpoints, stats.added, stats.removed) == (3, 3, 0)
    assert cache.lookup("default", "a") == {"cluster-1": ("10.0.0.1:50002",), "cluster-2": ("10.0.0.2:50002",)}
    stats = cache.replace_all([kv(a1)], revision=9)
    assert (stats.added, stats.removed) == (0, 2)
    assert cache.lookup("default", "a") == {"cluster-1": ("10.0.0.1:50002",)}
    assert cache.lookup("default", "b") == {}
    assert cache.revision == 9


def test_apply_put_delete_and_snapshot_invalidation() -> None:
    cache = RegistryCache(KEYS)
    a1 = record("a", address="10.0.0.1")
    assert cache.apply([(False, *kv(a1))], 2) == 1
    first = cache.lookup("default", "a")
    assert first == {"cluster-1": ("10.0.0.1:50002",)}
    assert cache.lookup("default", "a") is first  # cached snapshot, no rebuild
    assert cache.apply([(False, *kv(a1))], 3) == 0  # unchanged value
    a1_moved = record("a", address="10.0.0.9", instance=a1.instance)
    cache.apply([(False, *kv(a1_moved))], 4)
    assert cache.lookup("default", "a") == {"cluster-1": ("10.0.0.9:50002",)}
    cache.apply([(True, a1.key(KEYS).encode(), b"")], 5)
    assert cache.lookup("default", "a") == {}
    assert cache.app_count() == 0
    assert cache.apply([(True, a1.key(KEYS).encode(), b"")], 6) == 0


def test_bad_records_are_skipped_and_counted_never_fatal() -> None:
    cache = RegistryCache(KEYS)
    good = record("a")
    mismatched = record("b")
    items = [
        kv(good),
        (b"/p/apps/cluster-1/default/b/other-name", mismatched.to_json()),  # value disagrees with key
        (b"/p/apps/cluster-1/default/c/c-1", b"{broken"),
        (b"/p/apps/Bad_Cluster/default/c/c-1", good.to_json()),
        (b"/p/apps/too/short", b"{}"),
        (b"/p/clusters/cluster-1/leader", b"anything"),  # not cached, not invalid
    ]
    stats = cache.replace_all(items, 1)
    assert stats.endpoints == 1 and stats.skipped == 4
    assert cache.invalid_records == 4
    # A bad value replacing a good one drops the endpoint rather than keeping stale data.
    cache.apply([(False, good.key(KEYS).encode(), b"garbage")], 2)
    assert cache.lookup("default", "a") == {}
    assert cache.invalid_records == 5


def test_cluster_info_tracking() -> None:
    cache = RegistryCache(KEYS)
    info = ClusterInfo("cluster-1", "pub", "1", 1.0)
    cache.apply([(False, KEYS.info("cluster-1").encode(), info.to_json())], 1)
    assert cache.clusters() == {"cluster-1": info}
    cache.apply([(True, KEYS.info("cluster-1").encode(), b"")], 2)
    assert cache.clusters() == {}


def test_dump_lists_every_endpoint() -> None:
    cache = RegistryCache(KEYS)
    a, b = record("a"), record("b", cluster="cluster-2", address="fd00::2")
    cache.replace_all([kv(a), kv(b)], 1)
    assert cache.dump() == {a.key(KEYS): "10.0.0.1:50002", b.key(KEYS): "[fd00::2]:50002"}
    assert cache.counts_by_cluster() == {"cluster-1": 1, "cluster-2": 1}


def test_a_new_history_carries_old_records_until_the_cluster_syncs_or_time_runs_out() -> None:
    cache = RegistryCache(KEYS, carry_over=60.0)
    kept, dropped = record("a", address="10.0.0.1"), record("a", address="10.0.0.2")
    other = record("b", cluster="cluster-2", address="10.0.0.3")
    cache.replace_all([kv(kept), kv(dropped), kv(other)], 1)
    cache.replace_all([], 2, new_history=True)  # etcd wiped and re-created: nothing re-put yet
    assert cache.carried_clusters == {"cluster-1", "cluster-2"}
    assert cache.lookup("default", "a") == {"cluster-1": ("10.0.0.1:50002", "10.0.0.2:50002")}
    cache.apply([(False, *kv(kept))], 3)  # re-put in the new history: no longer a carried record
    synced = ClusterInfo("cluster-1", "pub", "1", 1.0, synced_at=2.0)
    cache.apply([(False, KEYS.info("cluster-1").encode(), synced.to_json())], 4)
    assert cache.lookup("default", "a") == {"cluster-1": ("10.0.0.1:50002",)}, "what it did not re-put is dropped"
    assert cache.carried_clusters == {"cluster-2"}
    cache.tick(time.monotonic() + 61)  # cluster-2 never synced within carry_over
    assert cache.carried_clusters == frozenset()
    assert cache.lookup("default", "b") == {}
