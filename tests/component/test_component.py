"""The component end to end: ``serve`` as a real subprocess on a real Unix socket, a daprd-like client."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

from resolver.component.server import SOCKET_MODE
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd, free_port
from resolver.records.schema import Keys
from tests.conftest import eventually, make_settings, put_record, record
from tests.support.component import ServeProcess, status_of

SERVICE = "dapr.proto.components.v1.NameResolution"
HANG = 60.0


def test_discovery_like_daprd_and_health(serve, etcd: LocalEtcd) -> None:
    server = serve()
    with server.client() as client:
        services = client.list_services()
        assert SERVICE in services
        assert "grpc.health.v1.Health" in services
        assert "grpc.reflection.v1alpha.ServerReflection" in services
        assert client.health() == "SERVING"
        assert client.health(SERVICE) == "SERVING"
        client.ping()
        assert client.features() == []
    assert stat.S_IMODE(server.socket_path.stat().st_mode) == SOCKET_MODE


def test_resolve_before_init_is_failed_precondition(serve, etcd: LocalEtcd, prefix: str) -> None:
    server = serve()
    with server.client("etcd") as client, server.client("other") as other:
        assert status_of(lambda: client.resolve("orders")) == grpc.StatusCode.FAILED_PRECONDITION
        client.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix})
        assert client.resolve("orders") == "orders-dapr.default.svc.cluster.local:50002"
        # each x-component-instance has its own state
        assert status_of(lambda: other.resolve("orders")) == grpc.StatusCode.FAILED_PRECONDITION
        client.close_instance()
        assert status_of(lambda: client.resolve("orders")) == grpc.StatusCode.FAILED_PRECONDITION


def test_registry_put_delete_and_namespaces(serve, etcd: LocalEtcd, prefix: str,
                                            gateway: EtcdGateway, keys: Keys) -> None:
    server = serve("--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}")
    with server.client() as client:
        assert client.resolve("orders", port=3500) == "orders-dapr.default.svc.cluster.local:3500"
        rec = record("orders", address="10.1.2.3", port=50001)
        put_record(gateway, keys, rec)
        eventually(lambda: client.resolve("orders") == "10.1.2.3:50001", 5, "put to become resolvable")
        put_record(gateway, keys, record("payments", namespace="shop", address="fd00::7"))
        eventually(lambda: client.resolve("payments.shop") == "[fd00::7]:50002", 5, "cross-namespace")
        assert client.resolve("payments", namespace="shop") == "[fd00::7]:50002"
        assert client.resolve_multi("payments.shop") == ["[fd00::7]:50002"]
        assert client.resolve("payments") == "payments-dapr.default.svc.cluster.local:50002"
        gateway.delete(rec.key(keys))
        eventually(lambda: client.resolve("orders") == "orders-dapr.default.svc.cluster.local:50002", 5,
                   "delete to fall back")


def test_caller_namespace_comes_from_init(serve, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                          keys: Keys) -> None:
    put_record(gateway, keys, record("payments", namespace="shop", address="10.9.9.9"))
    server = serve()
    with server.client() as client:
        client.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix}, namespace="shop")
        assert client.resolve("payments") == "10.9.9.9:50002"
        assert client.resolve("cart") == "cart-dapr.shop.svc.cluster.local:50002"


@pytest.mark.parametrize(("app_id", "namespace", "port", "field"), [
    ("", "", 50002, "id"),
    ("a/b", "", 50002, "id"),
    ("../etc", "", 50002, "id"),
    ("orders.", "", 50002, "id"),
    ("a.b.c", "", 50002, "id"),
    ("x" * 10_000, "", 50002, "id"),
    ("ördérs", "", 50002, "id"),
    ("orders", "Bad_NS", 50002, "namespace"),
    ("orders.shop", "default", 50002, "namespace"),
    ("orders", "", 0, "port"),
    ("orders", "", -1, "port"),
    ("orders", "", 70000, "port"),
])
def test_bad_requests_are_invalid_argument(serve, etcd: LocalEtcd, prefix: str,
                                           app_id: str, namespace: str, port: int, field: str) -> None:
    server = serve("--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}")
    with server.client() as client:
        for call in (client.resolve, client.resolve_multi):
            with pytest.raises(grpc.RpcError) as raised:
                call(app_id, namespace, port)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (raised.value.details() or "").startswith(f"{field}: ")
        assert client.resolve("orders") == "orders-dapr.default.svc.cluster.local:50002"  # still serving


def test_bad_init_names_the_key_and_keeps_the_old_state(serve, etcd: LocalEtcd, prefix: str) -> None:
    server = serve()
    with server.client() as client:
        client.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "clusterDomain": "good.local"})
        for configuration, properties, key in [
            ({"policy": "Sometimes"}, {}, "policy"),
            ({"etcdTimeout": "fast"}, {}, "etcdTimeout"),
            ({}, {"clusterWeights": "c1=x"}, "clusterWeights"),
            ("{oops", {}, "configuration"),
        ]:
            with pytest.raises(grpc.RpcError) as raised:
                client.init(configuration, properties)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (raised.value.details() or "").startswith(f"invalid value for '{key}' (from Init")
        assert client.resolve("a") == "a-dapr.default.svc.good.local:50002"
        # a key of a newer release is a warning, never a failed Init (daprd treats that as fatal)
        client.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "clusterDomain": "new.local",
                     "watchFanout": "proxy", "clustrName": "x"})
        assert client.resolve("a") == "a-dapr.default.svc.new.local:50002"
    eventually(lambda: "did you mean 'clusterName'" in server.output(), 5, "the unknown-key warning")
    assert "unknown configuration key 'watchFanout'" in server.output()


def test_metadata_properties_win_over_configuration(serve, etcd: LocalEtcd, prefix: str) -> None:
    server = serve()
    with server.client() as client:
        client.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "clusterDomain": "from.config"},
                    {"clusterDomain": "from.metadata"})
        assert client.resolve("a").endswith(".svc.from.metadata:50002")


def test_startup_configuration_and_init_layering(serve, etcd: LocalEtcd, prefix: str, tmp_path: Path) -> None:
    config = tmp_path / "nr.yaml"
    config.write_text(f"etcdEndpoints: {etcd.endpoint}\nprefix: {prefix}\nclusterDomain: from.file\n")
    server = serve("--config", str(config), "--set", "fallback=dns",
                   env={"DAPR_NR_TEMPLATE": "{id}.{namespace}.{clusterDomain}:{port}"})
    with server.client("never-initialized") as plain, server.client("layered") as layered:
        assert plain.resolve("a") == "a.default.from.file:50002"
        layered.init({"clusterDomain": "from.init"})
        assert layered.resolve("a") == "a.default.from.init:50002"  # template from env kept, domain from Init
        assert plain.resolve("a") == "a.default.from.file:50002"


def test_fallback_none_is_not_found(serve, etcd: LocalEtcd, prefix: str) -> None:
    server = serve("--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}", "--set", "fallback=none")
    with server.client() as client:
        assert status_of(lambda: client.resolve("ghost")) == grpc.StatusCode.NOT_FOUND
        assert status_of(lambda: client.resolve_multi("ghost")) == grpc.StatusCode.NOT_FOUND


def test_init_succeeds_while_etcd_is_down_and_resolves_fall_back(serve, tmp_path: Path, prefix: str) -> None:
    down = LocalEtcd(tmp_path / "late-etcd")
    server = serve()
    try:
        with server.client() as client:
            client.init({"etcdEndpoints": down.endpoint, "prefix": prefix, "initialSyncWait": "3s",
                         "etcdTimeout": "1s"})
            started = time.monotonic()
            assert client.resolve("orders") == "orders-dapr.default.svc.cluster.local:50002"
            assert time.monotonic() - started < 10.0
            started = time.monotonic()
            client.resolve("orders")
            # The initial wait (3 s) is spent once, not per call: a second wait would take at least
            # 3 s by construction, and a call without one takes milliseconds even on a loaded machine.
            assert time.monotonic() - started < 2.5
            assert client.health("registry") == "NOT_SERVING"
            down.start()
            gateway = EtcdGateway(make_settings(down.endpoint, prefix).etcd)
            put_record(gateway, Keys(prefix), record("orders", address="10.7.7.7"))
            gateway.close()
            eventually(lambda: client.resolve("orders") == "10.7.7.7:50002", 20, "registry after etcd came up")
            eventually(lambda: client.health("registry") == "SERVING", 5, "registry health")
    finally:
        down.cleanup()


def test_sigterm_lets_in_flight_calls_finish(serve, tmp_path: Path, prefix: str) -> None:
    unused = f"127.0.0.1:{free_port()}"
    server = serve("--set", f"etcdEndpoints={unused}", "--set", f"prefix={prefix}", "--set", "initialSyncWait=2s",
                   "--set", "etcdTimeout=500ms")
    answers: list[str] = []
    with server.client() as client:
        in_flight = threading.Thread(target=lambda: answers.append(client.resolve("slow")))
        in_flight.start()  # waits for the first registry sync, which never comes
        time.sleep(0.5)
        server.signal(signal.SIGTERM)
        in_flight.join(10)
    assert answers == ["slow-dapr.default.svc.cluster.local:50002"]
    assert exit_code(server) == 0
    assert not server.socket_path.exists()
    assert "shutting down" in server.output()


def exit_code(server: ServeProcess) -> int:
    """The exit code after a signal; the bound only catches a hang (a loaded CI machine once took
    more than 10 s to end an idle server), and the server's log is in the failure."""
    try:
        return server.process.wait(HANG)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"serve did not exit within {HANG}s:\n{server.output()[-3000:]}") from None


def test_sigint_also_shuts_down_cleanly(serve) -> None:
    server = serve()
    server.signal(signal.SIGINT)
    assert exit_code(server) == 0
    assert not server.socket_path.exists()


def test_stale_socket_is_replaced(serve, tmp_path: Path) -> None:
    socket_dir = tmp_path / "stale"
    socket_dir.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(socket_dir / "etcd.sock"))
    stale.close()  # the file stays behind, nobody listens: a crashed server's leftover
    server = serve(socket_dir=socket_dir)
    with server.client() as client:
        assert client.health() == "SERVING"
    assert "removing stale socket" in server.output()


def test_live_socket_is_not_stolen(serve, tmp_path: Path) -> None:
    first = serve()
    second = serve(wait=False)
    assert second.process.wait(20) != 0
    assert "already answering" in second.output()
    with first.client() as client:
        assert client.health() == "SERVING"


def test_non_socket_path_is_never_removed(serve, tmp_path: Path) -> None:
    socket_dir = tmp_path / "occupied"
    socket_dir.mkdir()
    precious = socket_dir / "etcd.sock"
    precious.write_text("not a socket")
    server = serve(socket_dir=socket_dir, wait=False)
    assert server.process.wait(20) != 0
    assert precious.read_text() == "not a socket"
    assert "is not a socket" in server.output()


def test_socket_dir_is_created_and_env_default_is_honoured(serve, tmp_path: Path) -> None:
    folder = tmp_path / "deep" / "sockets"
    server = serve(socket_dir=folder, pass_socket_dir=False, name="nr",
                   env={"DAPR_COMPONENTS_SOCKETS_FOLDER": str(folder)})
    assert server.socket_path == folder / "nr.sock"
    with server.client() as client:
        assert client.health() == "SERVING"


def test_unix_socket_permissions_block_other_users(serve) -> None:
    server = serve()
    mode = server.socket_path.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert not mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IXOTH)
    assert os.stat(server.socket_path).st_uid == os.getuid()


def test_address_policy_keys_reach_the_instance_reader(serve, etcd: LocalEtcd, prefix: str,
                                                       gateway: EtcdGateway, keys: Keys) -> None:
    put_record(gateway, keys, record("inside", address="10.1.0.5"))
    put_record(gateway, keys, record("outside", address="10.2.0.5"))
    put_record(gateway, keys, record("loop", address="127.0.0.1"))
    server = serve()
    with server.client("strict") as strict, server.client("local") as local:
        strict.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "clusterCIDRs": "cluster-1=10.1.0.0/16"})
        local.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "allowLoopback": True})
        eventually(lambda: strict.resolve("inside") == "10.1.0.5:50002", 10, "the allowed record")
        assert strict.resolve("outside") == "outside-dapr.default.svc.cluster.local:50002"  # outside clusterCIDRs
        assert strict.resolve("loop") == "loop-dapr.default.svc.cluster.local:50002"  # loopback refused by default
        eventually(lambda: local.resolve("loop") == "127.0.0.1:50002", 10, "loopback with allowLoopback")
        assert local.resolve("outside") == "10.2.0.5:50002"
