"""Every overlay, example and chart rendering of the kit, validated by a real API server.

The schema checks of test_shipping.py agree with our reading of the Kubernetes schemas; here
the server itself decides (``kubectl apply --server-side --dry-run=server``): field
validation (strict: an unknown field is an error, not a warning), defaulting, admission,
and the custom resources against the CustomResourceDefinitions their projects publish — Dapr's
``Configuration``/``Component``/``Resiliency`` of the pinned dapr/dapr release and the
Prometheus Operator's ``ServiceMonitor``/``PrometheusRule`` (scripts/build-peers.sh puts them in
.peers/crds/). A platform team applying the kit gets what these tests got.

Namespaces the manifests name are created for real first: a server-side dry run of a namespaced
object in a namespace that does not exist yet is refused, whatever else is right about it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.test_helm_chart import render_chart
from tests.deploy.test_shipping import KUSTOMIZATIONS
from tests.support.kube_apiserver import KubeApiServer
from tests.support.manifests import kustomize_text
from tests.support.peers import BIN

pytestmark = pytest.mark.xdist_group("kube-apiserver-dry-run")

ROOT = Path(__file__).resolve().parents[2]
CRDS = BIN.parent / "crds"
CHART_EXAMPLES = sorted((ROOT / "charts/dapr-etcd-resolver/examples").glob("*.yaml"))
CHART_OPTIONS = ("monitoring.enabled=true", "etcdProxy.enabled=true", "consul.enabled=true")


@pytest.fixture(scope="module")
def server(kube_api: KubeApiServer) -> KubeApiServer:
    """The API server with the CRDs installed and established."""
    for project in ("dapr", "prometheus-operator"):
        files = sorted((CRDS / project).glob("*.yaml"))
        assert files, f"no CRDs in {CRDS / project}: run `bash scripts/build-peers.sh`"
        kube_api.apply("\n---\n".join(f.read_text() for f in files))
    kube_api.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")
    return kube_api


def server_dry_run(server: KubeApiServer, manifests: str) -> subprocess.CompletedProcess[str]:
    objects = [doc for doc in yaml.safe_load_all(manifests) if doc]
    assert objects
    for namespace in sorted({o["metadata"].get("namespace") for o in objects} - {None}
                            | {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}):
        server.ensure_namespace(namespace)
    return server.kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=dapr-etcd-resolver",
                          "--validate=strict", "-f", "-", input=manifests, check=False)


def dry_run(server: KubeApiServer, manifests: str) -> str:
    result = server_dry_run(server, manifests)
    objects = [doc for doc in yaml.safe_load_all(manifests) if doc]
    assert result.returncode == 0, f"the API server refused it:\n{result.stderr}"
    applied = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(applied) == len(objects), result.stdout
    return result.stdout


BASE = "deploy/base"
"""Not applied on its own (its kustomization says so): the overlays fill in its placeholders."""


@pytest.mark.parametrize("path", [p for p in KUSTOMIZATIONS if p != BASE])
def test_every_kustomization_passes_the_servers_validation(server: KubeApiServer, path: str) -> None:
    dry_run(server, kustomize_text(path))


def test_the_base_alone_is_refused_for_its_placeholder_and_nothing_else(server: KubeApiServer) -> None:
    refused = server_dry_run(server, kustomize_text(BASE))
    assert refused.returncode != 0
    problems = [line for line in refused.stderr.splitlines() if "invalid" in line.lower()]
    assert len(problems) == 1 and '"BRIDGE_IP": must be a valid IP address' in problems[0], problems


@pytest.mark.parametrize("values", CHART_EXAMPLES, ids=[p.stem for p in CHART_EXAMPLES])
def test_the_charts_renderings_pass_the_servers_validation(server: KubeApiServer, values: Path) -> None:
    out = dry_run(server, render_chart(values, CHART_OPTIONS))
    assert "servicemonitor.monitoring.coreos.com/" in out and "prometheusrule.monitoring.coreos.com/" in out


def test_the_server_refuses_what_the_kit_must_never_contain(server: KubeApiServer) -> None:
    """The dry run is strict enough to fail: a misspelt field of a Dapr Configuration is an error."""
    configuration = next(doc for doc in yaml.safe_load_all(kustomize_text("deploy/examples/dns-bridge"))
                         if doc and doc["kind"] == "Configuration")
    configuration["spec"]["nameResolution"]["componnet"] = "kubernetes"
    server.ensure_namespace(configuration["metadata"].get("namespace", "default"))
    result = server.kubectl("apply", "--server-side", "--dry-run=server", "--validate=strict", "-f", "-",
                            input=yaml.safe_dump(configuration), check=False)
    assert result.returncode != 0 and "componnet" in result.stderr, result.stderr


def test_the_system_overlay_applies_for_real(server: KubeApiServer) -> None:
    """Not a dry run: cluster-1's overlay is created, then applied again without a change (idempotent)."""
    manifests = kustomize_text("deploy/overlays/cluster-1")
    server.apply(manifests)
    again = server.apply(manifests)
    assert all(line.endswith("serverside-applied") for line in again.splitlines()), again
    stored = server.kubectl("-n", "dapr-nr-system", "get", "deployment", "-o", "name").stdout.split()
    assert sorted(stored) == ["deployment.apps/dapr-etcd-dns", "deployment.apps/dapr-etcd-publisher"]
