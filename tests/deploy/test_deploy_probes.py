"""The manifests' probes, run against the real roles with the manifests' own arguments.

For the publisher and the DNS bridge, the container's args and environment are taken from the
built cluster-1 overlay (only addresses and file paths are swapped for local ones) and the
probe paths and port from its ``livenessProbe``/``readinessProbe``. Then the semantics the
manifests promise are checked on a real etcd: readiness fails until the first sync and holds
through an etcd outage afterwards; liveness answers throughout — an outage is an alert, never a
restart.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from resolver.demo.processes import wait_until
from resolver.local_etcd import LocalEtcd, free_port
from tests.deploy.test_deploy_overlays import config_file, container, env, one, overlay

Obj = dict[str, Any]


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as response:
            text = response.read().decode()
    except OSError:
        return None
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)]
    return min(values) if values else None


def probe_paths(c: Obj) -> tuple[str, str]:
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    live, ready = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
    assert ports[live["port"]] == ports[ready["port"]] == 9090 and "--metrics-port=9090" in c["args"]
    return live["path"], ready["path"]


def local_args(c: Obj, metrics_port: int, config: Path) -> list[str]:
    """The container's args with this machine's addresses; everything else as the manifest says."""
    cluster = env(c).get("CLUSTER_NAME", "")
    swapped = {"--metrics-port": f"--metrics-port={metrics_port}", "--listen": "--listen=127.0.0.1:0",
               "--config": f"--config={config}"}
    return [swapped.get(arg.split("=", 1)[0], arg.replace("$(CLUSTER_NAME)", cluster)) for arg in c["args"]]


@pytest.fixture
def stopped_etcd(tmp_path: Path) -> Iterator[LocalEtcd]:
    """An etcd of this test's own (it is stopped and started); not running yet."""
    server = LocalEtcd(tmp_path / "etcd")
    try:
        yield server
    finally:
        server.stop()
        server.cleanup()


@pytest.mark.parametrize(("deployment", "name", "extra"), [
    ("dapr-etcd-dns", "dns", []),
    ("dapr-etcd-publisher", "publisher", ["--source", "file", "--file", "INVENTORY"]),
])
def test_probes_fail_readiness_only_until_the_first_sync_and_never_fail_liveness_on_outages(
        deployment: str, name: str, extra: list[str], stopped_etcd: LocalEtcd, tmp_path: Path) -> None:
    objects = overlay("cluster-1")
    c = container(one(objects, "Deployment", deployment), name)
    live, ready = probe_paths(c)
    config = tmp_path / "config.yaml"  # the manifest's config.yaml, minus the TLS files of the cluster
    config.write_text(yaml.safe_dump({k: v for k, v in config_file(objects).items() if not k.startswith("etcdC")}))
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("endpoints:\n  - {appId: orders, namespace: default, instance: orders-1, "
                         "address: 10.1.0.11, port: 50002}\n")
    port = free_port()
    args = local_args(c, port, config) + [str(inventory) if a == "INVENTORY" else a for a in extra]
    manifest_env = {k: v for k, v in env(c).items() if k.startswith("DAPR_NR_")}
    process_env = {**os.environ, **manifest_env, "DAPR_NR_ETCD_ENDPOINTS": stopped_etcd.endpoint,
                   "DAPR_NR_ETCD_TIMEOUT": "1s"}
    with (tmp_path / "role.log").open("wb") as log:
        role = subprocess.Popen([sys.executable, "-m", "resolver", *args], stdout=log, stderr=subprocess.STDOUT,
                                env=process_env)
    try:
        def running_status(path: str) -> int:
            assert role.poll() is None, (tmp_path / "role.log").read_text()[-2000:]
            return status(port, path)

        # etcd is down from the start: alive, not ready
        wait_until(lambda: running_status(live) == 200, 30, f"{name} {live}")
        assert running_status(ready) == 503
        stopped_etcd.start()
        wait_until(lambda: running_status(ready) == 200, 60, f"{name} {ready} after etcd started")
        if name == "publisher":
            wait_until(lambda: metric(port, "dapr_nr_publisher_leader") == 1, 30, "the publisher to lead")
        stopped_etcd.stop()  # an outage after the first sync: an alert, not a restart
        if name == "dns":
            wait_until(lambda: metric(port, "dapr_nr_registry_connected") == 0, 30, "the bridge to notice")
        else:
            wait_until(lambda: metric(port, "dapr_nr_publisher_leader") == 0, 30, "the publisher to lose its lease")
        for _ in range(10):
            assert running_status(live) == 200 and running_status(ready) == 200
    finally:
        role.terminate()
        role.wait(15)
        print((tmp_path / "role.log").read_text()[-3000:])  # shown when the test fails


def test_pluggable_component_probes_follow_the_same_semantics(stopped_etcd: LocalEtcd, tmp_path: Path) -> None:
    """The exec probes of the pluggable example, run as the kubelet would, against a real ``serve``."""
    deployment = one(overlay("cluster-1", "examples-pluggable"), "Deployment", "order-service")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    c = container(deployment, annotations["dapr.io/pluggable-components"])
    socket_dir = annotations["dapr.io/pluggable-components-sockets-folder"]
    local_dir = tmp_path / "sockets"

    def run_probe(kind: str) -> int:
        command = [part.replace(socket_dir, str(local_dir)) for part in c[kind]["exec"]["command"]]
        if command[0] == "dapr-etcd-resolver":
            command = [sys.executable, "-m", "resolver", *command[1:]]
        elif command[0] == "python":
            command[0] = sys.executable
        return subprocess.run(command, capture_output=True, timeout=c[kind]["timeoutSeconds"] + 10,
                              check=False).returncode

    # daprd's Init carries the configuration; here the same keys come at start-up
    args = [*c["args"], "--socket-dir", str(local_dir), "--set", f"etcdEndpoints={stopped_etcd.endpoint}",
            "--set", "clusterName=cluster-1", "--set", "initialSyncWait=0", "--set", "etcdTimeout=1s"]
    with (tmp_path / "serve.log").open("wb") as log:
        serve = subprocess.Popen([sys.executable, "-m", "resolver", *args], stdout=log, stderr=subprocess.STDOUT)
    try:
        def live() -> bool:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            return run_probe("livenessProbe") == 0

        wait_until(live, 30, "the component's socket")
        assert run_probe("readinessProbe") != 0  # never synced: etcd is down
        stopped_etcd.start()
        wait_until(lambda: run_probe("readinessProbe") == 0, 60, "readiness after etcd started")
        stopped_etcd.stop()
        wait_until(lambda: subprocess.run([sys.executable, "-m", "resolver", "probe", "--socket",
                                           str(local_dir / "etcd.sock")], capture_output=True, timeout=30,
                                          check=False).returncode != 0, 30, "the component to notice the outage")
        assert run_probe("livenessProbe") == 0
        assert run_probe("readinessProbe") == 0, "an etcd outage after the first sync made the pod unready"
    finally:
        serve.terminate()
        serve.wait(15)
        print((tmp_path / "serve.log").read_text()[-3000:])  # shown when the test fails
