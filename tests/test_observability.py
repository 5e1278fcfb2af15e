"""Metrics on --metrics-port for serve, publish and dns; JSON logs; the registry health service."""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

import dns.message
import dns.query
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from resolver.config import settings
from resolver.demo.processes import CliProcess
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd, free_port
from resolver.observability.throttle import MAX_KINDS, Throttle
from resolver.records.schema import Keys
from tests.conftest import eventually, put_record, record


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_serve_metrics(serve, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway, keys: Keys) -> None:
    put_record(gateway, keys, record("orders", cluster="cluster-1"))
    port = free_port()
    server = serve("--metrics-port", str(port), "--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}")
    with server.client() as client:
        eventually(lambda: client.resolve("orders") == "10.0.0.1:50002", 5, "registry")
        client.resolve("ghost")
        with contextlib.suppress(grpc.RpcError):  # counting the INVALID_ARGUMENT is the point
            client.resolve("bad/id")
    samples = scrape(port)
    assert value(samples, "dapr_nr_resolves_total", outcome="registry", policy="FailOver") >= 1
    assert value(samples, "dapr_nr_resolves_total", outcome="fallback", policy="FailOver") == 1
    assert value(samples, "dapr_nr_resolves_total", outcome="invalid", policy="FailOver") == 1
    assert value(samples, "dapr_nr_resolve_duration_seconds_count") >= 2
    assert value(samples, "dapr_nr_registry_connected", prefix=prefix) == 1
    assert value(samples, "dapr_nr_registry_synced", prefix=prefix) == 1
    assert value(samples, "dapr_nr_cached_endpoints", prefix=prefix, cluster="cluster-1") == 1
    assert value(samples, "dapr_nr_cached_apps", prefix=prefix) == 1
    assert value(samples, "dapr_nr_registry_relists_total") >= 1
    assert value(samples, "dapr_nr_etcd_requests_total", operation="list") >= 1


def test_publisher_metrics(etcd: LocalEtcd, prefix: str, tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text("- {appId: billing, namespace: default, instance: vm-1, address: 192.168.1.5}\n"
                         "- {appId: bad.id, namespace: default, instance: vm-2, address: 192.168.1.6}\n")
    port = free_port()
    publisher = CliProcess(["publish", "--cluster", "vms", "--source", "file", "--file", str(inventory),
                            "--lease-ttl", "3s", "--leader-elect", "--metrics-port", str(port),
                            "--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}"],
                           tmp_path / "publish.log")
    try:
        eventually(lambda: value(scrape(port), "dapr_nr_publisher_lease_renewals_total") >= 2, 20, "renewals")
        samples = scrape(port)
        assert value(samples, "dapr_nr_publisher_writes_total", op="put") >= 1
        assert value(samples, "dapr_nr_publisher_leader") == 1
        assert value(samples, "dapr_nr_publisher_skipped_total", reason="invalid_inventory_entry") == 1
        assert value(samples, "dapr_nr_publisher_lease_losses_total") == 0
    finally:
        publisher.stop()


def test_dns_metrics(dns_bridge, etcd: LocalEtcd, prefix: str) -> None:
    port = free_port()
    bridge = dns_bridge("--metrics-port", str(port), "--set", f"etcdEndpoints={etcd.endpoint}",
                        "--set", f"prefix={prefix}")
    dns.query.udp(dns.message.make_query("example.com", "A"), "127.0.0.1", port=bridge.port, timeout=5)
    assert value(scrape(port), "dapr_nr_dns_queries_total", rcode="REFUSED", transport="udp") == 1


def test_json_logs_are_one_object_per_line(serve, etcd: LocalEtcd, prefix: str) -> None:
    server = serve("--log-format", "json", "--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}")
    server.stop()
    lines = [line for line in server.output().splitlines() if line.strip()]
    assert len(lines) >= 3
    entries = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "msg"} <= set(entry) for entry in entries)
    assert any("serving dapr.proto.components.v1.NameResolution" in entry["msg"] for entry in entries)


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def answers(port: int, path: str, expected: tuple[int, str]) -> bool:
    return http_get(port, path) == expected


def test_healthz_and_readyz_for_dns_and_publish(tmp_path: Path) -> None:
    """Liveness never depends on etcd; readiness fails only until the first sync, then stays ready
    through an etcd outage (the last known state is served)."""
    etcd = LocalEtcd(tmp_path / "etcd")  # not started yet: the roles come up with etcd down
    inventory = tmp_path / "inv.yaml"
    inventory.write_text("- {appId: orders, namespace: default, instance: vm-1, address: 10.1.0.1}\n")
    common = ["--set", f"etcdEndpoints={etcd.address}", "--set", "etcdTimeout=500ms", "--set", "initialSyncWait=0"]
    ports = {"dns": free_port(), "publish": free_port()}
    roles = {
        "dns": CliProcess(["dns", "--listen", "127.0.0.1:0", "--metrics-port", str(ports["dns"]), *common],
                          tmp_path / "dns.log"),
        "publish": CliProcess(["publish", "--cluster", "cluster-1", "--source", "file", "--file", str(inventory),
                               "--lease-ttl", "3s", "--metrics-port", str(ports["publish"]), *common],
                              tmp_path / "publish.log"),
    }
    try:
        for role, port in ports.items():
            eventually(partial(answers, port, "/healthz", (200, "ok\n")), 30, f"{role} /healthz")
            status, body = http_get(port, "/readyz")
            assert status == 503 and body.startswith("not ready: "), (role, status, body)
        assert "never synced" in http_get(ports["dns"], "/readyz")[1]
        etcd.start()
        for role, port in ports.items():
            eventually(partial(answers, port, "/readyz", (200, "ready\n")), 30, f"{role} /readyz")
        etcd.stop()  # an outage: still alive, still ready
        for role, port in ports.items():
            assert http_get(port, "/healthz") == (200, "ok\n"), role
            assert http_get(port, "/readyz") == (200, "ready\n"), role
        assert "dapr_nr_" in http_get(ports["dns"], "/metrics")[1]
    finally:
        for process in roles.values():
            process.stop()
        etcd.cleanup()


# -- the one log throttle -------------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_logs_the_first_then_once_a_period_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    throttle = Throttle(10.0, clock=clock)
    logger = logging.getLogger("tests.throttle")
    with caplog.at_level(logging.WARNING, logger="tests.throttle"):
        assert throttle.log(logger, logging.WARNING, "limit reached: %s", "streams", kind="streams")
        for _ in range(5):
            assert not throttle.log(logger, logging.WARNING, "limit reached: %s", "streams", kind="streams")
        assert throttle.log(logger, logging.WARNING, "limit reached: %s", "admin", kind="admin")  # its own kind
        clock.now += 10.0
        assert throttle.log(logger, logging.WARNING, "limit reached: %s", "streams", kind="streams")
    assert [r.getMessage() for r in caplog.records] == [
        "limit reached: streams", "limit reached: admin",
        "limit reached: streams (5 similar suppressed in the last 10s)"]


def test_throttle_burst_caps_lines_across_kinds() -> None:
    """Kinds a client invents (unknown configuration keys): one line per kind is still a flood."""
    clock = FakeClock()
    throttle = Throttle(60.0, burst=3, clock=clock)
    assert [throttle.allow(f"key-{n}") for n in range(5)] == [True, True, True, False, False]
    clock.now += 59.0
    assert not throttle.allow("key-9")
    clock.now += 1.0  # the first three lines are a period old: room for three more
    assert [throttle.allow(f"key-{n}") for n in (3, 4, 5, 6)] == [True, True, True, False]
    assert throttle.suppressed_note("key-3") == " (1 similar suppressed in the last 60s)"


def test_throttle_memory_is_bounded_for_kinds_from_data() -> None:
    clock = FakeClock()
    throttle = Throttle(60.0, burst=1, clock=clock)
    for n in range(3 * MAX_KINDS):
        throttle.allow(n)
    assert len(throttle._last) <= MAX_KINDS and len(throttle._suppressed) <= MAX_KINDS


def test_unknown_configuration_keys_go_through_the_throttle(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="resolver.config.settings"):
        for _ in range(3):
            settings.warn_unknown_key("throttleTestKey", "test")
    lines = [r.getMessage() for r in caplog.records if "throttleTestKey" in r.getMessage()]
    assert len(lines) == 1 and "ignoring unknown configuration key 'throttleTestKey' (from test)" in lines[0]
