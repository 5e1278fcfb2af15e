"""The system overlay applied for real, its publisher Deployment run from what the server stored.

``deploy/overlays/cluster-1`` is applied to a real API server with ``kubectl apply
--server-side``, the etcd client Secret is created as docs/deploy.md says, and the Deployment's
two replicas are started from the server's copy of it (tests/support/pod_runner.py plays the
kubelet; it says what it rewrites). They talk to an etcd over mutual TLS with the certificate
the Secret holds. Then the API server restarts, and while it is down the leader is killed:
the standby must take over from etcd alone and keep every record, then follow the pods again
once the API server is back.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from resolver.config import Layer, load_settings
from resolver.demo.processes import CliProcess
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import EtcdTls, LocalEtcd, free_port
from resolver.local_tls import LocalCA
from resolver.records.schema import Keys
from tests.conftest import eventually
from tests.support import pod_runner
from tests.support.kube_apiserver import KubeApiServer
from tests.support.kubelet import Kubelet
from tests.support.manifests import kustomize_text
from tests.support.publishing import CountMonitor, cluster_info, etcd_addresses

pytestmark = pytest.mark.xdist_group("kube-apiserver-deployment")

ROOT = Path(__file__).resolve().parents[2]
PODS = 10
LEASE_TTL = 15


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[LocalEtcd, LocalCA]]:
    """An etcd that demands client certificates, as deploy/etcd runs it."""
    ca = LocalCA(tmp_path / "tls")
    server, admin = ca.server(), ca.issue("root")
    etcd = LocalEtcd(tmp_path / "registry", tls=EtcdTls(ca.files.cert, server.cert, server.key, admin.cert,
                                                         admin.key)).start()
    yield etcd, ca
    etcd.cleanup()


def test_the_overlays_publisher_replicas_survive_an_api_server_restart_and_a_dead_leader(
        kube_api: KubeApiServer, kubelet: Kubelet, registry: tuple[LocalEtcd, LocalCA], tmp_path: Path) -> None:
    etcd, ca = registry
    kube_api.apply(kustomize_text("deploy/overlays/cluster-1"))
    client = ca.issue("dapr-nr-publisher-cluster-1")
    kube_api.kubectl("-n", "dapr-nr-system", "create", "secret", "generic", "etcd-publisher-tls",
                     f"--from-file=ca.crt={ca.files.cert}", f"--from-file=tls.crt={client.cert}",
                     f"--from-file=tls.key={client.key}")
    deployment = json.loads(kube_api.kubectl("-n", "dapr-nr-system", "get", "deployment", "dapr-etcd-publisher",
                                             "-o", "json").stdout)
    assert deployment["spec"]["replicas"] == 2
    assert "--lease-ttl=15s" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    kubelet.run_pods([(f"orders-{i}", f"10.0.0.{i + 1}") for i in range(PODS)])

    kubeconfig = kube_api.token_kubeconfig("dapr-nr-system", "dapr-etcd-publisher", tmp_path / "sa.kubeconfig")
    replicas: dict[str, tuple[CliProcess, int]] = {}
    for name in ("dapr-etcd-publisher-a", "dapr-etcd-publisher-b"):
        metrics = free_port()
        container = pod_runner.container_of(kubelet.core, deployment, tmp_path / "pods", name,
                                            {"DAPR_NR_ETCD_ENDPOINTS": etcd.endpoint}, {9090: metrics})
        replicas[name] = (pod_runner.start(container, kubeconfig, tmp_path / f"{name}.log"), container.readiness_port)
        assert container.readiness_path == "/readyz"

    admin = load_settings([Layer("test", {"etcdEndpoints": etcd.endpoint, "etcdCACert": str(ca.files.cert),
                                          "etcdClientCert": str(etcd.tls.client_cert),  # type: ignore[union-attr]
                                          "etcdClientKey": str(etcd.tls.client_key)})])  # type: ignore[union-attr]
    gateway = EtcdGateway(admin.etcd)
    keys = Keys(admin.etcd.prefix)
    try:
        eventually(lambda: len(etcd_addresses(gateway, keys, "cluster-1")) == PODS, 60, "the first sync")

        def ready(port: int) -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
                return bool(answer.status == 200)

        for _, port in replicas.values():
            eventually(lambda port=port: ready(port), 60, "every replica's readiness probe")  # type: ignore[misc]

        def leader() -> str | None:
            raw = gateway.get(keys.leader("cluster-1"))
            return None if raw is None else str(json.loads(raw)["identity"])

        first = str(eventually(leader, 30, "a leader"))
        elected = next(name for name in replicas if first.startswith(name))  # identity: POD_NAME-pid
        standby = next(name for name in replicas if name != elected)
        info = cluster_info(gateway, keys, "cluster-1")
        assert info is not None and info.publisher.startswith(elected)
        monitor = CountMonitor(gateway, keys)
        kube_api.stop()
        replicas[elected][0].signal(signal.SIGKILL)  # the leader dies while the API server is away
        eventually(lambda: (leader() or "").startswith(standby), 30, "the standby elected without the API server")
        eventually(lambda: (cluster_info(gateway, keys, "cluster-1") or info).publisher.startswith(standby), 30,
                   "the standby's own sync")
        time.sleep(LEASE_TTL + 1)  # watch past the dead leader's record leases (the Deployment's --lease-ttl)
        kube_api.start()
        samples = monitor.stop()
        assert min(samples) == PODS, f"records vanished meanwhile: {min(samples)} of {PODS}"
        kubelet.run_pod("orders-new", "10.0.1.1")
        kubelet.finish_deletion("orders-0")
        eventually(lambda: "orders-new" in etcd_addresses(gateway, keys, "cluster-1")
                   and "orders-0" not in etcd_addresses(gateway, keys, "cluster-1"), 60,
                   "changes after the API server is back")
        log = replicas[standby][0].log_path.read_text()
        assert "Traceback" not in log, log
    finally:
        gateway.close()
        for process, _ in replicas.values():
            process.stop()
