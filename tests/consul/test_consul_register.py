"""Self-registration (the write side of #23), driven by Dapr's own consul resolver with ``selfRegister: true``.

The Go peer (``consul-peer -mode register``) plays a self-hosted daprd: it serves ``/v1.0/healthz``
on loopback, Inits Dapr's resolver (which registers through consul/api), and Closes it (which
deregisters, ``selfDeregister: true``) when its stdin closes. The role runs as a subprocess on a
real etcd; records are read back from etcd and resolved through the role's read side by a second
resolver.
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from resolver.consul.registration import instance_name, parse_registration
from resolver.errors import ValidationError
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.addresses import AddressPolicy
from resolver.records.schema import EndpointRecord, Keys
from tests.conftest import eventually
from tests.consul.conftest import ConsulProcess, consul_peer, role_args
from tests.support.peers import peer

TOKEN = "w-s3cret"
TTL = 5.0


class Registrar:
    """A running ``consul-peer -mode register``: its JSON lines, and its stdin to steer the health endpoint."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.lines.append(json.loads(line))

    def first(self, key: str, timeout: float = 30.0) -> dict[str, Any]:
        def found() -> Any:
            hit = next((line for line in list(self.lines) if key in line), None)
            if hit is None and self.process.poll() is not None and not self._thread.is_alive():
                raise AssertionError(f"consul-peer exited {self.process.returncode} without {key!r}: {self.lines}")
            return hit

        return eventually(found, timeout, f"consul-peer to print {key!r}")

    def tell(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def close(self) -> dict[str, Any]:
        """Close stdin: the peer Closes the resolver (deregistering) and prints {"closed": …}."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.first("closed")


@pytest.fixture
def registrar() -> Iterator[Callable[..., Registrar]]:
    started: list[Registrar] = []

    def start(role: ConsulProcess, *args: str, app: str = "orders", token: str = TOKEN) -> Registrar:
        process = subprocess.Popen([str(peer("consul-peer")), "-mode", "register", "-address", role.address,
                                    "-app", app, "-token", token, *args], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        started.append(Registrar(process))
        return started[-1]

    yield start
    for item in started:
        if item.process.poll() is None:
            item.process.terminate()
            try:
                item.process.wait(10)
            except subprocess.TimeoutExpired:
                item.process.kill()
                item.process.wait(10)


@pytest.fixture
def writable_role(consul_role, etcd: LocalEtcd, prefix: str, tmp_path: Path) -> Callable[..., ConsulProcess]:
    (tmp_path / "write-token").write_text(TOKEN + "\n")

    def start(*extra: str) -> ConsulProcess:
        return consul_role(*role_args(etcd, prefix, "--set", "allowLoopback=true", cluster="vms"),
                           "--write-token-file", str(tmp_path / "write-token"), "--registration-ttl", f"{TTL:g}",
                           *extra)

    return start


def endpoint_key(keys: Keys, service_id: str, app: str = "orders") -> str:
    return keys.endpoint("vms", "default", app, instance_name(service_id))


def gone_after(gateway: EtcdGateway, key: str, since: float, timeout: float = 3 * TTL) -> float:
    """Seconds from ``since`` until ``key`` is gone from etcd (polled every 20 ms)."""
    eventually(lambda: gateway.get(key) is None or None, timeout, f"{key} to be withdrawn")
    return time.monotonic() - since


def put(role: ConsulProcess, path: str, body: object = None, token: str = TOKEN) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", role.port, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else b""
        connection.request("PUT", path, body=data, headers={"X-Consul-Token": token} if token else {})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


# -- Dapr's resolver registering itself ------------------------------------------------------------


def test_dapr_registration_is_written_resolvable_and_removed_on_close(writable_role, registrar, gateway: EtcdGateway,
                                                                      keys: Keys) -> None:
    role = writable_role()
    sidecar = registrar(role)  # Dapr's default check: /v1.0/healthz every 15 s
    started = sidecar.first("init")
    assert started["init"] == "ok", started
    key = endpoint_key(keys, started["id"])
    raw = eventually(lambda: gateway.get(key), 10, "the registration's record")
    assert raw is not None
    assert EndpointRecord.from_json(raw, policy=AddressPolicy(allow_loopback=True)) == EndpointRecord(
        app_id="orders", namespace="default", cluster="vms", instance=instance_name(started["id"]),
        address="127.0.0.1", port=50002)  # the port is Meta.DAPR_PORT (the internal gRPC port), not Port
    assert gateway.get(keys.member("vms", instance_name(started["id"]))) is not None
    answers = consul_peer("-address", role.address, "-app", "orders", "-count", "3", "-token", TOKEN)
    assert [line["addr"] for line in answers if "t" in line] == ["127.0.0.1:50002"] * 3
    closing = time.monotonic()
    assert sidecar.close()["closed"] == "ok"  # Close deregisters (selfDeregister: true)
    assert gateway.get(key) is None, "deregister answered before the record was withdrawn"
    print(f"Close → record gone: {time.monotonic() - closing:.3f}s (checked right after Close returned)")


def test_a_failing_check_withdraws_the_record_and_a_passing_one_restores_it(writable_role, registrar,
                                                                            gateway: EtcdGateway, keys: Keys) -> None:
    role = writable_role()
    sidecar = registrar(role, "-check-interval", "1s")
    key = endpoint_key(keys, sidecar.first("init")["id"])
    eventually(lambda: gateway.get(key), 10, "the registration's record")
    failing = time.monotonic()
    sidecar.tell("fail")
    took = gone_after(gateway, key, failing)
    print(f"health endpoint failing → record gone: {took:.2f}s (interval 1 s, lease TTL {TTL:g} s)")
    assert took < TTL
    sidecar.tell("ok")
    eventually(lambda: gateway.get(key), 2 * TTL, "the record back after the check passes")
    answers = consul_peer("-address", role.address, "-app", "orders", "-count", "1", "-token", TOKEN)
    assert answers[1]["addr"] == "127.0.0.1:50002"


def test_a_killed_role_loses_its_records_within_one_lease_ttl(writable_role, registrar, gateway: EtcdGateway,
                                                              keys: Keys) -> None:
    role = writable_role()
    sidecar = registrar(role, "-deregister=false")
    key = endpoint_key(keys, sidecar.first("init")["id"])
    eventually(lambda: gateway.get(key), 10, "the registration's record")
    killed = time.monotonic()
    role.signal(signal.SIGKILL)
    took = gone_after(gateway, key, killed)
    print(f"role SIGKILLed → record gone: {took:.2f}s (lease TTL {TTL:g} s)")
    assert took < TTL + 1.0  # etcd expires leases on its own 500 ms tick


def test_sigterm_withdraws_every_registration_at_once(writable_role, registrar, gateway: EtcdGateway,
                                                      keys: Keys) -> None:
    role = writable_role()
    first = registrar(role, "-deregister=false")
    second = registrar(role, "-deregister=false", app="billing")
    found = [endpoint_key(keys, first.first("init")["id"]), endpoint_key(keys, second.first("init")["id"], "billing")]
    eventually(lambda: all(gateway.get(key) for key in found), 10, "the registrations' records")
    stopping = time.monotonic()
    assert role.stop() == 0
    assert [gateway.get(key) for key in found] == [None, None]
    print(f"SIGTERM → role exited with both records withdrawn: {time.monotonic() - stopping:.2f}s")


# -- refusals, through Dapr's Init ------------------------------------------------------------------


def test_refusals_reach_dapr_init_with_the_status_and_the_field(writable_role, consul_role, registrar,
                                                                etcd: LocalEtcd, prefix: str) -> None:
    role = writable_role("--max-registrations", "1")
    wrong = registrar(role, token="not-it").first("init")
    assert wrong["init"] == "error" and "403" in wrong["error"] and "ACL not found" in wrong["error"], wrong
    metadata = registrar(role, "-host", "169.254.169.254").first("init")
    assert metadata["init"] == "error" and "400" in metadata["error"], metadata
    assert "Address: refused by the address policy: 169.254.169.254 is a cloud metadata" in metadata["error"]
    elsewhere = registrar(role, "-check-url", "http://10.9.9.9:80/latest").first("init")
    assert elsewhere["init"] == "error" and "400" in elsewhere["error"], elsewhere
    assert "Checks[0].HTTP" in elsewhere["error"] and "not the registration's Address" in elsewhere["error"]
    assert registrar(role).first("init")["init"] == "ok"
    over = registrar(role, app="billing").first("init")
    assert over["init"] == "error" and "429" in over["error"] and "--max-registrations" in over["error"], over
    read_only = consul_role(*role_args(etcd, prefix, cluster="vms"))
    off = registrar(read_only).first("init")
    assert off["init"] == "error" and "403" in off["error"] and "--write-token-file" in off["error"], off


# -- the HTTP contract directly ---------------------------------------------------------------------


def test_deregister_is_immediate_and_unknown_ids_are_404(writable_role, gateway: EtcdGateway, keys: Keys) -> None:
    role = writable_role()
    body = {"ID": "web-1", "Name": "web", "Address": "10.7.0.1", "Port": 8080, "Meta": {"DAPR_PORT": "50002"}}
    assert put(role, "/v1/agent/service/register", body) == (200, "")
    key = keys.endpoint("vms", "default", "web", "web-1")
    eventually(lambda: gateway.get(key), 10, "a record without checks (always passing, as in Consul)")
    assert put(role, "/v1/agent/service/register", body) == (200, "")  # the same again: nothing changes
    assert put(role, "/v1/agent/service/deregister/web-1") == (200, "")
    assert gateway.get(key) is None
    status, text = put(role, "/v1/agent/service/deregister/web-1")
    assert status == 404 and "Unknown service ID 'web-1'" in text
    assert put(role, "/v1/agent/service/deregister/web-1", token="")[0] == 403
    assert role.get("/v1/agent/service/register").status == 405


@pytest.mark.parametrize(("change", "field"), [
    ({"Address": "127.0.0.1.1"}, "Address"),
    ({"Address": ""}, "Address"),
    ({"Name": "Not_An-App!"}, "Name"),
    ({"Meta": {}}, "Meta.DAPR_PORT"),
    ({"Meta": {"DAPR_PORT": "70000"}}, "Meta.DAPR_PORT"),
    ({"Port": -1}, "Port"),
    ({"Kind": "connect-proxy"}, "Kind"),
    ({"Colour": "red"}, "Colour"),
    ({"Checks": [{"TTL": "10s"}]}, "Checks[0].ttl"),
    ({"Checks": [{"HTTP": "http://10.7.0.2/healthz", "Interval": "1s"}]}, "Checks[0].HTTP"),
    ({"Checks": [{"HTTP": "file:///etc/passwd"}]}, "Checks[0].HTTP"),
    ({"Checks": [{"HTTP": "http://u:p@10.7.0.1/"}]}, "Checks[0].HTTP"),
    ({"Checks": [{"HTTP": "http://10.7.0.1/", "Method": "POST"}]}, "Checks[0].Method"),
    ({"Meta": {"DAPR_PORT": "50002", "dapr-etcd-resolver-namespace": "Prod"}}, "Meta.dapr-etcd-resolver-namespace"),
])
def test_a_bad_registration_is_400_naming_the_field(change: dict[str, Any], field: str) -> None:
    body = {"ID": "web-1", "Name": "web", "Address": "10.7.0.1", "Port": 8080, "Meta": {"DAPR_PORT": "50002"},
            **change}
    with pytest.raises(ValidationError) as refused:
        parse_registration(json.dumps(body).encode(), cluster="vms", namespace="default", meta_key="DAPR_PORT",
                           policy=AddressPolicy.from_spec("vms=10.7.0.0/16"))
    assert refused.value.field == field, refused.value


def test_what_a_registration_becomes() -> None:
    body = {"id": "orders-fd00::7-3500", "name": "orders", "address": "fd00::7", "port": 8080,
            "meta": {"DAPR_PORT": "50011", "dapr-etcd-resolver-namespace": "prod"}, "Check": None, "Tags": ["x"],
            "Checks": [{"HTTP": "http://[fd00:0::7]:3500/v1.0/healthz?appid=orders", "Interval": "500ms"}]}
    parsed = parse_registration(json.dumps(body).encode(), cluster="vms", namespace="default", meta_key="DAPR_PORT",
                                policy=AddressPolicy())
    assert (parsed.record.namespace, parsed.record.address, parsed.record.port) == ("prod", "fd00::7", 50011)
    check = parsed.checks[0]
    assert (check.interval, check.timeout, check.port, check.target) == (1.0, 1.0, 3500, "/v1.0/healthz?appid=orders")
    assert parsed.record.instance == instance_name("orders-fd00::7-3500") != instance_name("orders-fd00--7-3500")
    assert instance_name("orders-10.0.0.7-3500") == "orders-10.0.0.7-3500"  # Dapr's IDs are kept when valid


# -- checks and tokens, in process --------------------------------------------------------------------


@pytest.fixture
def health_server() -> Iterator[tuple[int, list[int]]]:
    """A loopback HTTP server answering the status at the head of the list (204 when empty)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses[0] if statuses else 204)
            self.send_header("Location", "http://169.254.169.254/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], statuses
    server.shutdown()
    server.server_close()


def one_check(port: int, **extra: object) -> Any:
    body = {"Name": "web", "Address": "127.0.0.1", "Meta": {"DAPR_PORT": "50002"},
            "Checks": [{"HTTP": f"http://127.0.0.1:{port}/v1.0/healthz", "Interval": "1s", **extra}]}
    return parse_registration(json.dumps(body).encode(), cluster="vms", namespace="default", meta_key="DAPR_PORT",
                              policy=AddressPolicy(allow_loopback=True)).checks[0]


def test_a_check_passes_on_2xx_only_follows_no_redirect_and_keeps_to_the_policy(health_server) -> None:
    from resolver.consul.checks import CheckState, run_check

    port, statuses = health_server
    check = one_check(port, FailuresBeforeCritical=2)
    loopback = AddressPolicy(allow_loopback=True)
    assert run_check(check, "vms", loopback).passing
    statuses.append(302)
    assert run_check(check, "vms", loopback).reason == "status"  # the redirect to the metadata address is not taken
    refused = run_check(check, "vms", AddressPolicy())
    assert refused.reason == "address" and "loopback" in refused.output
    state = CheckState(check, now=0.0)

    def status() -> bool:  # read afresh (mypy would narrow state.passing across calls)
        return state.passing

    assert not status()  # critical until the first pass, as Consul
    state.record(run_check(one_check(port), "vms", AddressPolicy(allow_loopback=True)), 1.0)
    assert not status()  # still 302
    statuses.clear()
    state.record(run_check(check, "vms", loopback), 2.0)
    assert status()
    statuses.append(500)
    state.record(run_check(check, "vms", loopback), 3.0)
    assert status()  # FailuresBeforeCritical=2: one failure is not enough
    state.record(run_check(check, "vms", loopback), 4.0)
    assert not status()


def test_tokens_write_needs_the_write_token_and_reads_take_either() -> None:
    from resolver.consul.tokens import Tokens

    both = Tokens.of("r", "w")
    assert both.read_refusal("r") is None and both.read_refusal("w") is None
    assert both.read_refusal("x") == "ACL not found" and "needs a token" in (both.read_refusal("") or "")
    assert both.write_refusal("w") is None and both.write_refusal("r") == "ACL not found"
    assert "--write-token-file" in (Tokens.of("r", "").write_refusal("r") or "")
    assert Tokens.of("", "w").read_refusal("") is None  # reads stay open without a read token
