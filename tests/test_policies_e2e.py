"""Traffic policies, self-registration and staleAfter end to end: real etcd, ``serve`` subprocesses."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import grpc
import pytest

from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import Keys
from tests.conftest import eventually, make_settings, put_record, record

LOCAL = record("orders", cluster="cluster-2", address="10.2.0.1")
REMOTE_A = record("orders", cluster="cluster-1", address="10.1.0.1")
REMOTE_B = record("orders", cluster="cluster-3", address="10.3.0.1")


def test_failover_switches_to_remote_and_back(serve, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                               keys: Keys) -> None:
    for rec in (LOCAL, REMOTE_A, REMOTE_B):
        put_record(gateway, keys, rec)
    server = serve()
    with server.client() as client:
        client.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "clusterName": "cluster-2",
                     "failoverOrder": "cluster-3"})
        assert {client.resolve("orders") for _ in range(20)} == {"10.2.0.1:50002"}
        assert client.resolve_multi("orders") == ["10.2.0.1:50002"]
        gateway.delete(LOCAL.key(keys))
        eventually(lambda: client.resolve("orders") == "10.3.0.1:50002", 5, "failover to cluster-3 (failoverOrder)")
        gateway.delete(REMOTE_B.key(keys))
        eventually(lambda: client.resolve("orders") == "10.1.0.1:50002", 5, "failover to the rest")
        put_record(gateway, keys, LOCAL)
        eventually(lambda: client.resolve("orders") == "10.2.0.1:50002", 5, "back to the local cluster")


def test_locality_never_leaves_the_cluster(serve, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                           keys: Keys) -> None:
    put_record(gateway, keys, REMOTE_A)
    server = serve()
    with server.client() as client:
        client.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "clusterName": "cluster-2",
                     "policy": "Locality"})
        assert client.resolve("orders") == "orders-dapr.default.svc.cluster.local:50002"
        put_record(gateway, keys, LOCAL)
        eventually(lambda: client.resolve("orders") == "10.2.0.1:50002", 5, "local endpoint")


def test_active_active_spreads_by_weight(serve, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                         keys: Keys) -> None:
    put_record(gateway, keys, LOCAL)
    put_record(gateway, keys, REMOTE_A)
    put_record(gateway, keys, record("orders", cluster="cluster-1", address="10.1.0.2"))
    put_record(gateway, keys, REMOTE_B)
    server = serve()
    with server.client() as client:
        client.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "clusterName": "cluster-2",
                     "policy": "ActiveActive", "clusterWeights": "cluster-1=300,cluster-2=100,cluster-3=0"})
        picks = Counter(client.resolve("orders").split(".")[1] for _ in range(2000))
        assert set(picks) == {"1", "2"}  # cluster-3 has weight 0
        assert picks["1"] / 2000 == pytest.approx(0.75, abs=0.05)
        multi = client.resolve_multi("orders")
        # cluster-1: 2 instances sharing weight 300; cluster-2: 1 instance with weight 100 -> 3:3:2 ... exact shares
        shares = Counter(address.split(".")[1] for address in multi)
        assert shares["1"] / len(multi) == pytest.approx(0.75)
        assert multi.count("10.1.0.1:50002") == multi.count("10.1.0.2:50002")
        assert "10.3.0.1:50002" not in multi


def test_per_app_policy_override(serve, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway, keys: Keys) -> None:
    put_record(gateway, keys, REMOTE_A)
    put_record(gateway, keys, record("payments", cluster="cluster-1", address="10.1.9.9"))
    server = serve()
    with server.client() as client:
        client.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "clusterName": "cluster-2",
                     "policies": {"default/payments": {"policy": "Locality"}}})
        assert client.resolve("orders") == "10.1.0.1:50002"  # global FailOver reaches cluster-1
        assert client.resolve("payments") == "payments-dapr.default.svc.cluster.local:50002"


def test_self_registration_is_visible_to_another_resolver_and_removed_on_close(
        serve, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway, keys: Keys) -> None:
    server = serve()
    with server.client("vm-sidecar") as vm, server.client("observer") as observer:
        vm.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "clusterName": "vms", "selfRegister": True},
                app_id="billing", namespace="default", address="192.168.7.10", internal_port=50002)
        observer.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "clusterName": "cluster-1"})
        eventually(lambda: observer.resolve("billing") == "192.168.7.10:50002", 5, "self-registered record")
        key = keys.endpoint("vms", "default", "billing", "192.168.7.10-50002")
        assert gateway.get(key) is not None
        lease = gateway.call("get", lambda c: c.get(key))[1].lease_id
        assert lease != 0  # on a lease: it vanishes if this process dies
        vm.close_instance()
        eventually(lambda: gateway.get(key) is None, 5, "deregistration on Close")
        eventually(lambda: observer.resolve("billing").startswith("billing-dapr."), 5, "observer falls back")


def test_self_registration_survives_a_revoked_lease_and_ends_on_sigterm(
        serve, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway, keys: Keys) -> None:
    server = serve("--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}")
    key = keys.endpoint("vms", "shop", "cart", "fd00--5-3500")
    with server.client("vm") as vm:
        vm.init({"clusterName": "vms", "selfRegister": "true"}, app_id="cart", namespace="shop", address="fd00::5",
                internal_port=3500)
        eventually(lambda: gateway.get(key) is not None, 5, "registration")
        lease = gateway.call("get", lambda c: c.get(key))[1].lease_id
        gateway.revoke(lease)  # an operator (or an expiry during an outage) removes it
        assert gateway.get(key) is None
        eventually(lambda: gateway.get(key) is not None, 15, "re-registration on a new lease")
    server.stop()
    assert gateway.get(key) is None  # graceful shutdown deregisters


def test_self_registration_refuses_a_bad_instance(serve, etcd: LocalEtcd, prefix: str) -> None:
    server = serve()
    with server.client() as client:
        with pytest.raises(grpc.RpcError) as raised:
            client.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "clusterName": "vms",
                         "selfRegister": True}, app_id="bad.id", address="10.0.0.1")
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (raised.value.details() or "").startswith("instance.app_id:")
        with pytest.raises(grpc.RpcError) as raised:
            client.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "selfRegister": True})
        assert "clusterName" in (raised.value.details() or "")


def test_stale_after_drops_remote_endpoints_while_etcd_is_frozen(serve, tmp_path: Path, prefix: str) -> None:
    own = LocalEtcd(tmp_path / "etcd").start()
    gateway = EtcdGateway(make_settings(own.endpoint, prefix).etcd)
    keys = Keys(prefix)
    try:
        put_record(gateway, keys, REMOTE_A)
        put_record(gateway, keys, record("orders", cluster="cluster-2", address="10.2.0.1"))
        put_record(gateway, keys, record("payments", cluster="cluster-1", address="10.1.5.5"))
        server = serve()
        with server.client() as client:
            client.init({"etcdEndpoints": own.endpoint, "prefix": prefix, "clusterName": "cluster-2",
                         "policy": "ActiveActive", "staleAfter": "1s", "etcdTimeout": "1s"})
            assert {client.resolve("orders") for _ in range(40)} == {"10.1.0.1:50002", "10.2.0.1:50002"}
            own.freeze()
            eventually(lambda: {client.resolve("orders") for _ in range(40)} == {"10.2.0.1:50002"}, 20,
                       "remote endpoints dropped as stale")
            assert client.resolve("payments") == "payments-dapr.default.svc.cluster.local:50002"  # fallback
            own.thaw()
            eventually(lambda: client.resolve("payments") == "10.1.5.5:50002", 20, "remote back after re-sync")
    finally:
        own.thaw()
        gateway.close()
        own.cleanup()


def test_default_keeps_serving_the_last_known_state(serve, tmp_path: Path, prefix: str) -> None:
    own = LocalEtcd(tmp_path / "etcd").start()
    gateway = EtcdGateway(make_settings(own.endpoint, prefix).etcd)
    try:
        put_record(gateway, Keys(prefix), REMOTE_A)
        server = serve()
        with server.client() as client:
            client.init({"etcdEndpoints": own.endpoint, "prefix": prefix, "clusterName": "cluster-2",
                         "etcdTimeout": "1s"})
            assert client.resolve("orders") == "10.1.0.1:50002"
            own.kill()
            eventually(lambda: client.health("registry") == "NOT_SERVING", 15, "registry unhealthy")
            assert client.resolve("orders") == "10.1.0.1:50002"
    finally:
        gateway.close()
        own.cleanup()
