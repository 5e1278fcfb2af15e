"""From a Kubernetes pod (raw API JSON) to the endpoint record it publishes (README "The publisher").

* selected server-side by the label ``dapr.io/sidecar-injected=true`` (Dapr's injector sets it);
* app id: label ``dapr.io/app-id``, else the annotation of the same name;
* port: the ``daprd`` container's port named ``dapr-internal``, else annotation
  ``dapr.io/internal-grpc-port``, else 50002;
* address: every entry of ``status.podIPs`` (dual-stack pods publish one record per family;
  the first keeps the pod name as its instance, later ones get a ``-v4``/``-v6`` suffix so
  instance names stay unique per address and single-stack records keep their old name),
  else ``status.podIP``; published while the pod is Ready and not terminating;
* addresses the address policy refuses (loopback, link-local, metadata, outside the
  cluster's ``clusterCIDRs`` …) are not published; the reason is logged and counted;
* annotation ``nameresolution.dapr.io/export: "false"`` opts a pod out;
* zone: the node's ``topology.kubernetes.io/zone`` label (empty without node permissions).

Works on raw JSON dicts, not the kubernetes client's models: deserializing models costs
~10× more (see bench/publisher_sync.py), and a malformed pod must never crash the agent — it
is skipped with a reason that is logged and counted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resolver.errors import ValidationError
from resolver.records.addresses import DEFAULT_POLICY, AddressPolicy
from resolver.records.schema import EndpointRecord

SIDECAR_SELECTOR = "dapr.io/sidecar-injected=true"
APP_ID_KEY = "dapr.io/app-id"
PORT_ANNOTATION = "dapr.io/internal-grpc-port"
EXPORT_ANNOTATION = "nameresolution.dapr.io/export"
ZONE_LABEL = "topology.kubernetes.io/zone"
DAPRD_CONTAINER = "daprd"
INTERNAL_PORT_NAME = "dapr-internal"
DEFAULT_INTERNAL_PORT = 50002


@dataclass(frozen=True)
class PodEndpoint:
    """What one pod contributes: a record to publish, or the reason it publishes nothing.

    ``reason`` is empty for a published pod; ``code`` is set only when the pod is skipped for
    bad data (logged as a warning and counted) rather than a normal state such as "not ready".
    """

    namespace: str
    name: str
    node: str
    records: tuple[EndpointRecord, ...]
    reason: str = ""
    code: str = ""  # short, for the skip counter's label; set only for data errors
    refused: tuple[tuple[str, str], ...] = ()  # (address, why) the address policy refused

    @property
    def record(self) -> EndpointRecord | None:
        """The first family's record (the pod's name as instance), if any."""
        return self.records[0] if self.records else None


def refusal_code(why: str) -> str:
    """A short, bounded label for the refused-address counter."""
    if "clusterCIDRs" in why:
        return "outside_cluster_cidrs" if "outside" in why else "hostname_not_allowed"
    return "address_class"


def _pod_addresses(status: Mapping[str, Any]) -> list[str]:
    """``status.podIPs`` in order (dual-stack), else ``[status.podIP]``; duplicates dropped."""
    found: list[str] = []
    entries = status.get("podIPs")
    for entry in entries if isinstance(entries, list) else []:
        ip = entry.get("ip") if isinstance(entry, Mapping) else None
        if isinstance(ip, str) and ip and ip not in found:
            found.append(ip)
    single = status.get("podIP")
    if not found and isinstance(single, str) and single:
        found.append(single)
    return found


def _instance(name: str, position: int, address: str) -> str:
    if position == 0:
        return name
    try:
        family = ipaddress.ip_address(address).version
    except ValueError:
        return f"{name}-{position}"
    return f"{name}-v{family}"


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _ready(status: Mapping[str, Any]) -> bool:
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return False
    return any(isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _internal_port(spec: Mapping[str, Any], annotations: Mapping[str, Any]) -> int | str:
    """The port, or a string saying why it is unusable."""
    containers = spec.get("containers")
    for container in containers if isinstance(containers, list) else []:
        if isinstance(container, Mapping) and container.get("name") == DAPRD_CONTAINER:
            ports = container.get("ports")
            for port in ports if isinstance(ports, list) else []:
                if isinstance(port, Mapping) and port.get("name") == INTERNAL_PORT_NAME:
                    number = port.get("containerPort")
                    return number if isinstance(number, int) and not isinstance(number, bool) else (
                        f"daprd port {INTERNAL_PORT_NAME} is {number!r}")
    annotated = annotations.get(PORT_ANNOTATION)
    if annotated is None:
        return DEFAULT_INTERNAL_PORT
    text = str(annotated).strip()
    return int(text) if text.isdigit() else f"annotation {PORT_ANNOTATION}={annotated!r} is not a port"


def slim_pod(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    """Only what :func:`pod_endpoint` reads: a listed pod is kept until the whole list is in.

    A real API server's pod carries ``managedFields``, the full defaulted spec and every
    container status; 10,000 of them held while a paged list completes took the publisher to
    295 MB RSS (bench/publisher_sync.py against a real kube-apiserver) against 139 MB with the
    fake's small pods. Slimmed on arrival, page by page, the whole pods are never all in memory.
    """
    metadata, spec, status = _dict(pod.get("metadata")), _dict(pod.get("spec")), _dict(pod.get("status"))
    containers = spec.get("containers")
    daprd = [{"name": c.get("name"), "ports": c.get("ports")} for c in (containers if isinstance(containers, list)
                                                                         else []) if isinstance(c, Mapping)
             and c.get("name") == DAPRD_CONTAINER]
    return {"metadata": {k: metadata[k] for k in ("name", "namespace", "labels", "annotations", "deletionTimestamp",
                                                  "resourceVersion") if k in metadata},
            "spec": {"nodeName": spec.get("nodeName"), "containers": daprd},
            "status": {k: status[k] for k in ("podIP", "podIPs", "conditions") if k in status}}


def pod_endpoint(pod: Mapping[str, Any], cluster: str, zones: Mapping[str, str],
                 policy: AddressPolicy = DEFAULT_POLICY) -> PodEndpoint:
    """Evaluate one pod; never raises for bad data (the reason says what was wrong)."""
    metadata = _dict(pod.get("metadata"))
    spec, status = _dict(pod.get("spec")), _dict(pod.get("status"))
    labels, annotations = _dict(metadata.get("labels")), _dict(metadata.get("annotations"))
    namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
    node = str(spec.get("nodeName") or "")

    def skip(reason: str, code: str = "", refused: tuple[tuple[str, str], ...] = ()) -> PodEndpoint:
        return PodEndpoint(namespace, name, node, (), reason, code, refused)

    if str(annotations.get(EXPORT_ANNOTATION, "")).strip().lower() == "false":
        return skip("opted out")
    if metadata.get("deletionTimestamp"):
        return skip("terminating")
    if not _ready(status):
        return skip("not ready")
    addresses = _pod_addresses(status)
    if not addresses:
        return skip("no pod IP", "no_ip")
    app_id = labels.get(APP_ID_KEY) or annotations.get(APP_ID_KEY)
    if not isinstance(app_id, str) or not app_id:
        return skip(f"no {APP_ID_KEY} label or annotation", "no_app_id")
    port = _internal_port(spec, annotations)
    if isinstance(port, str):
        return skip(port, "bad_port")
    records: list[EndpointRecord] = []
    refused: list[tuple[str, str]] = []
    for position, address in enumerate(addresses):
        try:
            record = EndpointRecord(app_id=app_id, namespace=namespace, cluster=cluster,
                                    instance=_instance(name, position, address), address=address, port=port,
                                    node=node, zone=zones.get(node, "")).validate()
        except ValidationError as error:
            if position == 0 or error.field != "address":
                return skip(f"invalid {error.field}: {error.message}", f"invalid_{error.field.lower()}")
            refused.append((address, error.message))
            continue
        why = policy.host_refusal(cluster, address)
        if why is not None:
            refused.append((address, why))
            continue
        records.append(record)
    if not records:
        return skip("address refused by the address policy: " + "; ".join(f"{a}: {w}" for a, w in refused),
                    "", tuple(refused))
    return PodEndpoint(namespace, name, node, tuple(records), refused=tuple(refused))
