"""A real kube-apiserver for the publisher and the deployment kit, run the way envtest runs one.

``scripts/build-peers.sh`` builds ``kube-apiserver`` and ``kubectl`` from ``k8s.io/kubernetes``
at a pinned release (tests/peers/kube). Here the server runs against a real etcd of its
own, on a loopback secure port with a certificate from a CA the test
makes, ``--authorization-mode=RBAC``, a service-account issuer and signing key — and no kubelet,
no scheduler, no controllers. So the test plays the kubelet: it sets a pod's IP, phase and
Ready condition through the ``status`` subresource, and finishes a graceful deletion.

Every request is written to an audit log (level Metadata), which is how a test shows what the
publisher asked for and what the server answered — not what we believe it asked for.

The server has an etcd of its own (a cluster's etcd is never the registry's), its automatic
compaction off (``--etcd-compaction-interval=0``): a test that wants a compaction does it
itself. Sharing the suite's etcd was tried first and is wrong in a way worth knowing: other
prefixes' writes move etcd's revision, and without etcd's watch-progress requests (etcd
3.5.1 lacks them) the server's watch cache waits for revisions it never sees ("Too large
resource version") and a SIGTERM takes a minute.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from resolver.demo.processes import wait_until
from resolver.local_etcd import LocalEtcd, free_port
from resolver.local_tls import LocalCA
from tests.support.kubelet import Kubelet
from tests.support.peers import peer
from tests.support.tcp_proxy import TcpProxy

START_TIMEOUT = 180.0
"""Generous: the server starts in a few seconds alone, far slower on a machine running four test workers."""
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIT_POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                "omitStages": ["RequestReceived"], "rules": [{"level": "Metadata"}]}


def _kubeconfig(server: str, ca: Path, user: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority": str(ca)}}],
            "users": [{"name": "test", "user": user}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]}


def _public_key_file(private_key: Path) -> Path:
    """The server verifies tokens with a PUBLIC KEY PEM (it does not read PKCS#8 private keys)."""
    key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
    path = private_key.with_suffix(".pub")
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


class KubeApiServer:
    """One kube-apiserver process; :meth:`restart` keeps its port, certificates and etcd data."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.etcd = LocalEtcd(workdir / "etcd")
        ca = LocalCA(workdir / "pki", name="kube-apiserver test CA")
        self.ca_file = ca.files.cert
        serving = ca.issue("kube-apiserver", server_names=("localhost", "127.0.0.1"), client=False)
        admin = ca.issue("test-admin", organizations=("system:masters",))
        signing = ca.issue("service-accounts")
        verifying = _public_key_file(signing.key)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.audit_log = workdir / "audit.log"
        policy = workdir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        self.log_path = workdir / "kube-apiserver.log"
        self.etcd_prefix = "/registry"  # the default of kube-apiserver, in an etcd of its own
        self.args = [
            str(peer("kube-apiserver")),
            f"--etcd-servers=http://{self.etcd.address}", f"--etcd-prefix={self.etcd_prefix}",
            "--etcd-compaction-interval=0",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            "--endpoint-reconciler-type=none",  # no kubernetes Service endpoints for a loopback address
            # Without it a SIGTERM waits out the 60 s server shutdown timeout while any watch is open.
            "--shutdown-watch-termination-grace-period=5s",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={self.ca_file}", f"--cert-dir={workdir / 'generated'}",
            "--authorization-mode=RBAC", "--allow-privileged=true",
            "--service-cluster-ip-range=10.96.0.0/16",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={verifying}", f"--service-account-signing-key-file={signing.key}",
            f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
        ]
        self.admin_kubeconfig = workdir / "admin.kubeconfig"
        self.admin_kubeconfig.write_text(yaml.safe_dump(_kubeconfig(
            self.url, self.ca_file, {"client-certificate": str(admin.cert), "client-key": str(admin.key)})))
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # -- the process ------------------------------------------------------------------------

    def start(self) -> KubeApiServer:
        if self.etcd.process is None:
            self.etcd.start()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.process is not None
            return self.process.poll() is not None or \
                self.kubectl("get", "--raw", "/readyz", check=False, timeout=10).stdout.strip() == "ok"

        try:
            wait_until(ready, START_TIMEOUT, f"kube-apiserver on {self.url} to be ready", interval=0.2)
        except TimeoutError as error:
            raise AssertionError(f"{error}; see {self.log_path}") from None
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"kube-apiserver exited with {self.process.returncode}: see {self.log_path}")

    def stop(self) -> None:
        """SIGTERM, as the kubelet ends a static pod: the server closes its watches and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self.etcd.stop()

    # -- clients ----------------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, kubeconfig: Path | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The real kubectl (built with the server), as the cluster's admin unless ``kubeconfig``."""
        result = subprocess.run([str(peer("kubectl")), f"--kubeconfig={kubeconfig or self.admin_kubeconfig}", *args],
                                input=input, capture_output=True, text=True, check=False, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def apply(self, manifests: str, *extra: str) -> str:
        """``kubectl apply --server-side`` of YAML text (as docs/deploy.md tells a platform team to)."""
        return self.kubectl("apply", "--server-side", "--field-manager=dapr-etcd-resolver", "-f", "-", *extra,
                            input=manifests).stdout

    def api_client(self, kubeconfig: Path | None = None) -> k8s.ApiClient:
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(config_file=str(kubeconfig or self.admin_kubeconfig),
                                    client_configuration=configuration)
        configuration.retries = False
        return k8s.ApiClient(configuration)

    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api_client())

    def ensure_namespace(self, name: str) -> None:
        """A namespace and its ``default`` ServiceAccount (the controller manager would make that)."""
        self.apply(yaml.safe_dump_all([
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}}]))

    def token_kubeconfig(self, namespace: str, service_account: str, path: Path) -> Path:
        """A kubeconfig holding a bound token of the ServiceAccount (the TokenRequest API, as a kubelet mounts one)."""
        request = k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
        status = self.core().create_namespaced_service_account_token(service_account, namespace, request).status
        assert status is not None and status.token, "the TokenRequest API answered no token"
        token = status.token
        path.write_text(yaml.safe_dump(_kubeconfig(self.url, self.ca_file, {"token": token})))
        return path

    def audit_events(self, user: str) -> list[dict[str, Any]]:
        """Audit events (ResponseStarted/ResponseComplete) of requests made as ``user``."""
        events = []
        for path in sorted(self.workdir.glob("audit*.log")):
            for line in path.read_text().splitlines():
                event = json.loads(line)
                if event.get("user", {}).get("username") == user:
                    events.append(event)
        return events

    def etcd_revision(self) -> int:
        """The revision of the server's newest object write, read through the server (its resourceVersion)."""
        listed = self.core().list_namespace(limit=1)
        assert listed.metadata is not None and listed.metadata.resource_version
        return int(listed.metadata.resource_version)



def running(workdir: Path) -> Iterator[KubeApiServer]:
    """A started server with the ``default`` namespace ready for pods; closed (by PID) afterwards."""
    api = KubeApiServer(workdir).start()
    api.ensure_namespace("default")
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    """One real API server (and its etcd) per test module: each takes a few seconds to start."""
    yield from running(tmp_path_factory.mktemp("kube-apiserver"))


@pytest.fixture
def proxy(kube_api: KubeApiServer) -> Iterator[TcpProxy]:
    """A link to the server that a test can cut (tests/support/tcp_proxy.py)."""
    link = TcpProxy("127.0.0.1", kube_api.port)
    yield link
    link.close()


def through(kubeconfig: Path, proxy: TcpProxy) -> Path:
    """The same kubeconfig, pointed at the server through ``proxy``."""
    config = yaml.safe_load(kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    kubeconfig.write_text(yaml.safe_dump(config))
    return kubeconfig


@pytest.fixture
def kubelet(kube_api: KubeApiServer) -> Iterator[Kubelet]:
    """Pods in ``default`` (and any namespace the test uses); all of them removed after the test."""
    player = Kubelet(kube_api.core())
    yield player
    if kube_api.process is not None:
        player.delete_all(sorted(player.namespaces))
