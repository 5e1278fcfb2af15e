"""Run a Deployment's container, as read back from a real API server, as a local process.

No kubelet runs in the tests, so this does its part for our own image: the container's
``args`` (with ``$(VAR)`` references expanded from its ``env``, as the kubelet expands them),
its ``env`` (literal values and ``fieldRef: metadata.name``), and its ConfigMap and Secret
volumes written to a directory per mount. What cannot be the same on a test machine is
rewritten, and only that — each rewrite is a parameter, so a test names what it changed:

* mount paths (``/etc/...``) become the directories the volumes were written to, in the
  arguments and in the files of the mounted volumes (our config.yaml names the TLS files);
* ``env_overrides``: values an overlay leaves to the platform team (the etcd endpoints);
* ``port_overrides``: container ports (``--metrics-port=9090``), so replicas can share loopback;
* the in-cluster service-account token: ``--kubeconfig`` holding a bound token of the same
  ServiceAccount (the kubernetes client reads the in-cluster token from a fixed path).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from resolver.demo.processes import CliProcess

_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass
class Container:
    args: list[str]
    env: dict[str, str]
    readiness_path: str
    readiness_port: int


def _materialize(core: k8s.CoreV1Api, namespace: str, volume: dict[str, Any], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if "configMap" in volume:
        data = core.read_namespaced_config_map(volume["configMap"]["name"], namespace).data or {}
        for name, text in data.items():
            (target / name).write_text(text)
    elif "secret" in volume:
        secret = core.read_namespaced_secret(volume["secret"]["secretName"], namespace).data or {}
        for name, encoded in secret.items():
            (target / name).write_bytes(base64.b64decode(encoded))
    else:
        raise AssertionError(f"volume {volume['name']}: only configMap and secret volumes are played here")


def container_of(core: k8s.CoreV1Api, deployment: dict[str, Any], root: Path, pod_name: str,
                 env_overrides: dict[str, str], port_overrides: dict[int, int]) -> Container:
    """The first container of ``deployment`` (as the API server returned it), made runnable under ``root``."""
    namespace = deployment["metadata"]["namespace"]
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    mounts: dict[str, Path] = {}
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        directory = root / pod_name / mount["name"]
        _materialize(core, namespace, volumes[mount["name"]], directory)
        mounts[mount["mountPath"]] = directory
    env: dict[str, str] = {}
    for variable in container.get("env") or []:
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        elif variable.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[variable["name"]] = pod_name
        else:
            raise AssertionError(f"env {variable['name']}: only values and metadata.name are played here")
    env.update(env_overrides)

    def local(text: str) -> str:
        for mount_path, directory in mounts.items():
            text = text.replace(mount_path, str(directory))
        return text

    for directory in mounts.values():
        for file in directory.iterdir():
            if file.suffix in (".yaml", ".yml"):
                file.write_text(local(file.read_text()))
    ports = {p["name"]: p["containerPort"] for p in container.get("ports") or []}
    args = [local(_REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), arg)) for arg in container["args"]]
    for old, new in port_overrides.items():
        args = [arg.replace(f"={old}", f"={new}") if arg.endswith(f"={old}") else arg for arg in args]
    probe = container["readinessProbe"]["httpGet"]
    port = probe["port"] if isinstance(probe["port"], int) else ports[probe["port"]]
    return Container(args, env, probe["path"], port_overrides.get(port, port))


def start(container: Container, kubeconfig: Path, log_path: Path) -> CliProcess:
    return CliProcess([*container.args, f"--kubeconfig={kubeconfig}"], log_path, env=container.env)
