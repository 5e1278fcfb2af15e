"""Security for real: etcd over TLS with client certificates, user/password auth with per-cluster
RBAC (a cluster-1 publisher cannot write cluster-2's keys; a resolver cannot write at all), and
secrets that never reach a log."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from resolver.config import Layer, load_settings
from resolver.errors import RegistryError
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import EtcdTls, LocalEtcd
from resolver.local_tls import LocalCA
from resolver.records.schema import Keys
from resolver.registry.mirror import RegistryReader
from resolver.security.rbac import RESOLVER_ROLE, publisher_role
from tests.conftest import eventually, put_record, record
from tests.support.publishing import etcd_addresses

PREFIX = "/dapr/nr/v1"
KEYS = Keys(PREFIX)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return LocalCA(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_etcd(ca: LocalCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEtcd]:
    server, admin = ca.server(), ca.issue("root")
    etcd = LocalEtcd(tmp_path_factory.mktemp("tls-etcd"), tls=EtcdTls(ca.files.cert, server.cert, server.key,
                                                                        admin.cert, admin.key)).start()
    yield etcd
    etcd.cleanup()


def tls_settings(etcd: LocalEtcd, ca: LocalCA, client: str | None, **extra: object):
    keys: dict[str, object] = {"etcdEndpoints": etcd.endpoint, "etcdCACert": str(ca.files.cert),
                               "etcdTimeout": "1s", **extra}
    if client:
        files = ca.issue(client)
        keys |= {"etcdClientCert": str(files.cert), "etcdClientKey": str(files.key)}
    return load_settings([Layer("test", keys)])


def test_mutual_tls_reader_and_writer(tls_etcd: LocalEtcd, ca: LocalCA) -> None:
    settings = tls_settings(tls_etcd, ca, "resolver-client")
    gateway = EtcdGateway(settings.etcd)
    reader = RegistryReader(settings.etcd).start()
    try:
        put_record(gateway, KEYS, record("orders", address="10.0.0.7"))
        eventually(lambda: reader.cache.lookup("default", "orders"), 10, "record over TLS")
        assert reader.connected
    finally:
        reader.stop()
        gateway.close()


def test_tls_without_a_client_certificate_or_with_another_ca_is_refused(tls_etcd: LocalEtcd, ca: LocalCA,
                                                                         tmp_path: Path) -> None:
    no_cert = EtcdGateway(tls_settings(tls_etcd, ca, None).etcd)
    with pytest.raises(RegistryError):
        no_cert.get("/x")
    no_cert.close()
    stranger = LocalCA(tmp_path / "other-ca")
    other = load_settings([Layer("test", {"etcdEndpoints": tls_etcd.endpoint, "etcdCACert": str(stranger.files.cert),
                                          "etcdTimeout": "1s"})])
    wrong_ca = EtcdGateway(other.etcd)
    with pytest.raises(RegistryError):
        wrong_ca.get("/x")
    wrong_ca.close()


def test_publish_and_resolve_commands_over_mutual_tls(tls_etcd: LocalEtcd, ca: LocalCA, tmp_path: Path) -> None:
    client = ca.issue("cli-client")
    tls_args = ["--set", f"etcdEndpoints={tls_etcd.endpoint}", "--set", f"etcdCACert={ca.files.cert}",
                "--set", f"etcdClientCert={client.cert}", "--set", f"etcdClientKey={client.key}",
                "--set", "prefix=/tls-cli"]
    inventory = tmp_path / "inv.yaml"
    inventory.write_text("- {appId: billing, namespace: default, instance: vm-1, address: 192.168.1.5}\n")
    publisher = subprocess.Popen([sys.executable, "-m", "resolver", "publish", "--cluster", "vms", "--source", "file",
                                  "--file", str(inventory), *tls_args], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    try:
        def resolved() -> str:
            return subprocess.run([sys.executable, "-m", "resolver", "resolve", "billing", *tls_args],
                                  capture_output=True, text=True, check=False, timeout=60).stdout.strip()

        eventually(lambda: resolved() == "192.168.1.5:50002", 30, "resolution over mTLS")
    finally:
        publisher.terminate()
        publisher.wait(10)


@pytest.fixture(scope="module")
def auth_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEtcd]:
    """An etcd with users, the RBAC plan applied by our own CLI, and authentication enabled."""
    etcd = LocalEtcd(tmp_path_factory.mktemp("auth-etcd")).start()
    etcd.etcdctl("user", "add", "root", "--new-user-password=root-pw")
    etcd.etcdctl("user", "grant-role", "root", "root")
    secrets = tmp_path_factory.mktemp("passwords")
    password_args = []
    for user in (publisher_role("cluster-1"), publisher_role("cluster-2"), RESOLVER_ROLE):
        (secrets / user).write_text(f"{user}-pw\n")
        password_args += ["--password-file", f"{user}={secrets / user}"]
    applied = subprocess.run([sys.executable, "-m", "resolver", "etcd-rbac", "--apply", "--cluster", "cluster-1",
                              "--cluster", "cluster-2", *password_args, "--no-auth-enable",
                              "--set", f"etcdEndpoints={etcd.endpoint}"],
                             capture_output=True, text=True, check=False, timeout=60)
    assert applied.returncode == 0, applied.stderr
    etcd.etcdctl("auth", "enable")
    yield etcd
    etcd.cleanup()


def as_user(etcd: LocalEtcd, user: str) -> EtcdGateway:
    return EtcdGateway(load_settings([Layer("test", {"etcdEndpoints": etcd.endpoint, "etcdUsername": user,
                                                      "etcdPassword": f"{user}-pw", "etcdTimeout": "2s"})]).etcd)


def test_a_publisher_writes_only_its_own_cluster(auth_etcd: LocalEtcd) -> None:
    cluster_1 = as_user(auth_etcd, publisher_role("cluster-1"))
    try:
        put_record(cluster_1, KEYS, record("orders", cluster="cluster-1"))
        lease = cluster_1.grant(5)
        cluster_1.put(KEYS.info("cluster-1"), b"{}", lease=lease)
        cluster_1.revoke(lease)
        for key in (record("orders", cluster="cluster-2").key(KEYS), KEYS.info("cluster-2"), KEYS.leader("cluster-2"),
                    f"{PREFIX}/apps/cluster-10/default/x/y", "/elsewhere"):
            with pytest.raises(RegistryError, match="PERMISSION_DENIED"):
                cluster_1.put(key, b"hijack")
        assert cluster_1.list_prefix(KEYS.root)[0].revision > 0  # reading the registry is allowed
    finally:
        cluster_1.close()


def test_a_resolver_can_read_and_watch_but_never_write(auth_etcd: LocalEtcd) -> None:
    writer = as_user(auth_etcd, publisher_role("cluster-2"))
    put_record(writer, KEYS, record("payments", cluster="cluster-2", address="10.2.9.9"))
    settings = load_settings([Layer("test", {"etcdEndpoints": auth_etcd.endpoint, "etcdUsername": RESOLVER_ROLE,
                                             "etcdPassword": f"{RESOLVER_ROLE}-pw"})])
    reader = RegistryReader(settings.etcd).start()
    resolver_gateway = as_user(auth_etcd, RESOLVER_ROLE)
    try:
        eventually(lambda: reader.cache.lookup("default", "payments"), 10, "read with resolver credentials")
        put_record(writer, KEYS, record("cart", cluster="cluster-2"))
        eventually(lambda: reader.cache.lookup("default", "cart"), 10, "watch with resolver credentials")
        for key in (record("x", cluster="cluster-1").key(KEYS), KEYS.info("cluster-2")):
            with pytest.raises(RegistryError, match="PERMISSION_DENIED"):
                resolver_gateway.put(key, b"{}")
        with pytest.raises(RegistryError, match="PERMISSION_DENIED"):
            resolver_gateway.delete(record("payments", cluster="cluster-2", address="10.2.9.9").key(KEYS))
    finally:
        reader.stop()
        resolver_gateway.close()
        writer.close()


def test_a_publisher_pointed_at_another_cluster_writes_nothing(auth_etcd: LocalEtcd, tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text("- {appId: evil, namespace: default, instance: evil-1, address: 10.6.6.6}\n")
    user = publisher_role("cluster-1")
    publisher = subprocess.Popen(
        [sys.executable, "-m", "resolver", "publish", "--cluster", "cluster-2", "--source", "file", "--file",
         str(inventory), "--set", f"etcdEndpoints={auth_etcd.endpoint}", "--set", f"etcdUsername={user}",
         "--set", f"etcdPassword={user}-pw"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        reader = as_user(auth_etcd, RESOLVER_ROLE)
        try:
            publisher.wait(4)  # it keeps retrying (and logging) until stopped
        except subprocess.TimeoutExpired:
            publisher.terminate()
        output = publisher.communicate(timeout=10)[0]
        assert "PERMISSION_DENIED" in output
        assert "evil-1" not in etcd_addresses(reader, KEYS, "cluster-2")
        reader.close()
    finally:
        if publisher.poll() is None:
            publisher.kill()


def test_secrets_never_reach_the_logs(auth_etcd: LocalEtcd, serve) -> None:
    secret = "hunter2-very-secret"
    server = serve("--log-level", "debug", "--log-format", "json")
    with server.client() as client:
        client.init({"etcdEndpoints": auth_etcd.endpoint, "etcdUsername": "root", "etcdPassword": secret,
                     "initialSyncWait": "500ms"})
        client.resolve("orders")
        with pytest.raises(grpc.RpcError) as refused:  # a bad Init echoes the bad key, never the password
            client.init({}, {"etcdPassword": secret, "etcdUsername": "root", "policy": "Bogus"})
        assert secret not in (refused.value.details() or "")
    server.stop()
    assert "instance" in server.output() and secret not in server.output()
    for command in (["resolve", "orders", "--set", "initialSyncWait=1s"], ["ls"], ["status"]):
        result = subprocess.run([sys.executable, "-m", "resolver", *command, "--log-level", "debug",
                                 "--set", f"etcdEndpoints={auth_etcd.endpoint}", "--set", "etcdUsername=root",
                                 "--set", f"etcdPassword={secret}"], capture_output=True, text=True, timeout=60,
                                check=False)
        assert secret not in result.stdout + result.stderr
        assert "authentication failed" in result.stdout + result.stderr or result.returncode == 0


def test_gen_certs_and_etcd_rbac_bootstrap_a_working_tls_and_auth_etcd(tmp_path: Path) -> None:
    """Follow the documented path: gen_certs.py, etcd with --client-cert-auth, etcd-rbac --apply (which
    also runs registry init and auth enable); then a publisher and a read-only resolver work by CN."""
    tls = tmp_path / "tls"
    made = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "scripts" / "gen_certs.py"),
                           "--out", str(tls), "--root", "--resolver", "--cluster", "cluster-1", "--cluster",
                           "cluster-2"], capture_output=True, text=True, timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    again = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "scripts" / "gen_certs.py"),
                            "--out", str(tls), "--root"], capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 1 and "--force" in again.stderr  # never replaces what exists
    etcd = LocalEtcd(tmp_path / "etcd", tls=EtcdTls(tls / "ca.crt", tls / "etcd-server.crt", tls / "etcd-server.key",
                                                   tls / "root.crt", tls / "root.key")).start()

    def as_cn(cn: str) -> list[str]:
        return ["--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"etcdCACert={tls / 'ca.crt'}",
                "--set", f"etcdClientCert={tls / cn}.crt", "--set", f"etcdClientKey={tls / cn}.key",
                "--set", "etcdTimeout=2s"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "resolver", *args], capture_output=True, text=True,
                              timeout=60, check=False)

    publisher = None
    try:
        (tmp_path / "root-pw").write_text("root-secret\n")
        for _ in range(2):  # idempotent: the second run finds everything in place (and auth on)
            applied = cli("etcd-rbac", "--apply", "--client-certs", "--cluster", "cluster-1", "--cluster", "cluster-2",
                          "--root-password-file", str(tmp_path / "root-pw"), *as_cn("root"))
            assert applied.returncode == 0, applied.stderr
        assert "done: auth enable" in applied.stdout and "registry init: identity" in applied.stdout
        assert "--no-password" in cli("etcd-rbac", "--client-certs", "--cluster", "cluster-1").stdout

        inventory = tmp_path / "inv.yaml"
        inventory.write_text("- {appId: billing, namespace: default, instance: vm-1, address: 192.168.1.5}\n")
        publisher = subprocess.Popen([sys.executable, "-m", "resolver", "publish", "--cluster", "cluster-1",
                                      "--source", "file", "--file", str(inventory),
                                      *as_cn(publisher_role("cluster-1"))],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        eventually(lambda: cli("resolve", "billing", *as_cn(RESOLVER_ROLE)).stdout.strip() == "192.168.1.5:50002",
                   30, "resolution by the read-only resolver certificate")
        status = cli("status", *as_cn(RESOLVER_ROLE))
        assert status.returncode == 0 and "identity" in status.stdout and "cluster-1" in status.stdout

        def gateway_as(cn: str) -> EtcdGateway:
            return EtcdGateway(load_settings([Layer("test", {
                "etcdEndpoints": etcd.endpoint, "etcdCACert": str(tls / "ca.crt"),
                "etcdClientCert": str(tls / f"{cn}.crt"), "etcdClientKey": str(tls / f"{cn}.key")})]).etcd)

        resolver_gateway, publisher_1 = gateway_as(RESOLVER_ROLE), gateway_as(publisher_role("cluster-1"))
        try:
            with pytest.raises(RegistryError, match="PERMISSION_DENIED"):
                resolver_gateway.put(KEYS.info("cluster-1"), b"{}")
            with pytest.raises(RegistryError, match="PERMISSION_DENIED"):
                publisher_1.put(KEYS.info("cluster-2"), b"{}")
        finally:
            resolver_gateway.close()
            publisher_1.close()
    finally:
        if publisher is not None:
            publisher.terminate()
            publisher.wait(10)
        etcd.cleanup()
