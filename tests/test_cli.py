"""The inspection commands and the demo, as real subprocesses of our CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd, free_port
from resolver.records.schema import Keys
from tests.conftest import put_record, record


def cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run our CLI; if it hangs, SIGABRT makes faulthandler print every thread's stack into the failure."""
    process = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "resolver", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        stdout, stderr = process.communicate()
        raise AssertionError(f"dapr-etcd-resolver {' '.join(args)} hung for {timeout}s:\n{stderr}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_ls_shows_every_cluster_and_filters(etcd: LocalEtcd, prefix: str, gateway: EtcdGateway, keys: Keys) -> None:
    put_record(gateway, keys, record("orders", cluster="cluster-1", address="10.1.0.1"))
    put_record(gateway, keys, record("orders", cluster="cluster-2", address="10.2.0.1"))
    put_record(gateway, keys, record("payments", namespace="shop", address="10.1.0.9"))
    gateway.put(f"{keys.apps}cluster-1/default/broken/broken-1", b"garbage")
    common = ["--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}"]
    result = cli("ls", *common)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["APP", "NAMESPACE", "CLUSTER", "INSTANCE", "ADDRESS", "AGE"]
    assert len(lines) == 4
    assert "10.2.0.1:50002" in result.stdout and "broken" in result.stderr
    only = cli("ls", *common, "--namespace", "shop")
    assert [line.split()[0] for line in only.stdout.splitlines()[1:]] == ["payments"]
    apps = cli("ls", *common, "--app", "orders")
    assert len(apps.stdout.splitlines()) == 3


def test_resolve_uses_the_component_code_path(etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                              keys: Keys) -> None:
    put_record(gateway, keys, record("orders", cluster="cluster-1", address="10.1.0.1"))
    put_record(gateway, keys, record("orders", cluster="cluster-2", address="10.2.0.1"))
    common = ["--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}"]
    local = cli("resolve", "orders", *common, "--set", "clusterName=cluster-2")
    assert local.stdout.strip() == "10.2.0.1:50002"
    assert "registry, policy FailOver" in local.stderr
    multi = cli("resolve", "orders.default", "--all", *common, "--set", "policy=ActiveActive")
    assert sorted(multi.stdout.split()) == ["10.1.0.1:50002", "10.2.0.1:50002"]
    fallback = cli("resolve", "ghost", "--port", "3501", *common)
    assert fallback.stdout.strip() == "ghost-dapr.default.svc.cluster.local:3501"
    assert "fallback" in fallback.stderr
    bad = cli("resolve", "no/such", *common)
    assert bad.returncode == 1 and "id:" in bad.stderr
    bad_config = cli("resolve", "orders", "--set", "policy=Nope")
    assert bad_config.returncode == 2 and "invalid value for 'policy' (from --set)" in bad_config.stderr


def test_resolve_applies_the_address_policy_and_cache_scope_like_the_component(
        etcd: LocalEtcd, prefix: str, gateway: EtcdGateway, keys: Keys) -> None:
    """``resolve`` builds its reader the component's way (test_component's address-policy test, as a
    command): it once ignored clusterCIDRs and allowLoopback and served what the component refuses."""
    put_record(gateway, keys, record("inside", address="10.1.0.5"))
    put_record(gateway, keys, record("outside", address="10.2.0.5"))
    put_record(gateway, keys, record("loop", address="127.0.0.1"))
    put_record(gateway, keys, record("unannounced", cluster="cluster-9", address="10.9.0.5"))
    common = ["--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}"]
    strict = [*common, "--set", "clusterCIDRs=cluster-1=10.1.0.0/16"]
    assert cli("resolve", "inside", *strict).stdout.strip() == "10.1.0.5:50002"
    outside = cli("resolve", "outside", *strict)
    assert outside.returncode == 0, outside.stderr
    assert outside.stdout.strip() == "outside-dapr.default.svc.cluster.local:50002"  # outside clusterCIDRs
    assert "(fallback, policy FailOver)" in outside.stderr and "refused" in outside.stderr
    assert cli("resolve", "loop", *common).stdout.strip() == "loop-dapr.default.svc.cluster.local:50002"
    assert cli("resolve", "loop", *common, "--set", "allowLoopback=true").stdout.strip() == "127.0.0.1:50002"
    # The scope too: the full mirror serves a cluster that never announced itself; onDemand, which
    # learns clusters from clusters/ only, does not — in the component and in this command alike.
    assert cli("resolve", "unannounced", *common).stdout.strip() == "10.9.0.5:50002"
    on_demand = cli("resolve", "unannounced", *common, "--set", "cacheScope=onDemand")
    assert on_demand.stdout.strip() == "unannounced-dapr.default.svc.cluster.local:50002", on_demand.stderr


def test_resolve_with_etcd_down_falls_back_after_initial_sync_wait() -> None:
    started = time.monotonic()
    result = cli("resolve", "orders", "--set", f"etcdEndpoints=127.0.0.1:{free_port()}",
                 "--set", "initialSyncWait=500ms", "--set", "etcdTimeout=500ms")
    assert result.returncode == 0
    assert result.stdout.strip() == "orders-dapr.default.svc.cluster.local:50002"
    assert "registry not reachable" in result.stderr
    assert time.monotonic() - started < 10


def test_unreachable_etcd_gives_one_clear_line() -> None:
    result = cli("ls", "--set", f"etcdEndpoints=127.0.0.1:{free_port()}", "--set", "etcdTimeout=500ms")
    assert result.returncode == 1
    assert result.stderr.startswith("error: registry: etcd")
    assert "Traceback" not in result.stderr


def test_python_dash_m_and_console_script_agree() -> None:
    assert cli("--version").stdout.strip().startswith("dapr-etcd-resolver ")


def test_metrics_port_in_use_is_a_clear_error(tmp_path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--socket-dir", str(tmp_path), "--metrics-port", str(port))
    assert result.returncode == 2
    assert "--metrics-port" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "etcd.sock").exists()
