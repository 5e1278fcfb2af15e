"""Reachability in the component (opt-in), asked through the gRPC calls daprd makes. Endpoints
live on loopback: cluster-2's refuse connections, cluster-3's accept them. The consul role is
shown with Dapr's consul resolver in tests/consul/test_consul_reachability.py, the DNS bridge
with the real daprd, CoreDNS and a cut link in tests/invocation/test_invocation_reachability.py."""

from __future__ import annotations

from resolver.local_etcd import LocalEtcd
from tests.conftest import eventually
from tests.support.probe_targets import PROBING


def test_the_component_opts_in_and_fails_over_from_a_refusing_cluster(
        serve, etcd: LocalEtcd, prefix: str, probe_targets: tuple[list[str], list[str]]) -> None:
    refusing, accepting = probe_targets
    server = serve()
    with server.client() as client:
        client.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix, "clusterName": "cluster-1", **PROBING})
        assert client.resolve("orders") in refusing  # FailOver's first choice, until probed
        eventually(lambda: client.resolve("orders") in accepting, 30, "the component to leave cluster-2 out")
        assert {client.resolve("orders") for _ in range(20)} <= set(accepting)
    assert "cluster cluster-2 is UNREACHABLE from cluster-1" in server.output()
