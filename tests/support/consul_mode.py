"""The consul mode of the two-cluster topology (tests/support/clusters.py): stock daprd's own
consul name resolver asking each cluster's ``dapr-etcd-resolver consul`` role.

Per cluster, the bridge's namespace (``10.20N.0.3``) also runs the consul role on port 8500 with
that cluster's ``clusterName`` and the bridge's settings and policies; every pod's daprd is
``daprd-consul`` (daprd with the consul resolver registered as Dapr's allcomponents release
flavor does) with the Configuration of ``deploy/examples/consul``, its ``client.address`` filled
in with its cluster's role — as a user fills the example. The DNS bridge and CoreDNS keep running
beside it: the scenarios' waits ask the bridge what the registry holds, and in this mode no
daprd asks them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from resolver.demo.processes import wait_until
from tests.support.peers import ROOT

if TYPE_CHECKING:
    from tests.support.clusters import Cluster

CONFIGURATION = ROOT / "deploy" / "examples" / "consul" / "configuration.yaml"
PORT = 8500
METRICS_PORT = 9091  # the role's /metrics and /reachability (the bridge beside it has 9090)
DAPRD = "daprd-consul"
LOG = "consul.log"
SERVING = "serving the Consul-compatible catalog"


def address(cluster: Cluster) -> str:
    return f"{cluster.bridge_ip}:{PORT}"


def start_role(cluster: Cluster, etcd: str, settings: dict[str, str]) -> subprocess.Popen[bytes]:
    """The cluster's consul role, beside its DNS bridge; returns once it listens."""
    assert cluster.registry is not None
    flags = [item for key, value in {"clusterName": cluster.name, **settings}.items()
             for item in ("--set", f"{key}={value}")]
    serving = cluster.registry_log(LOG).count(SERVING)
    role = cluster.registry.start([sys.executable, "-m", "resolver", "consul", "--listen", address(cluster),
                                   "--metrics-port", str(METRICS_PORT), "--list-jitter", "0",
                                   "--set", f"etcdEndpoints={etcd}", *flags], LOG)
    wait_until(lambda: cluster.registry_log(LOG).count(SERVING) > serving or cluster._exited(),
               60, f"{cluster.name}'s consul role")
    return role


def restart_role(cluster: Cluster, etcd: str, settings: dict[str, str]) -> None:
    """Stop the cluster's consul role (SIGTERM) and start it with ``settings``: how an operator
    changes its configuration. Dapr's resolvers re-ask when their blocking queries break."""
    assert cluster.registry is not None
    for process in [p for p in cluster.registry.processes if isinstance(p.args, list) and "consul" in p.args
                    and p.poll() is None]:
        process.terminate()
        process.wait(30)
        cluster.registry.processes.remove(process)
    start_role(cluster, etcd, settings)


def configuration(cluster: Cluster) -> Path:
    """The example's Configuration with this cluster's role as ``client.address`` (written once)."""
    path = cluster.work / "dapr-config-consul.yaml"
    if not path.exists():
        document = yaml.safe_load(CONFIGURATION.read_text())
        document["spec"]["nameResolution"]["configuration"]["client"]["address"] = address(cluster)
        path.write_text(yaml.safe_dump(document))
    return path
