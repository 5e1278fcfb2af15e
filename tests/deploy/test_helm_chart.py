"""The Helm chart ``charts/dapr-etcd-resolver`` and the kustomize kit under ``deploy/`` stay one install.

Both ship: kustomize for those who keep manifests in Git, Helm for those who install releases.
Rather than generate one from the other, this module keeps them from drifting: for cluster-1 and
cluster-2, ``helm template`` with ``charts/dapr-etcd-resolver/examples/cluster-N.yaml`` and
``kubectl kustomize deploy/overlays/cluster-N`` must yield the same objects with the same
content, and the chart's options must yield exactly the kit's separate kits (``deploy/monitoring``,
``deploy/etcd-proxy``; ``deploy/consul``, which the overlay lists). Only what legitimately differs
is normalised, and every rule is one of the four constants below, applied by :func:`normalise`
(Helm's own labels, the generated ConfigMaps' hash suffix, the config file's comments; the
Namespace, which Helm creates with ``--create-namespace``). Anything else that differs fails
naming the object and the field.

The chart's ``values.schema.json`` must refuse bad values in ``helm template`` and ``helm lint``
alike, naming the field; its one cross-value rule (a template ``fail``) is refused by ``helm
template``/``install`` and only logged by ``helm lint``, which renders in lint mode. Helm is the
real v4, built by ``scripts/build-peers.sh``.
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from resolver.cli.main import build_parser
from resolver.config import Layer, load_settings
from tests.support.manifests import kustomize
from tests.support.peers import peer

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/dapr-etcd-resolver"
CLUSTERS = ["cluster-1", "cluster-2"]
NAMESPACE, RELEASE = "dapr-nr-system", "dapr-etcd-resolver"

Obj = dict[str, Any]
Key = tuple[str, str, str]  # (kind, namespace, name), the name normalised

# --- the normalisation: everything the comparison forgives, and why ------------------------------
HELM_LABELS = frozenset({"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance"})
"""Labels Helm conventionally adds to every object's metadata (never to selectors or pod templates)."""
GENERATED = re.compile(r"^(dapr-etcd-resolver-config|etcd-grpc-proxy)-[a-z0-9]{10}$")
"""Generated ConfigMaps carry a hash of their content in their name, in both (kustomize's hash, the chart's sha256)."""
PARSED_FILES = {"config.yaml"}
"""ConfigMap keys holding YAML files, compared parsed: the kit's file has comments, the chart's cannot."""
ONLY_IN_KIT = {("Namespace", "", NAMESPACE)}
"""The kit creates its namespace; a Helm release lives in one (``helm install --create-namespace``)."""


def example(cluster: str) -> Path:
    return CHART / "examples" / f"{cluster}.yaml"


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(peer("helm")), *args], capture_output=True, text=True, check=False, timeout=60)


def render_chart(values_file: Path, sets: Sequence[str] = ()) -> str:
    """``helm template`` of the chart as release ``dapr-etcd-resolver`` in ``dapr-nr-system``: YAML text.

    What ``helm install -n dapr-nr-system -f values_file`` would apply (``sets``: ``--set`` items).
    """
    rendered = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(values_file),
                    *[arg for item in sets for arg in ("--set", item)])
    assert rendered.returncode == 0, f"helm template -f {values_file} {' '.join(sets)}:\n{rendered.stderr}"
    return rendered.stdout


@functools.cache
def chart(values_file: Path, sets: tuple[str, ...] = ()) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(render_chart(values_file, sets)) if doc]


@functools.cache
def kit(directory: str) -> list[Obj]:
    """``kubectl kustomize`` of a kit directory, as tests/deploy/test_deploy_overlays.py builds it."""
    return kustomize(directory)


def unhashed(name: str) -> str:
    match = GENERATED.match(name)
    return match.group(1) if match else name


def normalise(obj: Obj) -> Obj:
    """A copy of ``obj`` without what legitimately differs between the chart and the kit (rules above)."""
    obj = copy.deepcopy(obj)
    metadata = obj["metadata"]
    labels = {k: v for k, v in metadata.get("labels", {}).items() if k not in HELM_LABELS}
    metadata.pop("labels", None)
    if labels:
        metadata["labels"] = labels
    if obj["kind"] == "ConfigMap":
        metadata["name"] = unhashed(metadata["name"])
        for key in PARSED_FILES & set(obj.get("data", {})):
            obj["data"][key] = yaml.safe_load(obj["data"][key])
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            volume["configMap"]["name"] = unhashed(volume["configMap"]["name"])
    for container in pod.get("containers", []):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                source["configMapRef"]["name"] = unhashed(source["configMapRef"]["name"])
    return obj


def key(obj: Obj) -> Key:
    name = obj["metadata"]["name"]
    return obj["kind"], obj["metadata"].get("namespace", ""), unhashed(name) if obj["kind"] == "ConfigMap" else name


def by_key(objects: list[Obj]) -> dict[Key, Obj]:
    keyed = {key(o): o for o in objects}
    assert len(keyed) == len(objects), f"duplicate objects: {sorted(keyed)}"
    return keyed


def shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "…"


def differences(kit_value: Any, chart_value: Any, path: str = "") -> list[str]:
    """Every field where the two differ, as ``path: kit … != chart …`` (mappings by key, lists by index)."""
    if isinstance(kit_value, dict) and isinstance(chart_value, dict):
        found = []
        for name in sorted(set(kit_value) | set(chart_value), key=str):
            where = f"{path}.{name}" if path else str(name)
            if name not in chart_value:
                found.append(f"{where}: only in the kit: {shown(kit_value[name])}")
            elif name not in kit_value:
                found.append(f"{where}: only in the chart: {shown(chart_value[name])}")
            else:
                found += differences(kit_value[name], chart_value[name], where)
        return found
    if isinstance(kit_value, list) and isinstance(chart_value, list) and len(kit_value) == len(chart_value):
        return [d for i, (a, b) in enumerate(zip(kit_value, chart_value, strict=True))
                for d in differences(a, b, f"{path}[{i}]")]
    return [] if kit_value == chart_value else [f"{path}: kit {shown(kit_value)} != chart {shown(chart_value)}"]


def drift(kit_objects: dict[Key, Obj], chart_objects: dict[Key, Obj]) -> list[str]:
    """Objects only on one side, then each common object's differing fields, named ``Kind ns/name: field``."""
    found = [f"{named(k)}: only in the kit" for k in sorted(kit_objects.keys() - chart_objects.keys())]
    found += [f"{named(k)}: only in the chart" for k in sorted(chart_objects.keys() - kit_objects.keys())]
    for k in sorted(kit_objects.keys() & chart_objects.keys()):
        found += [f"{named(k)}: {d}" for d in differences(normalise(kit_objects[k]), normalise(chart_objects[k]))]
    return found


def named(k: Key) -> str:
    return f"{k[0]} {k[1]}/{k[2]}" if k[1] else f"{k[0]} {k[2]}"


# --- the chart itself --------------------------------------------------------------------------------

def test_chart_version_follows_the_package_and_runs_the_kits_image() -> None:
    """A release bumps pyproject.toml, the kit's image tag and the chart together, or this fails."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (meta["apiVersion"], meta["version"], meta["appVersion"]) == ("v2", version, version)
    images = yaml.safe_load((ROOT / "deploy/base/kustomization.yaml").read_text())["images"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert [(i["newName"], i["newTag"]) for i in images] == [(values["image"]["repository"], meta["appVersion"])]
    assert yaml.safe_load((ROOT / "deploy/consul/kustomization.yaml").read_text())["images"] == images


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_helm_lint_strict_passes_with_each_clusters_values(cluster: str) -> None:
    """The examples are what users copy: they must pass the strictest lint (warnings are failures)."""
    linted = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, "-f", str(example(cluster)))
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout


DELETE = object()
CROSS_VALUE = {("config", "failoverOrder")}
"""Rules across values (the schema sees one value at a time): templates/_helpers.tpl "validate", a `fail`."""
BAD_VALUES: list[tuple[str, tuple[str, ...], object, str]] = [
    # (id, path in the values, the bad value or DELETE, what the message must name)
    ("missing-clusterName", ("clusterName",), DELETE, "/clusterName"),
    ("clusterName-not-a-label", ("clusterName",), "Cluster_1", "/clusterName"),
    ("clusterName-too-long", ("clusterName",), "c" * 64, "/clusterName"),
    ("empty-endpoints", ("etcd", "endpoints"), [], "/etcd/endpoints"),
    ("endpoint-without-port", ("etcd", "endpoints"), ["https://etcd.example.internal"], "/etcd/endpoints/0"),
    ("publisher-replicas-0", ("publisher", "replicas"), 0, "/publisher/replicas"),
    ("bridge-replicas-0", ("dnsBridge", "replicas"), 0, "/dnsBridge/replicas"),
    ("typo-nested-key", ("dnsBridge", "serviceIp"), "10.96.0.53", "'serviceIp' not allowed"),
    ("typo-top-level-key", ("clustername",), "cluster-1", "'clustername' not allowed"),
    ("serviceIP-not-an-IP", ("dnsBridge", "serviceIP"), "10.96.0", "/dnsBridge/serviceIP"),
    ("serviceIP-a-name", ("dnsBridge", "serviceIP"), "dns.example", "/dnsBridge/serviceIP"),
    ("unknown-policy", ("config", "policy"), "Nearest", "/config/policy"),
    ("failover-to-itself", ("config", "failoverOrder"), ["cluster-2", "cluster-1"], "config.failoverOrder"),
    ("consul-replicas-0", ("consul", "replicas"), 0, "/consul/replicas"),
]


@pytest.mark.parametrize(("path", "value", "named"), [case[1:] for case in BAD_VALUES],
                         ids=[case[0] for case in BAD_VALUES])
def test_bad_values_are_refused_naming_the_field(tmp_path: Path, path: tuple[str, ...], value: object,
                                                 named: str) -> None:
    """A bad value fails before anything reaches a cluster, and the message says which value to fix."""
    values = yaml.safe_load(example("cluster-1").read_text())
    parent = values
    for part in path[:-1]:
        parent = parent.setdefault(part, {})
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    bad = tmp_path / "values.yaml"
    bad.write_text(yaml.safe_dump(values))
    rendered = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(bad))
    linted = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, "-f", str(bad))
    for command, result in (("template", rendered), ("lint", linted)):
        if command == "lint" and path in CROSS_VALUE:  # lint renders in lint mode: `fail` logs, it does not fail
            assert named in result.stderr, f"helm lint does not even mention it: {result.stdout + result.stderr}"
            continue
        assert result.returncode != 0, f"helm {command} accepted {path}={value!r}:\n{result.stdout[:500]}"
        assert named in result.stdout + result.stderr, f"helm {command}: {result.stdout + result.stderr}"


# --- the drift test ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cluster", CLUSTERS)
def test_chart_renders_exactly_the_overlays_objects(cluster: str) -> None:
    """The one contract: same objects, same content, for each cluster's example values and overlay."""
    kit_objects = {k: o for k, o in by_key(kit(f"deploy/overlays/{cluster}")).items() if k not in ONLY_IN_KIT}
    chart_objects = by_key(chart(example(cluster)))
    assert ("Deployment", NAMESPACE, "dapr-etcd-publisher") in chart_objects  # the comparison compares something
    assert len(kit_objects) >= 11, sorted(kit_objects)
    problems = drift(kit_objects, chart_objects)
    assert not problems, f"{cluster}: the chart and deploy/overlays/{cluster} differ:\n" + "\n".join(problems)


OPTIONS = [("monitoring", "deploy/monitoring", ("monitoring.enabled=true",)),
           ("etcd-proxy", "deploy/etcd-proxy", ("etcdProxy.enabled=true",)),
           ("consul", "deploy/consul", ("consul.enabled=true",))]
LISTED = {"deploy/consul"}
"""Kits the overlay lists (their placeholders are the cluster's params), rather than applied on their own."""


def listed_in_overlay(directory: str, tmp_path: Path) -> dict[Key, Obj]:
    """What listing ``directory`` in cluster-1's overlay adds to it (as its kustomization says to): on a copy."""
    copy = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", copy)
    overlay = copy / "overlays/cluster-1/kustomization.yaml"
    resource = "../../" + directory.removeprefix("deploy/")
    overlay.write_text(overlay.read_text().replace("  - ../../coredns\n", f"  - ../../coredns\n  - {resource}\n"))
    plain = by_key(kit("deploy/overlays/cluster-1"))
    return {k: o for k, o in by_key(kustomize(copy / "overlays/cluster-1")).items() if k not in plain}


@pytest.mark.parametrize(("directory", "sets"), [o[1:] for o in OPTIONS], ids=[o[0] for o in OPTIONS])
def test_each_option_adds_exactly_the_kits_separate_kit(directory: str, sets: tuple[str, ...], tmp_path: Path) -> None:
    """Each option renders what ``kubectl apply -k deploy/…`` applies (or listing it adds), nothing else."""
    plain = by_key(chart(example("cluster-1")))
    with_option = by_key(chart(example("cluster-1"), sets))
    added = {k: o for k, o in with_option.items() if k not in plain}
    assert added, f"{sets} added nothing"
    kit_objects = listed_in_overlay(directory, tmp_path) if directory in LISTED else by_key(kit(directory))
    problems = drift(kit_objects, added)
    assert not problems, f"the chart with {sets} and {directory} differ:\n" + "\n".join(problems)


def test_the_consul_role_reads_under_the_clusters_name_and_daprd_finds_its_service(tmp_path: Path) -> None:
    """deploy/consul in the overlay: cluster-1's name and policy, read-only, no registrations; the example dials it."""
    added = listed_in_overlay("deploy/consul", tmp_path)
    pod = added[("Deployment", NAMESPACE, "dapr-etcd-consul")]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = build_parser().parse_args(container["args"])
    assert args.command == "consul" and not args.write_token_file  # the publisher registers the pods
    assert env_of(list(added.values()), "dapr-etcd-consul")["DAPR_NR_CLUSTER_NAME"] == "cluster-1"
    assert [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v] == ["etcd-reader-tls"]
    assert GENERATED.match(next(v for v in pod["volumes"] if "configMap" in v)["configMap"]["name"])  # the overlay's
    service = added[("Service", NAMESPACE, "dapr-etcd-consul")]["spec"]["ports"]
    port = next(p["port"] for p in service if p["name"] == "http")
    configuration = yaml.safe_load((ROOT / "deploy/examples/consul/configuration.yaml").read_text())
    address = configuration["spec"]["nameResolution"]["configuration"]["client"]["address"]
    assert address == f"dapr-etcd-consul.{NAMESPACE}.svc.cluster.local:{port}" and args.listen.endswith(f":{port}")


def env_of(objects: list[Obj], deployment: str) -> dict[str, str]:
    found = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment)
    return {e["name"]: e.get("value", "") for e in found["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_proxy_serves_the_bridge_and_never_the_publisher() -> None:
    """As deploy/etcd-proxy says to do by hand: readers through the proxy, the writer straight to etcd."""
    objects = chart(example("cluster-1"), ("etcdProxy.enabled=true",))
    assert env_of(objects, "dapr-etcd-dns")["DAPR_NR_ETCD_ENDPOINTS"] == f"https://etcd-grpc-proxy.{NAMESPACE}.svc:2379"
    assert env_of(objects, "dapr-etcd-publisher")["DAPR_NR_ETCD_ENDPOINTS"] == "https://etcd.example.internal:2379"
    direct = chart(example("cluster-1"), ("etcdProxy.enabled=true", "etcdProxy.dnsBridgeThroughProxy=false"))
    assert env_of(direct, "dapr-etcd-dns")["DAPR_NR_ETCD_ENDPOINTS"] == "https://etcd.example.internal:2379"


def test_the_coredns_stanza_can_be_left_to_server_side_apply() -> None:
    """Helm cannot adopt an existing coredns-custom (AKS): coreDNS.enabled=false leaves out that one object."""
    plain = set(by_key(chart(example("cluster-1"))))
    without = set(by_key(chart(example("cluster-1"), ("coreDNS.enabled=false",))))
    assert plain - without == {("ConfigMap", "kube-system", "coredns-custom")}
    assert without < plain


def test_a_policy_change_is_a_new_config_map_that_both_roles_mount() -> None:
    """As with kustomize's generator: the name follows the content, so changing the policy rolls the pods."""
    names = {}
    for cluster in CLUSTERS:
        objects = chart(example(cluster))
        config_maps = [o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"
                       and unhashed(o["metadata"]["name"]) == "dapr-etcd-resolver-config"]
        assert len(config_maps) == 1 and GENERATED.match(config_maps[0]), config_maps
        for deployment in ("dapr-etcd-publisher", "dapr-etcd-dns"):
            found = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment)
            volumes = {v["name"]: v for v in found["spec"]["template"]["spec"]["volumes"]}
            assert volumes["config"]["configMap"]["name"] == config_maps[0], deployment
        names[cluster] = config_maps[0]
    assert names["cluster-1"] != names["cluster-2"]  # failoverOrder differs, so the content and the name do


def test_one_replica_renders_no_disruption_budget_that_would_block_drains() -> None:
    """replicas >= 1 is allowed; a minAvailable-1 budget over one pod would stop every node drain."""
    objects = chart(example("cluster-1"), ("publisher.replicas=1", "dnsBridge.replicas=1"))
    assert not [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert {o["spec"]["replicas"] for o in objects if o["kind"] == "Deployment"} == {1}


EVERYTHING = {
    "image": {"tag": "0.2.0-custom", "pullPolicy": "Always"}, "imagePullSecrets": [{"name": "registry-login"}],
    "config": {"policy": "ActiveActive", "clusterWeights": {"cluster-1": 100, "cluster-2": 0},
               "policies": {"shop/orders": {"policy": "Locality", "failoverOrder": ["cluster-2"]}},
               "clusterCIDRs": ["cluster-1=10.1.0.0/16", "cluster-2=hostnames"], "staleAfter": "1h",
               "dnsTTL": "2s", "prefix": "/dapr/nr/v1", "etcdTimeout": "3s", "fallback": "none",
               "template": "{id}.{namespace}.svc:{port}", "clusterDomain": "cluster.example"},
    "publisher": {"nodeSelector": {"pool": "system"}, "priorityClassName": "system-cluster-critical",
                  "tolerations": [{"key": "system", "operator": "Exists", "effect": "NoSchedule"}]},
    "dnsBridge": {"serviceIP": "fd00:10:96::53", "nodeSelector": {"pool": "system"}},
    "monitoring": {"enabled": True, "labels": {"release": "prometheus"}},
    "etcdProxy": {"enabled": True, "endpoints": ["etcd-0.example.internal:2379", "etcd-1.example.internal:2379"]},
    "consul": {"enabled": True, "replicas": 3, "tolerations": [{"key": "system", "operator": "Exists"}]},
}


def test_every_value_renders_valid_objects_and_a_config_the_resolver_loads(tmp_path: Path) -> None:
    """The branches the drift test does not take (default-off values) still render valid Kubernetes objects."""
    values = yaml.safe_load(example("cluster-1").read_text())
    for section, settings in EVERYTHING.items():
        values[section] = {**values.get(section, {}), **settings} if isinstance(settings, dict) else settings
    path = tmp_path / "everything.yaml"
    path.write_text(yaml.safe_dump(values))
    objects = chart(path)
    for obj in objects:
        if not obj["apiVersion"].startswith("monitoring.coreos.com/"):  # CRDs: compared with the kit above
            kubernetes_validate.validate(obj, "1.32", strict=True)
    config = next(o for o in objects if o["kind"] == "ConfigMap" and "config.yaml" in o.get("data", {}))
    keys = {k: v for k, v in yaml.safe_load(config["data"]["config.yaml"]).items() if not k.startswith("etcdC")}
    assert set(keys) == {*EVERYTHING["config"], "failoverOrder"}  # every config value reaches the file
    loaded = load_settings([Layer("config.yaml", keys)])  # and the resolver accepts each of them
    assert loaded.cluster_weights == {"cluster-1": 100, "cluster-2": 0} and loaded.fallback == "none"
    proxy = next(o for o in objects if o["kind"] == "ConfigMap" and "ETCD_ENDPOINTS" in o.get("data", {}))
    assert proxy["data"]["ETCD_ENDPOINTS"] == "etcd-0.example.internal:2379,etcd-1.example.internal:2379"
    monitor = next(o for o in objects if o["kind"] == "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


def test_the_comparison_forgives_only_its_rules_and_names_what_differs() -> None:
    """The normalisation is small: Helm labels and hash suffixes pass, any other change is reported by path."""
    kit_objects = {k: o for k, o in by_key(kit("deploy/overlays/cluster-1")).items() if k not in ONLY_IN_KIT}
    chart_objects = copy.deepcopy(by_key(chart(example("cluster-1"))))
    bridge = chart_objects[("Deployment", NAMESPACE, "dapr-etcd-dns")]
    bridge["metadata"]["labels"]["helm.sh/chart"] = "anything-9.9.9"  # forgiven: Helm's own
    bridge["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSeconds"] = 6
    bridge["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] = RELEASE  # not on templates
    config_key = ("ConfigMap", NAMESPACE, "dapr-etcd-resolver-config")
    chart_objects[config_key]["metadata"]["name"] = "dapr-etcd-resolver-config-0000000000"  # forgiven: a hash
    chart_objects[config_key]["data"]["config.yaml"] += "staleAfter: 5m\n"
    del chart_objects[("Service", NAMESPACE, "dapr-etcd-publisher-metrics")]
    assert sorted(drift(kit_objects, chart_objects)) == sorted([
        f"Service {NAMESPACE}/dapr-etcd-publisher-metrics: only in the kit",
        f"Deployment {NAMESPACE}/dapr-etcd-dns: spec.template.metadata.labels.app.kubernetes.io/instance: "
        f"only in the chart: '{RELEASE}'",
        f"Deployment {NAMESPACE}/dapr-etcd-dns: spec.template.spec.containers[0].readinessProbe.periodSeconds: "
        "kit 5 != chart 6",
        f"ConfigMap {NAMESPACE}/dapr-etcd-resolver-config: data.config.yaml.staleAfter: only in the chart: '5m'",
    ])
