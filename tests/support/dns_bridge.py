"""Running ``dapr-etcd-resolver dns`` as a subprocess and querying it with dnspython."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

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
