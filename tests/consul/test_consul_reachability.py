"""Reachability in the consul role, asked by Dapr's own consul resolver (components-contrib,
``consul-peer``): a cluster whose endpoints refuse connections leaves the catalog's answers."""

from __future__ import annotations

import json
import urllib.request

from resolver.local_etcd import LocalEtcd, free_port
from tests.conftest import eventually
from tests.consul.conftest import consul_peer, role_args
from tests.support.probe_targets import PROBING
from tests.test_cli import cli


def test_the_consul_role_leaves_an_unreachable_cluster_out_for_daprs_resolver(
        consul_role, etcd: LocalEtcd, prefix: str, probe_targets: tuple[list[str], list[str]]) -> None:
    refusing, accepting = probe_targets
    metrics_port = free_port()
    flags = [item for key, value in PROBING.items() for item in ("--set", f"{key}={value}")]
    role = consul_role(*role_args(etcd, prefix, *flags, "--metrics-port", str(metrics_port), cluster="cluster-1"))

    def answers() -> set[str]:
        lines = consul_peer("-address", role.address, "-app", "orders", "-count", "20", "-use-cache=false")
        return {line.get("addr", "error") for line in lines if "t" in line}

    assert answers() <= set(refusing)
    eventually(lambda: answers() <= set(accepting), 30, "Dapr's consul resolver to get only cluster-3")
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/reachability", timeout=10) as reply:
        page = json.load(reply)
    assert page["clusters"]["cluster-2"]["state"] == "unreachable"
    assert page["clusters"]["cluster-3"]["state"] == "reachable" and not page["failOpen"]
    status = cli("status", "--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}",
                 "--reachability", f"127.0.0.1:{metrics_port}")
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()
            if line.startswith("cluster-")}
    assert rows["cluster-2"] == "UNREACHABLE" and rows["cluster-3"] == "REACHABLE", status.stdout
    assert "reachability as seen from cluster-1" in status.stdout and "FAIL OPEN" not in status.stdout
    missing = cli("status", "--set", f"etcdEndpoints={etcd.endpoint}", "--reachability", f"127.0.0.1:{free_port()}")
    assert missing.returncode != 0 and "invalid --reachability: cannot read" in missing.stderr
    assert "Traceback" not in missing.stderr
