"""Hostile start-up input and environments for the component: non-finite settings, unusable or
hijacked socket directories, self-registration that etcd refuses or cannot take yet. Each ends
in one clear line (or a later success), never a traceback or a half-initialized instance.

Everything runs against ``serve`` as a real subprocess; every wait has a deadline.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from tests.conftest import eventually
from tests.support.component import status_of


@pytest.mark.parametrize("carrier", ["--set", "env", "--config"])
def test_non_finite_start_up_values_stop_serve_with_one_line(serve, tmp_path: Path, carrier: str) -> None:
    extra: list[str] = []
    env = None
    if carrier == "--set":
        extra = ["--set", "etcdTimeout=inf"]
    elif carrier == "env":
        env = {"DAPR_NR_ETCD_TIMEOUT": "NaN"}
    else:
        config = tmp_path / "nan.yaml"
        config.write_text("etcdTimeout: .nan\n")
        extra = ["--config", str(config)]
    server = serve(*extra, wait=False, env=env)
    assert server.process.wait(20) == 2
    lines = server.output().strip().splitlines()
    assert lines and "etcdTimeout" in lines[-1] and "Traceback" not in server.output()


def test_self_register_without_an_instance_is_a_clear_start_up_error(serve) -> None:
    server = serve("--set", "selfRegister=true", "--set", "clusterName=cluster-1", wait=False)
    assert server.process.wait(20) == 2
    output = server.output()
    assert "selfRegister" in output and "Init" in output and "app_id" not in output


def test_self_register_succeeds_while_etcd_is_unreachable_and_registers_later(serve, tmp_path: Path,
                                                                             prefix: str) -> None:
    late = LocalEtcd(tmp_path / "late-etcd")
    server = serve()
    try:
        with server.client("vm") as client:
            client.init({"etcdEndpoints": late.endpoint, "prefix": prefix, "selfRegister": "true",
                         "clusterName": "cluster-9", "etcdTimeout": "500ms"},
                        app_id="billing", address="10.9.0.5", internal_port=50002)
            late.start()
            gateway = EtcdGateway(client_settings(late.endpoint, prefix))
            try:
                key = f"{prefix}/apps/cluster-9/default/billing/"
                eventually(lambda: gateway.list_prefix(key)[1] and any(True for page in gateway.list_prefix(key)[1]
                                                                       for _ in page), 20, "the late registration")
            finally:
                gateway.close()
    finally:
        server.stop()
        late.cleanup()
    assert "will be registered when it is back" in server.output()


def client_settings(endpoint: str, prefix: str):
    from tests.conftest import make_settings

    return make_settings(endpoint, prefix).etcd


def test_socket_directory_owned_by_another_user_is_refused(serve, tmp_path: Path) -> None:
    hijacked = tmp_path / "hijacked"
    hijacked.mkdir(mode=0o777)
    os.chown(hijacked, 65534, 65534)  # pre-created by another (non-root) user, as in /tmp
    server = serve(socket_dir=hijacked, wait=False)
    assert server.process.wait(20) != 0
    output = server.output()
    assert f"refusing socket directory {hijacked}" in output and "uid 65534" in output
    assert "Traceback" not in output and not (hijacked / "etcd.sock").exists()


def test_root_owned_world_writable_directory_is_accepted_and_missing_ones_are_0750(serve, tmp_path: Path) -> None:
    shared = tmp_path / "emptydir"
    shared.mkdir()
    shared.chmod(0o777)  # what Kubernetes' emptyDir looks like inside the pod
    with serve(socket_dir=shared).client() as client:
        assert client.health() == "SERVING"
    created = tmp_path / "new" / "sockets"
    with serve(socket_dir=created, name="other").client() as client:
        assert client.health() == "SERVING"
    assert created.stat().st_mode & 0o777 == 0o750


@pytest.mark.parametrize("case", ["file", "long"])
def test_unusable_socket_directory_is_one_line(serve, tmp_path: Path, case: str) -> None:
    if case == "file":
        target = tmp_path / "a-file"
        target.write_text("x")
        fragment = "not a directory"
    else:
        target = tmp_path / ("d" * 120)
        fragment = "107"
    server = serve(socket_dir=target, wait=False)
    assert server.process.wait(20) != 0
    assert fragment in server.output() and "Traceback" not in server.output()


@pytest.fixture(scope="module")
def read_only_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEtcd]:
    """An etcd with authentication on and a user ``ro`` that may read everything and write nothing."""
    etcd = LocalEtcd(tmp_path_factory.mktemp("ro-etcd")).start()
    etcd.etcdctl("user", "add", "root", "--new-user-password=root-pw")
    etcd.etcdctl("user", "grant-role", "root", "root")
    etcd.etcdctl("role", "add", "reader")
    etcd.etcdctl("role", "grant-permission", "reader", "--prefix=true", "read", "/")
    etcd.etcdctl("user", "add", "ro", "--new-user-password=ro-pw")
    etcd.etcdctl("user", "grant-role", "ro", "reader")
    etcd.etcdctl("auth", "enable")
    yield etcd
    etcd.cleanup()


@pytest.mark.parametrize("password", ["ro-pw", "wrong-pw"])
def test_self_register_fails_init_when_etcd_refuses_it(serve, read_only_etcd: LocalEtcd, password: str) -> None:
    server = serve()
    with server.client("vm") as client:
        with pytest.raises(grpc.RpcError) as raised:
            client.init({"etcdEndpoints": read_only_etcd.endpoint, "etcdUsername": "ro", "etcdPassword": password,
                         "selfRegister": "true", "clusterName": "cluster-9", "etcdTimeout": "2s"},
                        app_id="billing", address="10.9.0.5", internal_port=50002)
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        details = raised.value.details() or ""
        assert details.startswith("selfRegister: etcd refused to register") and "selfRegister=false" in details
        assert password not in details
        assert status_of(lambda: client.resolve("a")) == grpc.StatusCode.FAILED_PRECONDITION  # not half-initialized
