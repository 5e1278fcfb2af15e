"""What each cluster's overlay yields, read from ``kubectl kustomize`` output as a cluster would get it.

Every overlay is complete for its cluster: publisher, DNS bridge, the CoreDNS stanza for *its*
bridge and the examples, all carrying the cluster's own name — which is written in one place
(``params/cluster.env``; renaming there renames everywhere, checked on a copy). Read-only roles
never mount the write credential; every Deployment has probes that do not depend on etcd
(not ``/metrics``), resource requests and a PodDisruptionBudget.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from resolver.cli.main import build_parser
from resolver.config import Layer, load_settings
from resolver.config.settings import KEYS, env_layer
from tests.support.manifests import kustomize

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ["cluster-1", "cluster-2"]
PUBLISHER_SECRET, READER_SECRET = "etcd-publisher-tls", "etcd-reader-tls"

Obj = dict[str, Any]


def build(directory: Path) -> list[Obj]:
    return kustomize(directory)


def overlay(cluster: str, part: str = "") -> list[Obj]:
    return build(ROOT / "deploy/overlays" / cluster / part)


def params(cluster: str) -> dict[str, str]:
    lines = (ROOT / f"deploy/overlays/{cluster}/params/cluster.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def deployments(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] == "Deployment"]


def container(deployment: Obj, name: str) -> Obj:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def env(c: Obj) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in c.get("env", [])}


def secrets_mounted(deployment: Obj, c: Obj) -> set[str]:
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"].get("volumes", [])}
    return {volumes[m["name"]]["secret"]["secretName"] for m in c.get("volumeMounts", [])
            if "secret" in volumes.get(m["name"], {})}


def config_file(objects: list[Obj]) -> dict[str, Any]:
    config_map = next(o for o in objects if o["kind"] == "ConfigMap"
                      and o["metadata"]["name"].startswith("dapr-etcd-resolver-config"))
    keys: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])
    return keys


def effective_settings(objects: list[Obj], c: Obj) -> Any:
    """The settings the container ends up with: its --config file, then its DAPR_NR_* environment."""
    file_keys = {k: v for k, v in config_file(objects).items() if not k.startswith("etcdC")}  # no cert files here
    return load_settings([Layer("config.yaml", file_keys), env_layer(env(c))])


def coredns_forward(objects: list[Obj]) -> tuple[str, str]:
    stanza = one(objects, "ConfigMap", "coredns-custom")["data"]["dapr-internal.server"]
    forward = re.search(r"^\s*forward \. (\S+) \{$", stanza, re.MULTILINE)
    assert forward, stanza
    return stanza, forward.group(1)


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_overlay_runs_publisher_and_bridge_under_the_clusters_own_name(cluster: str) -> None:
    objects = overlay(cluster)
    assert params(cluster)["clusterName"] == cluster
    publisher = one(objects, "Deployment", "dapr-etcd-publisher")
    pub = container(publisher, "publisher")
    args = build_parser().parse_args([a.replace("$(CLUSTER_NAME)", env(pub)["CLUSTER_NAME"]) for a in pub["args"]])
    assert args.cluster == cluster and args.leader_elect
    assert publisher["spec"]["replicas"] == 2
    bridge = one(objects, "Deployment", "dapr-etcd-dns")
    dns = container(bridge, "dns")
    dns_args = build_parser().parse_args(dns["args"])
    assert dns_args.zone == "dapr.internal"
    assert effective_settings(objects, dns).cluster_name == cluster  # the caller's clusterName on the DNS path
    for c in (pub, dns):
        settings = effective_settings(objects, c)
        assert settings.etcd.endpoints == effective_settings(overlay(CLUSTERS[0]), c).etcd.endpoints
        assert set(config_file(objects)) <= set(KEYS)
    assert config_file(objects)["failoverOrder"] != cluster  # a policy may name the other cluster, never itself


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_overlay_carries_its_own_coredns_stanza_forwarding_to_its_own_bridge(cluster: str) -> None:
    objects = overlay(cluster)
    stanza, forward_to = coredns_forward(objects)
    service = one(objects, "Service", "dapr-etcd-dns")
    assert forward_to == service["spec"]["clusterIP"] == params(cluster)["bridgeIP"]
    assert ipaddress.ip_address(forward_to)  # CoreDNS's forward takes addresses, not names
    assert stanza.startswith("dapr.internal:53 {") and stanza.count("{") == stanza.count("}")
    assert one(objects, "ConfigMap", "coredns-custom")["metadata"]["namespace"] == "kube-system"
    assert {(p["port"], p["protocol"]) for p in service["spec"]["ports"] if p["port"] == 53} == {(53, "UDP"),
                                                                                               (53, "TCP")}


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_examples_carry_the_clusters_own_name(cluster: str) -> None:
    examples, pluggable = overlay(cluster, "examples"), overlay(cluster, "examples-pluggable")
    for objects, config_name in ((examples, "dapr-etcd-dns"), (pluggable, "dapr-etcd-nr")):
        configuration = one(objects, "Configuration", config_name)
        order = one(objects, "Deployment", "order-service")
        assert env(container(order, "order-service"))["CLUSTER_NAME"] == cluster
        for deployment in deployments(objects):  # the Dapr Configuration lives where the apps do
            annotations = deployment["spec"]["template"]["metadata"]["annotations"]
            assert annotations["dapr.io/config"] == config_name
            assert deployment["metadata"]["namespace"] == configuration["metadata"]["namespace"]
        callers = [d for d in deployments(objects) if d["metadata"]["name"] == "caller"]
        if cluster == "cluster-1":  # the caller runs in one cluster; the order service in both
            assert env(container(callers[0], "caller"))["CLUSTER_NAME"] == cluster
        else:
            assert not callers
    dns_config = one(examples, "Configuration", "dapr-etcd-dns")["spec"]["nameResolution"]
    assert dns_config == {"component": "kubernetes", "version": "v1",
                          "configuration": {"template": "{{.ID}}.{{.Namespace}}.dapr.internal.:{{.Port}}"}}
    resolution = one(pluggable, "Configuration", "dapr-etcd-nr")["spec"]["nameResolution"]
    keys = {k: v for k, v in resolution["configuration"].items() if not k.startswith("etcdC")}
    settings = load_settings([Layer("Configuration", keys, from_init=True)])  # what Init would get
    assert settings.cluster_name == cluster
    assert settings.etcd.endpoints == effective_settings(overlay(cluster), container(
        one(overlay(cluster), "Deployment", "dapr-etcd-dns"), "dns")).etcd.endpoints


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_pluggable_example_runs_the_component_next_to_daprd(cluster: str) -> None:
    for deployment in deployments(overlay(cluster, "examples-pluggable")):
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        resolver = container(deployment, annotations["dapr.io/pluggable-components"])
        assert build_parser().parse_args(resolver["args"]).command == "serve"
        assert template["spec"]["securityContext"]["runAsUser"] == 65532  # daprd's UID: the socket is 0660
        socket_dir = annotations["dapr.io/pluggable-components-sockets-folder"]
        for probe in (resolver["livenessProbe"], resolver["readinessProbe"]):
            assert f"{socket_dir}/etcd.sock" in " ".join(probe["exec"]["command"])
        liveness = " ".join(resolver["livenessProbe"]["exec"]["command"])
        assert "probe" not in liveness.split()  # liveness: the socket answers, not the registry's health
        readiness = resolver["readinessProbe"]["exec"]["command"]
        assert readiness[0] == "dapr-etcd-resolver" and build_parser().parse_args(readiness[1:]).readiness


def all_builds() -> list[tuple[str, list[Obj]]]:
    return [(f"{cluster}/{part}", overlay(cluster, part)) for cluster in CLUSTERS
            for part in ("", "examples", "examples-pluggable")]


def test_no_read_only_role_mounts_a_write_credential() -> None:
    roles: dict[str, set[str]] = {}
    for where, objects in all_builds():
        for deployment in deployments(objects):
            for c in deployment["spec"]["template"]["spec"]["containers"]:
                command = c.get("args", [""])[0] if c.get("args") else ""
                if command in ("dns", "serve"):
                    roles.setdefault(command, set()).update(secrets_mounted(deployment, c))
                    assert PUBLISHER_SECRET not in secrets_mounted(deployment, c), f"{where}: {c['name']}"
                elif command == "publish":
                    roles.setdefault(command, set()).update(secrets_mounted(deployment, c))
                else:  # the apps themselves hold no etcd credential at all
                    assert not secrets_mounted(deployment, c) & {PUBLISHER_SECRET, READER_SECRET}
    assert roles == {"publish": {PUBLISHER_SECRET}, "dns": {READER_SECRET}, "serve": {READER_SECRET}}


def matches(selector: Obj, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_every_deployment_has_probes_that_survive_outages_requests_and_a_pdb(cluster: str) -> None:
    objects = overlay(cluster)
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    for deployment in deployments(objects):
        name = deployment["metadata"]["name"]
        spec = deployment["spec"]["template"]["spec"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        for c in spec["containers"]:
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name  # the process answers
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", name  # first sync done
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            assert "memory" in c["resources"]["limits"], name
            assert "--metrics-port=9090" in c["args"]  # the probe paths are served on that port
        pdb = [b for b in budgets if matches(b["spec"]["selector"], labels)]
        assert len(pdb) == 1 and pdb[0]["spec"].get("minAvailable") == 1, name
        assert deployment["spec"]["replicas"] >= 2, name  # a PDB of minAvailable 1 needs a second replica
        anti = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
        assert matches(anti["podAffinityTerm"]["labelSelector"], labels), name
    bridge = container(one(objects, "Deployment", "dapr-etcd-dns"), "dns")
    pre_stop = bridge["lifecycle"]["preStop"]["exec"]["command"]
    grace = one(objects, "Deployment", "dapr-etcd-dns")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert pre_stop[0] == "sleep" and 0 < int(pre_stop[1]) < grace


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_examples_have_requests_and_probes(cluster: str) -> None:
    for objects in (overlay(cluster, "examples"), overlay(cluster, "examples-pluggable")):
        for deployment in deployments(objects):
            for c in deployment["spec"]["template"]["spec"]["containers"]:
                assert {"cpu", "memory"} <= set(c["resources"]["requests"])
                if c.get("ports") or c.get("args", [""])[0] == "serve":
                    assert c["livenessProbe"] and c["readinessProbe"]
                    assert "/metrics" not in yaml.safe_dump([c["livenessProbe"], c["readinessProbe"]])


def strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    if isinstance(value, str):  # ConfigMap files: their comments are prose, not settings
        return [line for line in value.splitlines() if not line.lstrip().startswith("#")]
    return []


def test_the_cluster_name_and_bridge_ip_are_each_written_in_one_place(tmp_path: Path) -> None:
    """Rename cluster-1 and move its bridge in params/cluster.env only: every build follows."""
    copy = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", copy)
    env_file = copy / "overlays/cluster-1/params/cluster.env"
    env_file.write_text(env_file.read_text().replace("clusterName=cluster-1", "clusterName=zeta-9")
                        .replace(f"bridgeIP={params('cluster-1')['bridgeIP']}", "bridgeIP=172.20.9.9"))
    system = build(copy / "overlays/cluster-1")
    examples = build(copy / "overlays/cluster-1/examples")
    pluggable = build(copy / "overlays/cluster-1/examples-pluggable")
    for objects in (system, examples, pluggable):
        leftovers = [s for o in objects for s in strings(o) if "cluster-1" in s]
        assert not leftovers, leftovers
    assert sum("zeta-9" in s for o in system for s in strings(o)) >= 2  # publisher --cluster, bridge clusterName
    assert one(pluggable, "Configuration", "dapr-etcd-nr")["spec"]["nameResolution"]["configuration"][
        "clusterName"] == "zeta-9"
    assert env(container(one(examples, "Deployment", "caller"), "caller"))["CLUSTER_NAME"] == "zeta-9"
    assert coredns_forward(system)[1] == one(system, "Service", "dapr-etcd-dns")["spec"]["clusterIP"] == "172.20.9.9"
    assert not [o for o in system if o["metadata"]["name"] == "cluster-params"]  # local-config: never applied
