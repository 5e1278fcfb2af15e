"""Running ``dapr-etcd-resolver dns`` as a subprocess, and asking it with real DNS clients.

dnspython for fine-grained protocol cases; ``kdig`` (Knot) and ``dig`` (BIND) as peers
nobody on this project wrote — ``kdig`` lower-cases names before sending, ``dig`` keeps the
spelling, so mixed-case queries go through ``dig``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest

from resolver.demo.processes import CliProcess, wait_dns_listening


class DnsProcess(CliProcess):
    port = 0

    def wait_ready(self, timeout: float = 20.0) -> DnsProcess:
        self.port = wait_dns_listening(self, timeout)
        return self

    def query(self, name: str, rdtype: str = "A", tcp: bool = False, payload: int | None = None,
              ) -> dns.message.Message:
        message = dns.message.make_query(name, dns.rdatatype.from_text(rdtype),
                                         use_edns=payload is not None, payload=payload or 512)
        if tcp:
            return dns.query.tcp(message, "127.0.0.1", port=self.port, timeout=5)
        return dns.query.udp(message, "127.0.0.1", port=self.port, timeout=5, ignore_trailing=True)

    def kdig(self, name: str, rdtype: str = "A", *options: str) -> dict[str, Any]:
        """kdig's RFC 8427 JSON for one query (``{"error": text}`` when kdig reports a failure)."""
        result = subprocess.run(["kdig", "@127.0.0.1", "-p", str(self.port), name, rdtype, "+json", "+time=3",
                                 "+retry=1", *options], capture_output=True, text=True, timeout=30, check=False)
        start = min((i for i in (result.stdout.find("{"), result.stdout.find("[")) if i >= 0), default=-1)
        if start < 0:
            return {"error": (result.stdout + result.stderr).strip()}
        parsed = json.loads(result.stdout[start:])
        message: dict[str, Any] = parsed[0] if isinstance(parsed, list) else parsed  # transfers: a list
        return message

    def dig_short(self, name: str, rdtype: str = "A") -> list[str]:
        """``dig +short`` (keeps the name's case on the wire)."""
        result = subprocess.run(["dig", "@127.0.0.1", "-p", str(self.port), name, rdtype, "+short", "+time=3",
                                 "+tries=1"], capture_output=True, text=True, timeout=30, check=True)
        return sorted(line for line in result.stdout.splitlines() if line and not line.startswith(";"))


def rdata(reply: dict[str, Any], type_name: str) -> list[str]:
    """The rdata texts of one type in a kdig JSON answer section, sorted."""
    return sorted(str(rr[f"rdata{type_name}"]) for rr in reply.get("answerRRs", []) if rr["TYPEname"] == type_name)


@pytest.fixture
def dns_bridge(tmp_path: Path) -> Iterator[Callable[..., DnsProcess]]:
    started: list[DnsProcess] = []

    def start(*extra: str) -> DnsProcess:
        process = DnsProcess(["dns", "--listen", "127.0.0.1:0", *extra], tmp_path / f"dns-{len(started)}.log")
        started.append(process)
        return process.wait_ready()

    yield start
    for process in started:
        process.stop()


class NetNs:
    """A network namespace of the test's own, with its own resolv.conf and hosts (``/etc/netns/NAME``).

    ``ip netns exec`` bind-mounts ``/etc/netns/NAME/*`` over ``/etc/*`` for the processes it
    starts, so a resolver inside sees only what the test wrote — and port 53 on the
    namespace's loopback is the test's to bind. :meth:`close` ends every process it started
    (by PID) and removes the namespace and its ``/etc/netns`` directory.
    """

    def __init__(self, name: str, work: Path) -> None:
        self.name = name
        self.work = work
        self.etc = Path("/etc/netns") / name
        self.processes: list[subprocess.Popen[bytes]] = []
        subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=30)
        self.etc.mkdir(parents=True, exist_ok=True)

    def write(self, file: str, text: str) -> None:
        (self.etc / file).write_text(text)

    def command(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def start(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with open(self.work / log_name, "ab") as log:
            process = subprocess.Popen(self.command(*args), stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def run(self, args: list[str], timeout: float = 60, stdin: str | None = None) -> str:
        result = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout, input=stdin,
                                check=False)
        if result.returncode != 0:
            raise AssertionError(f"{args[:3]} failed in {self.name}: {result.stdout[-1000:]}{result.stderr[-2000:]}")
        return result.stdout

    def log(self, log_name: str) -> str:
        path = self.work / log_name
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
        subprocess.run(["ip", "netns", "del", self.name], check=False, timeout=30)
        for file in self.etc.glob("*"):
            file.unlink()
        if self.etc.exists():
            self.etc.rmdir()


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[Callable[[str], NetNs]]:
    made: list[NetNs] = []

    def make(tag: str) -> NetNs:
        import os

        space = NetNs(f"dnsbr-{os.getpid()}-{len(made)}-{tag}"[:30], tmp_path)
        made.append(space)
        return space

    yield make
    for space in made:
        space.close()
