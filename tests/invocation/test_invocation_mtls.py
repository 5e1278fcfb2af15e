"""Cross-cluster mTLS with the real daprd and Dapr's real sentry (premise 2 of docs/production.md).

Each cluster runs its own sentry (self-hosted mode, beside CoreDNS) and every daprd runs with
``--enable-mtls``, its cluster's sentry address and ``DAPR_TRUST_ANCHORS``. When both sentries
issue from one root, daprd in cluster-1 invokes daprd in cluster-2; when each sentry has a
root of its own, the TLS handshake between them fails and daprd says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import slots
from tests.support.clusters import Topology

pytestmark = [pytest.mark.xdist_group("real-daprd"), pytest.mark.timeout(300 + slots.WAIT)]


def _invoke_across(work: Path, mtls: str) -> tuple[list[dict[str, object]], list[dict[str, object]], str]:
    """From cluster-1: one invocation of an app in cluster-2, one of an app in cluster-1."""
    with Topology(work, mtls=mtls).start() as topology:
        one, two = topology.cluster(1), topology.cluster(2)
        remote, local = two.add_pod("remote"), one.add_pod("local")
        caller = one.add_pod("caller", serve=False, publish=False)
        one.wait_running([local, caller])
        two.wait_running([remote])
        topology.wait_answer(one, "remote", [remote.address])
        topology.wait_answer(one, "local", [local.address])
        return caller.invoke("remote", count=1), caller.invoke("local", count=1), caller.daprd_log()


def test_one_shared_root_lets_daprd_invoke_across_clusters(tmp_path: Path) -> None:
    across, local, log = _invoke_across(tmp_path, "shared")
    assert across[0]["ok"] and across[0]["cluster"] == "cluster-2", across
    assert local[0]["ok"], local
    assert "mTLS is disabled" not in log  # daprd says so when it runs without mTLS


def test_separate_roots_fail_the_handshake_across_clusters_only(tmp_path: Path) -> None:
    across, local, _ = _invoke_across(tmp_path, "separate")
    assert not across[0]["ok"], across
    error = str(across[0]["error"])
    print("daprd's error:", error)
    assert "authentication handshake failed" in error and "certificate signed by unknown authority" in error, error
    assert local[0]["ok"], local  # each cluster's own calls still work
