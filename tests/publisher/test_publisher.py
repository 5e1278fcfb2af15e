"""The publisher agent in-process against etcd: leftovers, a revoked lease, an etcd restart — real etcd.

Kubernetes is incidental here, so the pods come from the HTTP fake (tests/support/fake_kube.py):
a deterministic pod list in milliseconds, no API server to start per module. The Kubernetes
side itself — sync, changes, zones, namespaces, bad pods, drops, 410s, permissions, two
clusters — is tested against a real kube-apiserver in test_real_apiserver_*.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import Keys
from tests.conftest import eventually, make_settings, put_record, record
from tests.support.fake_kube import FakeKubeApi, make_pod
from tests.support.publishing import etcd_addresses

pytestmark = pytest.mark.registry  # also run against etcd 3.4 in CI (README's test command)


def test_initial_sync_deletes_leftovers_but_never_other_clusters(kube: FakeKubeApi, publisher, gateway: EtcdGateway,
                                                                 keys: Keys) -> None:
    put_record(gateway, keys, record("ghost", cluster="cluster-1", address="10.9.9.9"))  # from a previous run
    put_record(gateway, keys, record("theirs", cluster="cluster-10", address="10.8.8.8"))  # cluster-1 is a prefix!
    kube.put_pod(make_pod("orders-a"))
    publisher()
    assert list(etcd_addresses(gateway, keys, "cluster-1")) == ["orders-a"]
    assert list(etcd_addresses(gateway, keys, "cluster-10")) == ["theirs-10-8-8-8"]


def test_lease_revoked_externally_is_re_registered(kube: FakeKubeApi, publisher, gateway: EtcdGateway,
                                                   keys: Keys) -> None:
    kube.put_pod(make_pod("orders-a"))
    publisher(lease_ttl=3.0)
    key = keys.endpoint("cluster-1", "default", "orders", "orders-a")
    lease = gateway.call("get", lambda c: c.get(key))[1].lease_id
    gateway.revoke(lease)
    assert gateway.get(key) is None
    eventually(lambda: gateway.get(key) is not None and gateway.get(keys.info("cluster-1")) is not None, 10,
               "re-registration")


def test_etcd_restart(kube: FakeKubeApi, publisher, tmp_path: Path, prefix: str,
                      caplog: pytest.LogCaptureFixture) -> None:
    own = LocalEtcd(tmp_path / "etcd").start()
    settings = make_settings(own.endpoint, prefix, etcdTimeout="1s")
    gateway = EtcdGateway(settings.etcd)
    keys = Keys(prefix)
    caplog.set_level(logging.DEBUG, logger="resolver.writer.writer")
    try:
        kube.put_pod(make_pod("orders-a"))
        publisher(settings_override=settings, lease_ttl=4.0)
        own.kill()
        kube.put_pod(make_pod("orders-b", ip="10.0.0.2"))  # happens while etcd is down
        eventually(lambda: any("2 records pending" in r.getMessage() for r in caplog.records), 20,
                   "the publisher to have the new pod and fail to write it")
        own.start()
        eventually(lambda: sorted(etcd_addresses(gateway, keys, "cluster-1")) == ["orders-a", "orders-b"], 20,
                   "convergence after the restart")
    finally:
        gateway.close()
        own.cleanup()
