"""The example apps, run for real with the Dapr SDK (``dapr[grpc]``) in a virtualenv of their own.

The SDK gets its own environment because it pins python-dateutil<3 while the kubernetes
client the publisher uses needs >=3: an app image and the resolver image never share one.
The order service is called exactly as daprd calls a gRPC app: AppCallback.OnInvoke.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import pytest

from resolver.demo.processes import wait_until
from resolver.local_etcd import free_port

ROOT = Path(__file__).resolve().parent.parent

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


@pytest.fixture(scope="session")
def sdk_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("examples-venv")
    venv.create(directory, with_pip=True)
    python = str(directory / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "-r", str(ROOT / "examples/requirements.txt")], check=True,
                   timeout=600)
    return python


def test_order_service_answers_like_in_hello_kubernetes_and_names_its_cluster(sdk_python: str, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "order.log").open("wb")
    app = subprocess.Popen([sdk_python, str(ROOT / "examples/order-service/app.py")], stdout=log,
                           stderr=subprocess.STDOUT,
                           env={**os.environ, "APP_PORT": str(port), "CLUSTER_NAME": "cluster-7", "POD_NAME": "pod-a"})
    try:
        def invoke() -> list[dict[str, object]]:
            result = subprocess.run([sdk_python, "-c", INVOKE, f"127.0.0.1:{port}"], capture_output=True, text=True,
                                    timeout=30, check=False)
            return json.loads(result.stdout) if result.returncode == 0 else []

        new_order, last_order = wait_until(invoke, 30, "the order service")
        assert new_order == {"orderId": 42, "status": "received", "cluster": "cluster-7", "pod": "pod-a"}
        assert last_order == {"order": {"orderId": 42}, "cluster": "cluster-7", "pod": "pod-a"}
    finally:
        app.terminate()
        app.wait(10)
        log.close()


def test_caller_starts(sdk_python: str) -> None:
    result = subprocess.run([sdk_python, str(ROOT / "examples/caller/app.py"), "--help"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "--app-id" in result.stdout

