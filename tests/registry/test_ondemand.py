"""``cacheScope=onDemand`` against a real etcd: only the apps asked about, bounded, consistent."""

from __future__ import annotations

import random
import string
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import ClusterInfo, EndpointRecord, Keys
from resolver.registry.ondemand import OnDemandReader
from tests.conftest import eventually, make_settings, put_record, record
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.registry  # also run against etcd 3.4 in CI (README's test command)


def announce(gateway: EtcdGateway, keys: Keys, *clusters: str) -> None:
    for cluster in clusters:
        gateway.put(keys.info(cluster), ClusterInfo(cluster, "pub", "test", 1.0, synced_at=2.0).to_json())


def truth_for(gateway: EtcdGateway, keys: Keys, app: str) -> dict[str, str]:
    _, pages = gateway.list_prefix(keys.apps)
    found = {k.decode(): EndpointRecord.from_json(v).host_port for page in pages for k, v, _ in page}
    return {k: v for k, v in found.items() if k.split("/")[-2] == app}


@pytest.fixture
def ondemand(etcd: LocalEtcd, prefix: str) -> Iterator[Callable[..., OnDemandReader]]:
    readers: list[OnDemandReader] = []

    def make(endpoint: str | None = None, **options: object) -> OnDemandReader:
        reader = OnDemandReader(make_settings(endpoint or etcd.endpoint, prefix, etcdTimeout="1s").etcd,
                                progress_interval=0.3, **options).start()  # type: ignore[arg-type]
        readers.append(reader)
        return reader

    yield make
    for reader in readers:
        reader.stop()


def test_only_the_apps_asked_about_are_cached_and_watched(gateway: EtcdGateway, keys: Keys, ondemand) -> None:
    announce(gateway, keys, "cluster-1", "cluster-2")
    for cluster in ("cluster-1", "cluster-2"):
        for app in ("orders", "cart", "payments"):
            put_record(gateway, keys, record(app, cluster=cluster, address=f"10.{cluster[-1]}.0.{len(app)}"))
    reader = ondemand()
    assert reader.wait_synced(10)
    assert reader.cache.app_count() == 0
    assert reader.follow("default", "orders", 5)
    assert reader.cache.lookup("default", "orders") == {"cluster-1": ("10.1.0.6:50002",),
                                                         "cluster-2": ("10.2.0.6:50002",)}
    assert reader.cache.app_count() == 1 and reader.watched_ranges == 3  # clusters/ + orders in 2 clusters
    put_record(gateway, keys, record("cart", cluster="cluster-1", instance="cart-x", address="10.1.9.9"))
    put_record(gateway, keys, record("orders", cluster="cluster-2", instance="orders-x", address="10.2.9.9"))
    eventually(lambda: reader.cache.dump() == truth_for(gateway, keys, "orders"), 5, "orders follows etcd")
    assert reader.cache.app_count() == 1, "churn in an app nobody asked about never arrives"


def test_ready_for_is_the_scope_s_own_wait_and_a_stop_ends_it(gateway: EtcdGateway, keys: Keys, ondemand) -> None:
    """The surface the resolver (and so the component) uses instead of asking which scope it holds."""
    announce(gateway, keys, "cluster-1")
    put_record(gateway, keys, record("orders", address="10.1.0.1"))
    reader = ondemand()
    assert reader.wait_synced(10)
    assert reader.would_wait("default", "orders", 5), "synced, but the app was never read"
    stopping = threading.Event()
    stopping.set()
    started = time.monotonic()
    assert not reader.ready_for("default", "orders", 30, stopping), "a server shutting down answers the fallback"
    assert time.monotonic() - started < 5 and not reader.is_following("default", "orders")
    assert reader.ready_for("default", "orders", 5, threading.Event())
    assert not reader.would_wait("default", "orders", 5)
    assert reader.cache.lookup("default", "orders") == {"cluster-1": ("10.1.0.1:50002",)}


def test_a_new_cluster_is_followed_for_every_followed_app(gateway: EtcdGateway, keys: Keys, ondemand) -> None:
    announce(gateway, keys, "cluster-1")
    put_record(gateway, keys, record("orders", cluster="cluster-1", address="10.1.0.1"))
    reader = ondemand()
    assert reader.follow("default", "orders", 5)
    put_record(gateway, keys, record("orders", cluster="cluster-3", address="10.3.0.1"))  # no cluster key yet
    announce(gateway, keys, "cluster-3")
    eventually(lambda: set(reader.cache.lookup("default", "orders")) == {"cluster-1", "cluster-3"}, 5, "cluster-3")
    put_record(gateway, keys, record("orders", cluster="cluster-3", instance="o-2", address="10.3.0.2"))
    eventually(lambda: reader.cache.dump() == truth_for(gateway, keys, "orders"), 5, "cluster-3 watched")


def test_random_app_ids_cannot_grow_the_cache_or_the_watches(gateway: EtcdGateway, keys: Keys, ondemand) -> None:
    announce(gateway, keys, "cluster-1", "cluster-2")
    reader = ondemand(max_apps=20)
    assert reader.wait_synced(10)
    rng = random.Random(7)
    for _ in range(300):
        app = "".join(rng.choices(string.ascii_lowercase, k=12))
        assert reader.follow("default", app, 5)
    assert reader.followed_apps == 20
    assert reader.watched_ranges == 1 + 20 * 2
    assert reader.evictions == 280


@pytest.fixture
def orders_behind_a_proxy(etcd: LocalEtcd, gateway: EtcdGateway, keys: Keys) -> Iterator[TcpProxy]:
    """cluster-1 announced with one ``orders`` record, and a proxy to etcd the test can cut."""
    announce(gateway, keys, "cluster-1")
    put_record(gateway, keys, record("orders", cluster="cluster-1", address="10.1.0.1"))
    proxy = TcpProxy("127.0.0.1", etcd.client_port)
    yield proxy
    proxy.close()


def test_etcd_unreachable_on_first_ask_then_the_registry_answer(orders_behind_a_proxy: TcpProxy, ondemand) -> None:
    proxy = orders_behind_a_proxy
    reader = ondemand(proxy.endpoint, retry_seconds=0.2)
    assert reader.wait_synced(10)
    proxy.cut()
    eventually(lambda: not reader.connected, 10, "the reader notices")
    assert not reader.follow("default", "orders", 0.5), "the fallback while etcd is unreachable"
    proxy.restore()
    eventually(lambda: reader.follow("default", "orders", 2), 15, "the registry answer once etcd is back")
    assert reader.cache.lookup("default", "orders") == {"cluster-1": ("10.1.0.1:50002",)}


def test_an_app_first_asked_during_an_outage_is_read_when_etcd_is_back(orders_behind_a_proxy: TcpProxy,
                                                                       ondemand) -> None:
    """No second resolve is needed: the re-connect reads every app asked about, answered or not."""
    proxy = orders_behind_a_proxy
    reader = ondemand(proxy.endpoint, retry_seconds=60)
    assert reader.wait_synced(10)
    proxy.cut()
    eventually(lambda: not reader.connected, 10, "the reader notices")
    assert not reader.follow("default", "orders", 0.5)
    proxy.restore()
    eventually(lambda: reader.is_following("default", "orders"), 15, "read on reconnecting")
    assert reader.cache.lookup("default", "orders") == {"cluster-1": ("10.1.0.1:50002",)}
    assert reader.follow("default", "orders", 0), "answered from the cache (retry_seconds has not passed)"


def test_a_read_cut_half_way_is_finished_on_resume(orders_behind_a_proxy: TcpProxy, gateway: EtcdGateway,
                                                   keys: Keys, ondemand) -> None:
    """A new cluster's reads fail when the connection drops mid-way: gap filling reads them on resume."""
    proxy = orders_behind_a_proxy
    reader = ondemand(proxy.endpoint)
    for app in ("orders", "cart", "payments"):
        assert reader.follow("default", app, 5)
    for app in ("orders", "cart", "payments"):
        put_record(gateway, keys, record(app, cluster="cluster-4", address=f"10.4.0.{len(app)}"))
    real_list, cuts = reader.gateway.list_prefix, list[str]()

    def list_cut_once(prefix: str, *args: object, **kwargs: object) -> object:
        if "/cluster-4/" in prefix and len(cuts) == 1:  # the second read the new cluster triggers
            cuts.append(prefix)
            proxy.cut()  # a real partition, timed between two reads
        elif "/cluster-4/" in prefix and not cuts:
            cuts.append("first read passes")
        return real_list(prefix, *args, **kwargs)

    reader.gateway.list_prefix = list_cut_once
    announce(gateway, keys, "cluster-4")
    eventually(lambda: len(cuts) == 2, 10, "the partition hit the new cluster's reads")
    eventually(lambda: not reader.connected, 10, "the reader notices")
    proxy.restore()
    eventually(lambda: reader.cache.dump() == {**truth_for(gateway, keys, "orders"), **truth_for(gateway, keys, "cart"),
                                               **truth_for(gateway, keys, "payments")}, 15, "every app in cluster-4")
    assert reader.watched_ranges == 1 + 3 * 2
    put_record(gateway, keys, record("cart", cluster="cluster-4", instance="c-2", address="10.4.0.9"))
    eventually(lambda: reader.cache.lookup("default", "cart")["cluster-4"] == ("10.4.0.4:50002", "10.4.0.9:50002"),
               10, "cluster-4 watched after the gap was filled")


def test_a_compacted_watch_is_re_read_never_served_stale(orders_behind_a_proxy: TcpProxy, gateway: EtcdGateway,
                                                         keys: Keys, ondemand) -> None:
    proxy = orders_behind_a_proxy
    reader = ondemand(proxy.endpoint)
    assert reader.follow("default", "orders", 5)
    proxy.cut()
    gone = record("orders", cluster="cluster-1", address="10.1.0.1")
    gateway.delete(gone.key(keys))
    put_record(gateway, keys, record("orders", cluster="cluster-1", instance="o-new", address="10.1.0.2"))
    gateway.compact(gateway.status(keys.root).revision)
    proxy.restore()
    eventually(lambda: reader.cache.dump() == truth_for(gateway, keys, "orders"), 15, "re-read after compaction")


def test_serve_with_the_on_demand_scope_answers_from_the_registry(etcd: LocalEtcd, gateway: EtcdGateway, keys: Keys,
                                                                  prefix: str, serve) -> None:
    announce(gateway, keys, "cluster-1", "cluster-2")
    put_record(gateway, keys, record("orders", cluster="cluster-2", address="10.2.0.7"))
    server = serve("--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}", "--set",
                   "cacheScope=onDemand", "--set", "clusterName=cluster-1")
    with server.client("etcd") as client:
        client.init("{}")
        assert client.resolve("orders") == "10.2.0.7:50002"  # the first resolve reads the app, then answers
        assert client.resolve("cart") == "cart-dapr.default.svc.cluster.local:50002"  # no records: fallback
        put_record(gateway, keys, record("orders", cluster="cluster-1", address="10.1.0.7"))
        eventually(lambda: client.resolve("orders") == "10.1.0.7:50002", 5, "FailOver back to the own cluster")


def test_a_self_registered_cluster_is_discovered_by_the_on_demand_scope(etcd: LocalEtcd, gateway: EtcdGateway,
                                                                        keys: Keys, prefix: str, serve) -> None:
    """Self-registration writes no info key; its members/ marker announces the cluster instead."""
    server = serve()
    with server.client("vm-sidecar") as vm, server.client("observer") as observer:
        vm.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "clusterName": "vms", "selfRegister": True},
                app_id="billing", namespace="default", address="192.168.7.10", internal_port=50002)
        eventually(lambda: gateway.get(keys.member("vms", "192.168.7.10-50002")) is not None, 5, "the marker")
        observer.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "clusterName": "cluster-1",
                       "cacheScope": "onDemand"})
        eventually(lambda: observer.resolve("billing") == "192.168.7.10:50002", 5, "found through clusters/vms/")
        vm.close_instance()
        eventually(lambda: gateway.get(keys.member("vms", "192.168.7.10-50002")) is None, 5, "gone with the lease")
        eventually(lambda: observer.resolve("billing").startswith("billing-dapr."), 5, "observer falls back")


def test_a_batch_older_than_the_ranges_read_is_never_applied(gateway: EtcdGateway, keys: Keys, ondemand) -> None:
    """A batch taken from a watcher cancelled meanwhile (app dropped, asked again, read afresh) is older
    than the fresh read: applying it would bring back a deleted instance for good."""
    from resolver.etcd.multiwatch import Range
    from resolver.etcd.watch import PUT, WatchEvent

    announce(gateway, keys, "cluster-1")
    gone = record("orders", cluster="cluster-1", instance="o-gone", address="10.1.0.9")
    put_record(gateway, keys, gone)
    old_revision = gateway.status(keys.root).revision
    gateway.delete(gone.key(keys))
    reader = ondemand()
    assert reader.follow("default", "orders", 5)
    assert reader.cache.lookup("default", "orders") == {}
    watched = Range(keys.cluster_apps("cluster-1") + "default/orders/")
    stale = WatchEvent(PUT, gone.key(keys).encode(), gone.to_json(), 0, old_revision)
    reader._on_events(watched, [stale])  # what the cancelled watcher's last batch would deliver
    assert reader.cache.lookup("default", "orders") == {}
    put_record(gateway, keys, record("orders", cluster="cluster-1", instance="o-new", address="10.1.0.2"))
    eventually(lambda: reader.cache.dump() == truth_for(gateway, keys, "orders"), 5, "newer events still apply")


def test_evictions_through_etcd_grpc_proxy_cancel_the_right_watchers(etcd: LocalEtcd, gateway: EtcdGateway,
                                                                     keys: Keys, ondemand) -> None:
    """etcd grpc-proxy re-maps watch ids and coalesces watchers: creates, cancels (also of a watcher
    removed before its id came) and events must still meet the right range through it."""
    from resolver.local_etcd import GrpcProxy

    announce(gateway, keys, "cluster-1", "cluster-2")
    with GrpcProxy(etcd.address) as proxy:
        reader = ondemand(proxy.endpoint, max_apps=3)
        assert reader.follow("default", "orders", 10)
        rng = random.Random(11)
        for _ in range(40):  # every follow evicts the least recently used one; orders is kept warm
            assert reader.follow("default", "".join(rng.choices(string.ascii_lowercase, k=10)), 10)
            assert reader.follow("default", "orders", 1)
        assert reader.followed_apps == 3 and reader.watched_ranges == 1 + 3 * 2
        evicted = "".join(random.Random(11).choices(string.ascii_lowercase, k=10))  # the first random app
        put_record(gateway, keys, record(evicted, cluster="cluster-1", address="10.1.7.7"))
        for index in range(5):
            put_record(gateway, keys, record("orders", cluster=f"cluster-{1 + index % 2}", instance=f"o-{index}",
                                             address=f"10.{1 + index % 2}.0.{index + 1}"))
        eventually(lambda: reader.cache.dump() == truth_for(gateway, keys, "orders"), 10, "orders through the proxy")
        assert reader.cache.lookup("default", evicted) == {}
        watch = reader._watch
        assert watch is not None
        eventually(lambda: watch.active_watchers == reader.watched_ranges, 10,
                   "one live watcher per followed range: every evicted one cancelled")
