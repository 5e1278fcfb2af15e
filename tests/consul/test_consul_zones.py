"""Zones in the consul role: the caller is known by its request's source address, so each client
gets its own zone's entries — here clients connect from other loopback addresses (127.0.0.2, …)
whose registry records carry zones (``allowLoopback``)."""

from __future__ import annotations

import http.client
import json
from typing import Any

from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import EndpointRecord, Keys
from tests.conftest import eventually, put_record
from tests.consul.conftest import ConsulProcess, role_args

Z1 = {"10.2.0.1", "10.2.0.2"}
Z2 = {"10.2.0.3", "10.2.0.4"}


def pod(app: str, address: str, zone: str) -> EndpointRecord:
    return EndpointRecord(app_id=app, namespace="default", cluster="cluster-2",
                          instance=f"{app}-{address.replace('.', '-')}", address=address, port=50002, zone=zone)


def ask(role: ConsulProcess, path: str, source: str) -> tuple[Any, int]:
    """GET ``path`` from the local address ``source``: the role sees that as the caller."""
    connection = http.client.HTTPConnection("127.0.0.1", role.port, timeout=30, source_address=(source, 0))
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, body
        return json.loads(body), int(response.getheader("X-Consul-Index") or 0)
    finally:
        connection.close()


def hosts(role: ConsulProcess, source: str) -> set[str]:
    return {entry["Service"]["Address"] for entry in ask(role, "/v1/health/service/orders", source)[0]}


def test_each_client_gets_its_own_zone(consul_role, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                       keys: Keys) -> None:
    for address, zone in (("10.2.0.1", "z1"), ("10.2.0.2", "z1"), ("10.2.0.3", "z2"), ("10.2.0.4", "z2")):
        put_record(gateway, keys, pod("orders", address, zone))
    put_record(gateway, keys, pod("frontend", "127.0.0.2", "z2"))
    put_record(gateway, keys, pod("frontend", "127.0.0.3", "z1"))
    role = consul_role(*role_args(etcd, prefix, "--set", "allowLoopback=true", "--set", "zoneAware=true"))
    assert hosts(role, "127.0.0.2") == Z2
    assert hosts(role, "127.0.0.3") == Z1
    assert hosts(role, "127.0.0.1") == Z1 | Z2, "no record for this client: cluster-level"
    checks = ask(role, "/v1/health/state/any?filter=" + "ServiceName%20%3D%3D%20%22orders%22", "127.0.0.3")[0]
    assert len(checks) == 2, "the health-state route answers per client too"

    assert hosts(role, "127.0.0.4") == Z1 | Z2
    put_record(gateway, keys, pod("frontend", "127.0.0.4", "z2"))  # a client whose record appears later
    eventually(lambda: hosts(role, "127.0.0.4") == Z2, 10, "the new client's zone")

    gateway.delete(pod("orders", "10.2.0.4", "z2").key(keys))  # z2 keeps one pod: too few, overflow
    eventually(lambda: hosts(role, "127.0.0.2") == Z1 | {"10.2.0.3"}, 10, "overflow to the cluster")
    assert hosts(role, "127.0.0.3") == Z1


def test_the_roles_zone_setting_covers_clients_without_a_record(consul_role, etcd: LocalEtcd, prefix: str,
                                                                gateway: EtcdGateway, keys: Keys) -> None:
    for address, zone in (("10.2.0.1", "z1"), ("10.2.0.2", "z1"), ("10.2.0.3", "z2"), ("10.2.0.4", "z2")):
        put_record(gateway, keys, pod("orders", address, zone))
    put_record(gateway, keys, pod("frontend", "127.0.0.2", "z2"))
    role = consul_role(*role_args(etcd, prefix, "--set", "allowLoopback=true", "--set", "zoneAware=true",
                                  "--set", "zone=z1"))
    assert hosts(role, "127.0.0.1") == Z1
    assert hosts(role, "127.0.0.2") == Z2, "a client's own record beats the role's setting"
    unaware = consul_role(*role_args(etcd, prefix, "--set", "allowLoopback=true", "--set", "zone=z1"))
    assert hosts(unaware, "127.0.0.2") == Z1 | Z2, "zoneAware is opt-in"
