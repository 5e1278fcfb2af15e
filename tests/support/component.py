"""Running ``dapr-etcd-resolver serve`` as a real subprocess and talking to it like daprd."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from resolver.component.client import ComponentClient
from resolver.demo.processes import CliProcess, wait_serving

_names = itertools.count()


class ServeProcess(CliProcess):
    def __init__(self, socket_dir: Path, extra: list[str], log_path: Path, name: str = "etcd",
                 env: dict[str, str] | None = None, pass_socket_dir: bool = True) -> None:
        self.socket_path = socket_dir / f"{name}.sock"
        where = ["--socket-dir", str(socket_dir)] if pass_socket_dir else []
        super().__init__(["serve", *where, "--name", name, "--grace", "3", *extra], log_path, env)

    def wait_ready(self, timeout: float = 20.0) -> ServeProcess:
        wait_serving(self, self.socket_path, timeout)
        return self

    def client(self, instance: str | None = None) -> ComponentClient:
        return ComponentClient(self.socket_path, instance=instance or f"instance-{next(_names)}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Start ``serve`` subprocesses; every one is stopped (by PID) at the end of the test."""
    started: list[ServeProcess] = []

    def start(*extra: str, socket_dir: Path | None = None, name: str = "etcd", wait: bool = True,
              env: dict[str, str] | None = None, pass_socket_dir: bool = True) -> ServeProcess:
        process = ServeProcess(socket_dir or tmp_path / "sockets", list(extra),
                               tmp_path / f"serve-{len(started)}.log", name, env, pass_socket_dir)
        started.append(process)
        return process.wait_ready() if wait else process

    yield start
    for process in started:
        process.stop()


def status_of(call: object) -> grpc.StatusCode:
    """The status code a failing call raised."""
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as error:
        return error.code()
    raise AssertionError("the call did not fail")
