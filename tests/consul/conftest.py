"""Running ``dapr-etcd-resolver consul`` as a subprocess, asking it over HTTP, and driving the Go peer.

The peer (``tests/peers/consul``, built by ``scripts/build-peers.sh`` as ``consul-peer``) is
Dapr's own consul name resolver from components-contrib and ``github.com/hashicorp/consul/api``:
clients nobody here wrote.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from resolver.demo.processes import CliProcess, wait_until
from resolver.local_etcd import LocalEtcd
from tests.support.peers import peer

_PORT = re.compile(r"serving the Consul-compatible catalog on [\d.:a-fA-F]+:(\d+) \(HTTP\)")


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    @property
    def index(self) -> int:
        return int(self.headers["X-Consul-Index"])


class ConsulProcess(CliProcess):
    port = 0

    def wait_ready(self, timeout: float = 30.0) -> ConsulProcess:
        def bound() -> int:
            self.check_running()
            found = _PORT.search(self.output())
            return int(found.group(1)) if found else 0

        self.port = wait_until(bound, timeout, "the consul catalog to listen")
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET",
            timeout: float = 30.0) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, headers=headers or {})
            response = connection.getresponse()
            return Reply(response.status, {k.title() if k.lower().startswith("x-") else k: v
                                           for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()


def role_args(etcd: LocalEtcd, prefix: str, *extra: str, cluster: str = "cluster-2") -> list[str]:
    return ["--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}",
            "--set", f"clusterName={cluster}", *extra]


@pytest.fixture
def consul_role(tmp_path: Path) -> Iterator[Callable[..., ConsulProcess]]:
    started: list[ConsulProcess] = []

    def start(*extra: str) -> ConsulProcess:
        process = ConsulProcess(["consul", "--listen", "127.0.0.1:0", *extra], tmp_path / f"consul-{len(started)}.log")
        started.append(process)
        return process.wait_ready()

    yield start
    for process in started:
        process.stop()


def consul_peer(*args: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Run the Go peer to completion; its JSON lines."""
    result = subprocess.run([str(peer("consul-peer")), *args], capture_output=True, text=True, timeout=timeout,
                            check=False)
    if result.returncode != 0:
        raise AssertionError(f"consul-peer {' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.fixture
def peer_process() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start the Go peer in the background (stdout piped, one JSON line per ResolveID)."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen([str(peer("consul-peer")), *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
