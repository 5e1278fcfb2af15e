"""The kubelet's part, played against a real API server: pods with a Dapr sidecar, their status, their end.

No kubelet runs in the test topology, so the test does what one would: create the pod as Dapr's
injector leaves it (the sidecar label, the app-id label, a ``daprd`` container), then write
``status.podIP``/``podIPs``, the phase and the Ready condition through the ``status``
subresource. A pod bound to a node (``spec.nodeName``) deleted with a grace period is only
*marked* by the server (``deletionTimestamp``); :meth:`Kubelet.finish_deletion` removes it with
grace 0 as the kubelet does once the containers have stopped.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client as k8s

DAPRD_IMAGE = "daprio/daprd:1.18.2"


def pod_manifest(name: str, app_id: str | None = "orders", port: int | None = None, node: str = "node-1",
                 annotations: dict[str, str] | None = None, sidecar: bool = True) -> dict[str, Any]:
    labels = {"dapr.io/sidecar-injected": "true"} if sidecar else {}
    if app_id is not None:
        labels["dapr.io/app-id"] = app_id
    daprd: dict[str, Any] = {"name": "daprd", "image": DAPRD_IMAGE, "ports": [
        {"name": "dapr-http", "containerPort": 3500}, {"name": "dapr-grpc", "containerPort": 50001}]}
    if port is not None:
        daprd["ports"].append({"name": "dapr-internal", "containerPort": port})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels, "annotations": annotations or {}},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.example/app:1"}, daprd]}}


def running_status(ips: list[str], ready: bool = True) -> dict[str, Any]:
    """A strategic-merge patch of the status: ``podIPs`` is *replaced* (a plain list would be merged
    by IP with the old one, and the server refuses two IPs of one family: a new IP needs this)."""
    return {"status": {"phase": "Running", "podIP": ips[0],
                       "podIPs": [{"$patch": "replace"}, *({"ip": ip} for ip in ips)],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


class Kubelet:
    def __init__(self, core: k8s.CoreV1Api, namespace: str = "default") -> None:
        self.core = core
        self.namespace = namespace
        self.namespaces = {namespace}  # every namespace a pod was made in: delete_all empties them

    def run_pod(self, name: str, ip: str | list[str], *, ready: bool = True, namespace: str | None = None,
                **manifest: Any) -> None:
        """Create the pod and report it running at ``ip`` (one IP or one per family)."""
        namespace = namespace or self.namespace
        self.namespaces.add(namespace)
        body: Any = pod_manifest(name, **manifest)  # the client sends dicts as they are
        self.core.create_namespaced_pod(namespace, body)
        self.set_status(name, ip, ready=ready, namespace=namespace)

    def set_status(self, name: str, ip: str | list[str], *, ready: bool = True, namespace: str | None = None) -> None:
        ips = [ip] if isinstance(ip, str) else ip
        self.core.patch_namespaced_pod_status(name, namespace or self.namespace, running_status(ips, ready))

    def run_pods(self, pods: list[tuple[str, str]], workers: int = 8, **manifest: Any) -> None:
        """Many pods at once (``(name, ip)`` pairs), several in flight as a busy cluster's kubelets would."""
        with ThreadPoolExecutor(workers) as pool:
            for done in [pool.submit(self.run_pod, name, ip, **manifest) for name, ip in pods]:
                done.result()

    def delete(self, name: str, grace_seconds: int = 30, namespace: str | None = None) -> None:
        self.core.delete_namespaced_pod(name, namespace or self.namespace, grace_period_seconds=grace_seconds)

    def finish_deletion(self, name: str, namespace: str | None = None) -> None:
        self.core.delete_namespaced_pod(name, namespace or self.namespace, grace_period_seconds=0)

    def annotate(self, name: str, annotations: dict[str, str | None], namespace: str | None = None) -> None:
        self.core.patch_namespaced_pod(name, namespace or self.namespace, {"metadata": {"annotations": annotations}})

    def label_node(self, name: str, zone: str) -> None:
        body: Any = {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                      "topology.kubernetes.io/zone": zone}}}
        try:
            self.core.create_node(body)
        except k8s.ApiException as error:
            if error.status != 409:
                raise
            self.core.patch_node(name, body)

    def delete_all(self, namespaces: list[str]) -> None:
        for namespace in namespaces:
            self.core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
