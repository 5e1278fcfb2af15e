"""The etcd gateway shared by threads: a client dropped by one thread while another is about to
use it must cost a retry, never an error the caller cannot classify (real etcd)."""

from __future__ import annotations

import threading

import pytest

from resolver.errors import RegistryUnavailable
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from tests.conftest import make_settings

pytestmark = pytest.mark.registry


def test_a_client_closed_by_another_thread_is_replaced_not_raised(etcd: LocalEtcd, prefix: str) -> None:
    gateway = EtcdGateway(make_settings(etcd.endpoint, prefix).etcd)
    try:
        gateway.put(f"{prefix}/k", b"v")
        first = threading.Event()

        def closed_once(client):
            if not first.is_set():
                first.set()
                gateway.reset()  # what another thread does when its own call saw etcd fail
            return client.get(f"{prefix}/k")

        value, _ = gateway.call("get", closed_once, f"{prefix}/k")
        assert value == b"v"
    finally:
        gateway.close()


def test_a_client_closed_twice_in_a_row_is_unavailable_and_retryable(etcd: LocalEtcd, prefix: str) -> None:
    gateway = EtcdGateway(make_settings(etcd.endpoint, prefix).etcd)
    try:
        def always_closed(client):
            gateway.reset()
            return client.get(f"{prefix}/k")

        with pytest.raises(RegistryUnavailable, match="reset"):
            gateway.call("get", always_closed, f"{prefix}/k")
    finally:
        gateway.close()
