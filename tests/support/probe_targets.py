"""Endpoints for probing tests, on loopback: cluster-2's refuse connections, cluster-3's accept them.

A pytest plugin (tests/conftest.py): the component's and the consul role's reachability tests
share the fixture. Records of app ``orders`` are put in the test's registry prefix.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from resolver.etcd.gateway import EtcdGateway
from resolver.records.schema import Keys
from tests.conftest import put_record, record

PROBING = {"reachability": "on", "probeInterval": "0.5s", "allowLoopback": "true",
           "clusterCIDRs": "cluster-2=127.0.2.0/24,cluster-3=127.0.3.0/24",
           "policy": "FailOver", "failoverOrder": "cluster-2,cluster-3"}


@pytest.fixture
def probe_targets(gateway: EtcdGateway, keys: Keys) -> Iterator[tuple[list[str], list[str]]]:
    """Two refusing endpoints in cluster-2, two accepting ones in cluster-3, all of app orders."""
    listening = []
    refusing, accepting = [], []
    for index in (1, 2):
        closed = socket.socket()
        closed.bind((f"127.0.2.{index}", 0))
        refusing.append(f"127.0.2.{index}:{closed.getsockname()[1]}")
        closed.close()
        sock = socket.socket()
        sock.bind((f"127.0.3.{index}", 0))
        sock.listen(16)
        listening.append(sock)
        accepting.append(f"127.0.3.{index}:{sock.getsockname()[1]}")
    for cluster, addresses in (("cluster-2", refusing), ("cluster-3", accepting)):
        for address in addresses:
            host, port = address.split(":")
            put_record(gateway, keys, record("orders", cluster=cluster, address=host, port=int(port)))
    yield refusing, accepting
    for sock in listening:
        sock.close()
