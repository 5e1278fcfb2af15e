"""The example apps, run for real with the Dapr SDK in ONE environment together with the project.

The environment is built the way the docs say (``pip install '.[examples]'`` into a fresh
virtualenv) and must pass ``pip check``: kubernetes 37.0.2 — the one release that needs
python-dateutil ≥ 3, which the Dapr SDK refuses — is excluded, so the resolver, the kubernetes
client and the SDK resolve together. In it, the order service is called exactly as daprd calls
a gRPC app (AppCallback.OnInvoke), and the caller runs against a stand-in for its sidecar's HTTP
API that forwards each invocation to the order service the same way daprd does.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from resolver.demo.processes import wait_until
from resolver.local_etcd import free_port

ROOT = Path(__file__).resolve().parents[2]

INVOKE = """
import json, sys
import grpc
from dapr.proto.runtime.v1 import appcallback_pb2_grpc
from dapr.proto.common.v1 import common_pb2
from google.protobuf.any_pb2 import Any

stub = appcallback_pb2_grpc.AppCallbackStub(grpc.insecure_channel(sys.argv[1]))
replies = []
for method, body in (("neworder", {"data": {"orderId": 42}}), ("order", {})):
    data = Any(value=json.dumps(body).encode())
    reply = stub.OnInvoke(common_pb2.InvokeRequest(method=method, data=data, content_type="application/json"),
                          timeout=5)
    replies.append(json.loads(reply.data.value))
print(json.dumps(replies))
"""

# The sidecar's side of an invocation, as daprd does it for an app with --app-protocol grpc:
# HTTP /v1.0/invoke/{id}/method/{method} in, AppCallback.OnInvoke to the app out.
SIDECAR = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import grpc
from dapr.proto.runtime.v1 import appcallback_pb2_grpc
from dapr.proto.common.v1 import common_pb2
from google.protobuf.any_pb2 import Any

port, app = int(sys.argv[1]), sys.argv[2]
stub = appcallback_pb2_grpc.AppCallbackStub(grpc.insecure_channel(app))

class Sidecar(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(204 if self.path == "/v1.0/healthz/outbound" else 404)
        self.end_headers()

    def do_POST(self):
        parts = self.path.split("/")  # /v1.0/invoke/{id}/method/{method}
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        request = common_pb2.InvokeRequest(method=parts[5], data=Any(value=body),
                                           content_type=self.headers.get("Content-Type", ""),
                                           http_extension=common_pb2.HTTPExtension(verb=common_pb2.HTTPExtension.POST))
        reply = stub.OnInvoke(request, timeout=5)
        self.send_response(200)
        self.send_header("Content-Type", reply.content_type or "application/json")
        self.end_headers()
        self.wfile.write(reply.data.value)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", port), Sidecar).serve_forever()
"""


@pytest.fixture(scope="session")
def shared_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh virtualenv with the project and its examples extra, as docs/deploy.md installs it."""
    directory = tmp_path_factory.mktemp("shared-venv")
    venv.create(directory, with_pip=True)
    python = str(directory / "bin" / "python")
    # One install at a time across xdist workers: two pip builds of this checkout at once collide
    # in its build/ directory ("File exists").
    with open(tmp_path_factory.getbasetemp().parent / "shared-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = subprocess.run([python, "-m", "pip", "install", "-q", f"{ROOT}[examples]"], capture_output=True,
                                   text=True, timeout=600, check=False)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return python


def test_project_and_examples_share_one_consistent_environment(shared_python: str) -> None:
    check = subprocess.run([shared_python, "-m", "pip", "check"], capture_output=True, text=True, timeout=120,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    probe = ("import importlib.metadata as m, resolver.cli.main, kubernetes, dapr.clients, dapr.ext.grpc; "
             "print(m.version('kubernetes'), m.version('python-dateutil'), m.version('dapr'))")
    versions = subprocess.run([shared_python, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    kubernetes, dateutil, _dapr = versions.stdout.split()
    assert kubernetes != "37.0.2" and int(dateutil.split(".")[0]) < 3
    cli = subprocess.run([str(Path(shared_python).parent / "dapr-etcd-resolver"), "--help"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert cli.returncode == 0 and "publish" in cli.stdout


@pytest.fixture
def order_service(shared_python: str, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    with (tmp_path / "order.log").open("wb") as log:
        app = subprocess.Popen([shared_python, str(ROOT / "examples/order-service/app.py")], stdout=log,
                               stderr=subprocess.STDOUT, env={**os.environ, "APP_PORT": str(port),
                                                              "CLUSTER_NAME": "cluster-7", "POD_NAME": "pod-a"})
        try:
            yield port
        finally:
            app.terminate()
            app.wait(10)


def invoke(shared_python: str, port: int) -> list[dict[str, object]]:
    result = subprocess.run([shared_python, "-c", INVOKE, f"127.0.0.1:{port}"], capture_output=True, text=True,
                            timeout=30, check=False)
    replies: list[dict[str, object]] = json.loads(result.stdout) if result.returncode == 0 else []
    return replies


def test_order_service_answers_like_in_hello_kubernetes_and_names_its_cluster(shared_python: str,
                                                                               order_service: int) -> None:
    new_order, last_order = wait_until(lambda: invoke(shared_python, order_service), 30, "the order service")
    assert new_order == {"orderId": 42, "status": "received", "cluster": "cluster-7", "pod": "pod-a"}
    assert last_order == {"order": {"orderId": 42}, "cluster": "cluster-7", "pod": "pod-a"}


def test_caller_invokes_through_its_sidecar_and_says_which_cluster_answered(shared_python: str, order_service: int,
                                                                            tmp_path: Path) -> None:
    wait_until(lambda: invoke(shared_python, order_service), 30, "the order service")
    http_port = free_port()
    sidecar = subprocess.Popen([shared_python, "-c", SIDECAR, str(http_port), f"127.0.0.1:{order_service}"],
                               stdout=subprocess.DEVNULL, stderr=(tmp_path / "sidecar.log").open("wb"))
    try:
        env = {**os.environ, "DAPR_HTTP_PORT": str(http_port), "DAPR_GRPC_PORT": str(free_port()),
               "DAPR_HEALTH_TIMEOUT": "20", "CLUSTER_NAME": "cluster-1"}
        caller = subprocess.run([shared_python, str(ROOT / "examples/caller/app.py"), "--count", "3", "--interval",
                                 "0"], capture_output=True, text=True, timeout=60, env=env, check=False)
        assert caller.returncode == 0, caller.stdout + caller.stderr
        lines = [line for line in caller.stdout.splitlines() if line.startswith("order ")]
        assert lines == [f"order {n}: received by pod-a in cluster-7 (remote)  (so far: {{'cluster-7': {n}}})"
                         for n in (1, 2, 3)], caller.stdout
        assert caller.stdout.startswith("caller in cluster-1 calling order-service")
    finally:
        sidecar.terminate()
        sidecar.wait(10)
