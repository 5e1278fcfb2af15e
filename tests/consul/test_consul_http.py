"""The catalog over plain HTTP (the standard library's client): routes, JSON, policies, blocking, errors."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections import Counter
from typing import Any
from urllib.parse import quote

from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd, free_port
from resolver.records.schema import Keys
from tests.conftest import eventually, put_record, record
from tests.consul.conftest import role_args

LONG_WAIT = 60.0
"""A blocking query's wait that a prompt answer stays far below, however busy the machine."""


def clusters_of(entries: list[dict[str, Any]]) -> Counter[str]:
    return Counter(entry["Node"]["Node"] for entry in entries)


def test_agent_self_health_service_and_headers(consul_role, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                               keys: Keys) -> None:
    put_record(gateway, keys, record("orders", cluster="cluster-2", instance="orders-a", address="10.2.0.1"))
    put_record(gateway, keys, record("orders", cluster="cluster-2", instance="orders-b", address="fd00::2",
                                     port=50011))
    role = consul_role(*role_args(etcd, prefix))
    me = role.get("/v1/agent/self")
    assert me.status == 200 and all(isinstance(value, dict) for value in me.json().values())
    assert me.json()["Config"]["Datacenter"] == "cluster-2"

    reply = role.get("/v1/health/service/orders?passing=1&cached")
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/json"
    assert reply.headers["X-Consul-Knownleader"] == "true" and reply.headers["X-Consul-Lastcontact"] == "0"
    assert reply.index > 1_600_000_000_000_000  # microseconds of the wall clock
    entries = sorted(reply.json(), key=lambda e: e["Service"]["Address"])
    assert [(e["Service"]["Address"], e["Service"]["Port"], e["Service"]["Meta"]["DAPR_PORT"], e["Node"]["Address"])
            for e in entries] == [("10.2.0.1", 50002, "50002", "10.2.0.1"), ("fd00::2", 50011, "50011", "fd00::2")]
    assert all(e["Service"]["Service"] == "orders" for e in entries)
    assert len({e["Service"]["ID"] for e in entries}) == 2
    assert all(c["Status"] == "passing" and c["ServiceID"] == e["Service"]["ID"]
               for e in entries for c in e["Checks"])
    assert role.get("/v1/health/service/orders?tag=primary").json() == []  # no entry has tags
    assert role.get("/v1/health/service/nothing").json() == []
    assert role.get("/v1/health/service/Not_An..Id").json() == []  # cannot exist: no such service, as Consul
    assert role.get("/v1/status/leader").json() == role.address


def test_unknown_endpoints_methods_and_bad_parameters(consul_role, etcd: LocalEtcd, prefix: str) -> None:
    role = consul_role(*role_args(etcd, prefix))
    for path in ("/v1/kv/x", "/v1/catalog/services", "/", "/v1/agent/services", "/v1/agent/check/register"):
        reply = role.get(path)
        assert (reply.status, reply.text) == (404, "404 page not found\n")
    assert role.get("/v1/agent/self", method="PUT").status == 405
    assert role.get("/v1/agent/service/register").status == 405  # served, as PUT only
    refused = role.get("/v1/agent/service/register", method="PUT")  # this role has no --write-token-file
    assert refused.status == 403 and "--write-token-file" in refused.text
    for path, words in (("/v1/health/service/orders?index=x", ("index", "'x'")),
                        ("/v1/health/service/orders?index=1&wait=forever", ("wait", "'forever'")),
                        ("/v1/health/service/orders?hash=abc", ("hash",)),
                        ("/v1/health/service/orders?node-meta=a:b", ("node-meta",)),
                        ("/v1/health/service/orders?filter=" + quote('Service.Meta.x == "1"'), ("filter",)),
                        ("/v1/health/service/orders?ns=Not_Valid", ("ns", "DNS-1123")),
                        ("/v1/health/state/bogus", ("bogus",)),
                        ("/v1/health/service/", ("Missing service name",))):
        reply = role.get(path)
        assert reply.status == 400, (path, reply.text)
        assert all(word in reply.text for word in words), (path, reply.text)


MALFORMED = [
    ('ServiceName != "a"', "'!='"),
    ('Status == "passing"', "'Status'"),
    ('ServiceName == "a" and ServiceName == "b"', "'and'"),
    ('not ServiceName == "a"', "'not'"),
    ("ServiceName == a", "'a'"),
    ('ServiceName matches "a.*"', "'matches'"),
    ('(ServiceName == "a"', "ends too early"),
    ('ServiceName == "a")', "')'"),
    ('ServiceName == "a\\n"', "escape"),
    ('"a" in ServiceName', "'\"a\"'"),
    ("   ", "empty"),
]


def test_malformed_filters_are_400_naming_the_construct(consul_role, etcd: LocalEtcd, prefix: str) -> None:
    role = consul_role(*role_args(etcd, prefix))
    for expression, named in MALFORMED:
        reply = role.get("/v1/health/state/any?filter=" + quote(expression))
        assert reply.status == 400, (expression, reply.text)
        assert named in reply.text and "ServiceName" in reply.text, (expression, reply.text)
    assert role.get("/v1/health/state/any?filter=").status == 200  # empty: no filter, as Consul


def test_state_any_with_the_resolvers_filter(consul_role, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                             keys: Keys) -> None:
    put_record(gateway, keys, record("a", cluster="cluster-2", address="10.2.0.1"))
    put_record(gateway, keys, record("b", cluster="cluster-1", address="10.1.0.1"))
    put_record(gateway, keys, record("c", cluster="cluster-2", address="10.2.0.3"))
    role = consul_role(*role_args(etcd, prefix))
    checks = role.get("/v1/health/state/any?filter=" + quote('ServiceName=="a" or ServiceName=="b"')).json()
    assert sorted((c["ServiceName"], c["Node"], c["Status"]) for c in checks) == [
        ("a", "cluster-2", "passing"), ("b", "cluster-1", "passing")]
    spaced = role.get("/v1/health/state/passing?filter=" + quote('( ServiceName == `a` ) or ServiceName=="zz"'))
    assert [c["ServiceName"] for c in spaced.json()] == ["a"]
    assert role.get("/v1/health/state/critical?filter=" + quote('ServiceName=="a"')).json() == []
    everything = role.get("/v1/health/state/any").json()  # no filter: every app of the namespace
    assert sorted(c["ServiceName"] for c in everything) == ["a", "b", "c"]
    bad_name = role.get("/v1/health/state/any?filter=" + quote('ServiceName=="a" or ServiceName=="No.Such_"'))
    assert [c["ServiceName"] for c in bad_name.json()] == ["a"]  # one bad name costs nothing to the others


def test_policies_weights_failover_overrides_and_fallback(consul_role, etcd: LocalEtcd, prefix: str,
                                                          gateway: EtcdGateway, keys: Keys) -> None:
    for cluster, net in (("cluster-1", 1), ("cluster-2", 2)):
        put_record(gateway, keys, record("web", cluster=cluster, address=f"10.{net}.0.1"))
        put_record(gateway, keys, record("api", cluster=cluster, address=f"10.{net}.0.2"))
    put_record(gateway, keys, record("web", cluster="cluster-1", address="10.1.0.9"))
    role = consul_role(*role_args(etcd, prefix, "--set", "policy=FailOver", "--set",
                                  'policies={"default/web": {"policy": "ActiveActive", '
                                  '"clusterWeights": "cluster-1=300,cluster-2=100"}}'))
    api = role.get("/v1/health/service/api").json()
    assert clusters_of(api) == {"cluster-2": 1}  # FailOver: the role's own cluster
    web = role.get("/v1/health/service/web").json()
    assert clusters_of(web) == {"cluster-1": 6, "cluster-2": 2}  # 300:100 by repetition (2 + 1 instances)
    assert len({e["Service"]["ID"] for e in web}) == len(web)
    by_address = Counter(e["Service"]["Address"] for e in web)
    assert by_address["10.1.0.1"] == by_address["10.1.0.9"]
    assert role.get("/v1/health/service/ghost").json() == []  # the fallback is Consul's empty list


def test_namespace_from_ns_else_the_roles(consul_role, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                          keys: Keys) -> None:
    put_record(gateway, keys, record("orders", cluster="cluster-2", namespace="prod", address="10.2.0.5"))
    put_record(gateway, keys, record("orders", cluster="cluster-2", namespace="default", address="10.2.0.6"))
    role = consul_role(*role_args(etcd, prefix, cluster="cluster-2"), "--namespace", "prod")
    assert [e["Service"]["Address"] for e in role.get("/v1/health/service/orders").json()] == ["10.2.0.5"]
    assert [e["Service"]["Address"] for e in role.get("/v1/health/service/orders?ns=default").json()] == ["10.2.0.6"]


def test_blocking_query_wakes_on_its_own_change_only(consul_role, etcd: LocalEtcd, prefix: str,
                                                     gateway: EtcdGateway, keys: Keys) -> None:
    put_record(gateway, keys, record("orders", cluster="cluster-2", address="10.2.0.1"))
    role = consul_role(*role_args(etcd, prefix))
    first = role.get("/v1/health/service/orders")
    # An older index is answered at once: long before the wait it asked for. Bounds here are
    # fractions of the requested wait (a busy machine cannot cross them); the milliseconds
    # themselves are bench/consul_watchers.py's.
    started = time.monotonic()
    assert role.get(f"/v1/health/service/orders?index={first.index - 1}&wait={LONG_WAIT:.0f}s").status == 200
    assert time.monotonic() - started < LONG_WAIT / 4
    # An unrelated change does not end the wait; the wait ends with the same answer.
    threading.Timer(0.3, lambda: put_record(gateway, keys, record("other", cluster="cluster-2"))).start()
    started = time.monotonic()
    same = role.get(f"/v1/health/service/orders?index={first.index}&wait=1500ms")
    assert 1.4 < time.monotonic() - started < 2 * 1.5
    assert [e["Service"]["ID"] for e in same.json()] == [e["Service"]["ID"] for e in first.json()]
    assert same.index >= first.index
    # Its own change does, within milliseconds of the registry's event.
    changed_at: list[float] = []

    def change() -> None:
        changed_at.append(time.monotonic())
        put_record(gateway, keys, record("orders", cluster="cluster-2", address="10.2.0.2"))

    threading.Timer(0.3, change).start()
    woken = role.get(f"/v1/health/service/orders?index={same.index}&wait={LONG_WAIT:.0f}s")
    latency = time.monotonic() - changed_at[0]
    assert woken.index > same.index and len(woken.json()) == 2
    assert latency < LONG_WAIT / 4, latency  # woken by the change, not by the wait running out
    print(f"blocking query woken {latency * 1000:.0f} ms after the put")


def test_wait_is_capped_and_blocking_queries_are_bounded(consul_role, etcd: LocalEtcd, prefix: str,
                                                         gateway: EtcdGateway, keys: Keys) -> None:
    put_record(gateway, keys, record("orders", cluster="cluster-2"))
    role = consul_role(*role_args(etcd, prefix), "--max-wait", "1", "--max-blocking", "2")
    index = role.get("/v1/health/service/orders").index
    started = time.monotonic()
    assert role.get(f"/v1/health/service/orders?index={index}&wait=100h").status == 200
    assert 0.9 < time.monotonic() - started < 10 * 1  # cut to --max-wait 1 (from 100 h)
    holders = [threading.Thread(target=role.get, args=(f"/v1/health/service/orders?index={index}&wait=1s",))
               for _ in range(2)]
    for thread in holders:
        thread.start()
    time.sleep(0.3)
    over = role.get(f"/v1/health/state/any?index={index}&wait=1s")
    assert over.status == 429 and "--max-blocking" in over.text
    assert role.get("/v1/health/service/orders").status == 200  # non-blocking reads go on
    for thread in holders:
        thread.join()
    assert role.get(f"/v1/health/service/orders?index={index}&wait=10ms").status == 200  # slots were released
    assert role.get("/v1/health/service/" + "a" * 20_000).status == 414


def test_read_token(consul_role, etcd: LocalEtcd, prefix: str, tmp_path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    role = consul_role(*role_args(etcd, prefix), "--token-file", str(tmp_path / "token"))
    missing = role.get("/v1/health/service/orders")
    assert missing.status == 403 and "X-Consul-Token" in missing.text
    wrong = role.get("/v1/health/service/orders", {"X-Consul-Token": "s3cres"})
    assert (wrong.status, wrong.text) == (403, "ACL not found\n")
    assert role.get("/v1/health/service/orders", {"X-Consul-Token": "s3cret"}).status == 200
    assert role.get("/v1/agent/self?token=s3cret").status == 200
    assert role.get("/v1/agent/self", {"Authorization": "Bearer s3cret"}).status == 200


def test_index_never_goes_back_across_a_restart_and_a_wiped_registry(consul_role, etcd: LocalEtcd, prefix: str,
                                                                      gateway: EtcdGateway, keys: Keys) -> None:
    put_record(gateway, keys, record("orders", cluster="cluster-2"))
    role = consul_role(*role_args(etcd, prefix))
    seen = [role.get("/v1/health/service/orders").index]
    put_record(gateway, keys, record("orders", cluster="cluster-2", address="10.0.0.2"))
    eventually(lambda: len(role.get("/v1/health/service/orders").json()) == 2, what="the second instance")
    seen.append(role.get("/v1/health/service/orders").index)
    role.stop()
    gateway.delete_prefix(prefix + "/")  # the registry emptied: etcd's revision would not restart, ours must not
    again = consul_role(*role_args(etcd, prefix))
    seen.append(again.get("/v1/health/service/orders").index)
    assert seen == sorted(seen) and len(set(seen)) == 3, seen


def test_connection_cap_request_body_cap_and_metrics(consul_role, etcd: LocalEtcd, prefix: str) -> None:
    metrics_port = free_port()
    role = consul_role(*role_args(etcd, prefix), "--max-connections", "2", "--max-request-bytes", "2048",
                       "--metrics-port", str(metrics_port))
    held = [socket.create_connection(("127.0.0.1", role.port)) for _ in range(2)]  # idle keep-alive connections
    try:
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", role.port), timeout=5) as third:
            third.sendall(b"GET /v1/agent/self HTTP/1.1\r\nHost: x\r\n\r\n")
            assert third.recv(4096).startswith(b"HTTP/1.1 503 ")
    finally:
        for connection in held:
            connection.close()
    eventually(lambda: role.get("/v1/agent/self").status == 200, what="a free connection slot")
    body = role.get("/v1/agent/self", {"Content-Length": "5000"}, method="GET")
    assert body.status == 413 and "2048" in body.text
    assert role.get("/v1/health/service/" + "a" * 3000).status == 414
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for limit in ("connections", "request_size"):
        assert f'dapr_nr_consul_limit_reached_total{{limit="{limit}"}}' in text, limit
    assert 'dapr_nr_consul_requests_total{code="200",endpoint="agent_self"}' in text
    assert "dapr_nr_consul_blocking_queries 0.0" in text
