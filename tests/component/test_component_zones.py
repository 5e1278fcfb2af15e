"""Zones through the component end to end: ``serve`` as a real subprocess, a daprd-like client on
its socket, a real etcd. The caller's zone comes from the ``zone`` setting or from the caller's
own record (which appears after Init, as a publisher writes it once the pod is Ready), answers
stay in that zone while it holds enough endpoints and overflow to the cluster when it does not,
and failover keeps the zone first in the next cluster — in both cache scopes."""

from __future__ import annotations

import pytest

from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import ClusterInfo, EndpointRecord, Keys
from tests.conftest import eventually, put_record

Z1 = {"10.1.0.1:50002", "10.1.0.2:50002"}
Z2 = {"10.1.0.3:50002", "10.1.0.4:50002"}


def pod(app: str, address: str, zone: str, cluster: str = "cluster-1") -> EndpointRecord:
    return EndpointRecord(app_id=app, namespace="default", cluster=cluster,
                          instance=f"{app}-{address.replace('.', '-')}", address=address, port=50002, zone=zone)


def orders(gateway: EtcdGateway, keys: Keys) -> None:
    """orders in cluster-1: two pods in z1, two in z2 (and the cluster announced, for the on-demand scope)."""
    gateway.put(keys.info("cluster-1"), ClusterInfo("cluster-1", "pub", "test", 1.0, synced_at=2.0).to_json())
    for address, zone in (("10.1.0.1", "z1"), ("10.1.0.2", "z1"), ("10.1.0.3", "z2"), ("10.1.0.4", "z2")):
        put_record(gateway, keys, pod("orders", address, zone))


@pytest.mark.parametrize("scope", ["all", "onDemand"])
def test_zone_from_the_callers_own_record_then_overflow(serve, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                                        keys: Keys, scope: str) -> None:
    orders(gateway, keys)
    server = serve()
    with server.client() as client:
        client.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "clusterName": "cluster-1",
                     "zoneAware": "true", "cacheScope": scope}, app_id="frontend", address="10.1.0.50")
        assert set(client.resolve_multi("orders")) == Z1 | Z2, "the caller's zone is not known yet"
        put_record(gateway, keys, pod("frontend", "10.1.0.50", "z2"))  # the publisher saw the caller Ready
        eventually(lambda: set(client.resolve_multi("orders")) == Z2, 10, "answers to stay in the caller's zone")
        assert {client.resolve("orders") for _ in range(50)} <= Z2
        gateway.delete(pod("orders", "10.1.0.4", "z2").key(keys))  # one pod left in z2: too few
        eventually(lambda: set(client.resolve_multi("orders")) == Z1 | {"10.1.0.3:50002"}, 10, "overflow")
        put_record(gateway, keys, pod("orders", "10.1.0.5", "z2"))
        eventually(lambda: set(client.resolve_multi("orders")) == {"10.1.0.3:50002", "10.1.0.5:50002"}, 10,
                   "back in the zone")


def test_zone_setting_share_rule_and_failover(serve, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                              keys: Keys) -> None:
    orders(gateway, keys)
    for i in range(3):
        put_record(gateway, keys, pod("orders", f"10.3.0.{i}", "z1" if i < 2 else "z3", cluster="cluster-3"))
    base = {"etcdEndpoints": etcd.endpoint, "prefix": prefix, "zoneAware": "true"}
    server = serve()
    with server.client("in-z1") as z1, server.client("strict") as strict, server.client("remote") as remote, \
            server.client("unaware") as unaware:
        z1.init({**base, "clusterName": "cluster-1", "zone": "z1"})
        assert set(z1.resolve_multi("orders")) == Z1
        strict.init({**base, "clusterName": "cluster-1", "zone": "z1", "zoneMinPercent": "60"})
        assert set(strict.resolve_multi("orders")) == Z1 | Z2, "2 of 4 is under 60 %: the whole cluster"
        remote.init({**base, "clusterName": "cluster-2", "zone": "z1", "failoverOrder": "cluster-3"})
        assert set(remote.resolve_multi("orders")) == {"10.3.0.0:50002", "10.3.0.1:50002"}, \
            "no orders in cluster-2: the next cluster, the caller's zone first"
        unaware.init({**base, "clusterName": "cluster-1", "zone": "z1", "zoneAware": "false"})
        assert set(unaware.resolve_multi("orders")) == Z1 | Z2
