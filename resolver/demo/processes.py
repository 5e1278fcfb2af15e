"""Starting our own CLI as subprocesses and ending exactly those (by PID), for the demo and tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from resolver.errors import ResolverError

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy; raise naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as error:  # the condition may fail until the thing is up
            last_error = error
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}"
                       + (f" (last error: {last_error})" if last_error else ""))


def wait_serving(process: CliProcess, socket_path: Path, timeout: float = 30.0) -> None:
    """Wait until ``serve`` (``process``) answers its health check on ``socket_path`` with SERVING."""
    from resolver.component.client import ComponentClient

    def ready() -> bool:
        process.check_running()
        if not socket_path.exists():
            return False
        with ComponentClient(socket_path, timeout=2) as client:
            return client.health() == "SERVING"

    wait_until(ready, timeout, f"serve on {socket_path}")


def wait_dns_listening(process: CliProcess, timeout: float = 30.0) -> int:
    """Wait until ``dns`` (``process``) logs the port it listens on; return that port."""
    from resolver.cli.dns_cmd import LISTENING_PORT

    def bound() -> int:
        process.check_running()
        found = LISTENING_PORT.search(process.output())
        return int(found.group(1)) if found else 0

    return wait_until(bound, timeout, "the DNS bridge to listen")


class CliProcess:
    """``python -m resolver ARGS`` with its output in a log file.

    ``own_session`` puts the child in a session (and process group) of its own, so a Ctrl-C at
    the terminal — SIGINT to the whole foreground process group — reaches only the supervisor,
    which then ends its children in order, instead of every child dying at once under it.
    """

    def __init__(self, args: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                 own_session: bool = False) -> None:
        self.args = list(args)
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "resolver", *self.args], stdout=log,
                                            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                            start_new_session=own_session)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.process.pid, signum)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout)

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait(10)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check_running(self) -> bool:
        """True while running; raises with the process's output once it has exited."""
        if not self.alive():
            raise ResolverError(f"`{' '.join(self.args[:2])}` exited with {self.process.returncode}:\n"
                                + self.output()[-2000:])
        return True
