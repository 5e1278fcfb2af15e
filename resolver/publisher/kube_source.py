"""Pods with a Dapr sidecar, listed and watched through the real kubernetes client.

Each loop is a reflector in the style of client-go and kopf: **list** (paged, raw JSON),
then **watch** from the list's ``resourceVersion`` with bookmarks; when a watch ends or its
stream drops, watch again from the last version seen (bookmarks keep it fresh); when the API
server answers ``410 Gone`` (that version has left its window), **re-list** — and the
re-list reconciles: records this cluster has in etcd that the list lacks are deleted.

Pods are read as raw JSON (``_preload_content=False``): building the client's models is the
bottleneck on big lists (see bench/publisher_sync.py). Nodes are watched the same way for
their zone label; without permission to read nodes, zones stay empty and pods still publish.

A watch whose connection goes silent (half-open TCP after a partition: no data, no FIN) is
noticed by a read timeout just above the API server's bookmark interval
(:data:`WATCH_SILENCE_SECONDS`; the server sends a bookmark about once a minute to watchers
that asked for them), then resumed from the last resourceVersion seen — not after the whole
watch timeout. Failures are logged once, then throttled (first, tenth, every fiftieth).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from resolver.errors import Forbidden, Gone, KubeError
from resolver.etcd.retry import attempt_log_level
from resolver.observability import metrics
from resolver.publisher.pods import SIDECAR_SELECTOR, ZONE_LABEL, PodEndpoint, pod_endpoint, refusal_code, slim_pod
from resolver.publisher.publication import Publication
from resolver.records.addresses import DEFAULT_POLICY, AddressPolicy
from resolver.timing.backoff import Backoff

log = logging.getLogger(__name__)

PAGE_SIZE = 500
WATCH_SECONDS = 300
WATCH_SILENCE_SECONDS = 90.0
"""Read timeout of a watch stream: just above the API server's ~60 s bookmark interval."""
CONNECT_TIMEOUT = 5.0
LIST_READ_TIMEOUT = 60.0
NODES_FIRST_WAIT = 5.0
KUBE_BACKOFF = Backoff(first=0.2, cap=5.0)
"""Between attempts after an API server failure: 0.2 s, 0.4 s … 5 s. No jitter, as before: the
API server's watchers here are one cluster's few publisher replicas (a leader and its standbys,
which watch too), not a fleet that must be spread out."""
FORBIDDEN_RETRY_SECONDS = 5.0
"""Waiting for RBAC to be fixed is not a backoff: a grant takes effect at once, so look every 5 s."""


def _translate(error: BaseException, what: str) -> KubeError:
    """kubernetes/urllib3 errors → ours, in one place."""
    if isinstance(error, ApiException):
        if error.status == 410:
            return Gone(f"{what}: 410 Gone ({error.reason})")
        if error.status == 403:
            return Forbidden(f"{what}: 403 Forbidden ({error.reason})")
        return KubeError(f"{what}: HTTP {error.status} {error.reason}")
    if isinstance(error, urllib3.exceptions.HTTPError | OSError | ValueError):
        return KubeError(f"{what}: {type(error).__name__}: {error}")
    raise error


class _Reflector:
    """List-then-watch of one resource list call; subclasses say what to do with objects."""

    kind = "object"
    retry_forbidden = True  # pods: wait for RBAC to be fixed; nodes: give up, zones stay empty

    def __init__(self, list_call: Callable[..., Any], stop: threading.Event, label_selector: str = "",
                 silence: float | None = None) -> None:
        self._list_call = list_call
        self._selector = label_selector
        self._stop = stop
        self.silence = silence if silence is not None else WATCH_SILENCE_SECONDS
        self.relists = 0
        self.resumes = 0

    def _request(self, **params: Any) -> Any:
        if self._selector:
            params["label_selector"] = self._selector
        return self._list_call(_preload_content=False, **params)

    def list_all(self) -> tuple[str, list[Mapping[str, Any]]]:
        items: list[Mapping[str, Any]] = []
        token, version = "", ""
        while True:
            try:
                response = self._request(limit=PAGE_SIZE, _continue=token or None,
                                         _request_timeout=(CONNECT_TIMEOUT, LIST_READ_TIMEOUT))
                page = json.loads(response.data)
            except Exception as error:
                raise _translate(error, f"list {self.kind}s") from None
            items += [self.slim(item) for item in page.get("items") or [] if isinstance(item, Mapping)]
            meta = page.get("metadata") or {}
            version = str(meta.get("resourceVersion") or version)
            token = str(meta.get("continue") or "")
            if not token:
                return version, items

    def watch(self, version: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """Yield ``(type, object)`` until the server ends the watch; bookmarks included."""
        try:
            response = self._request(watch=True, resource_version=version, allow_watch_bookmarks=True,
                                     timeout_seconds=WATCH_SECONDS,
                                     _request_timeout=(CONNECT_TIMEOUT, self.silence))
        except Exception as error:
            raise _translate(error, f"watch {self.kind}s") from None
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if self._stop.is_set():
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    code = obj.get("code")
                    message = f"watch {self.kind}s: {code} {obj.get('reason')}: {obj.get('message')}"
                    raise Gone(message) if code == 410 else KubeError(message)
                yield str(kind), obj
        except KubeError:
            raise
        except Exception as error:
            raise _translate(error, f"watch {self.kind}s stream") from None
        finally:
            response.close()
            response.release_conn()

    # -- the loop ---------------------------------------------------------------------------

    def slim(self, item: Mapping[str, Any]) -> Mapping[str, Any]:
        """What of a listed object to keep until the whole list is in (all of it, unless overridden)."""
        return item

    def on_list(self, items: list[Mapping[str, Any]]) -> None:
        raise NotImplementedError

    def on_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def run(self) -> None:
        """List, watch, resume, re-list on 410 — until stopped. Never raises."""
        version = ""
        failures = 0
        failing_since = 0.0

        def recovered(how: str) -> None:
            nonlocal failures
            if failures:
                log.info("API server answers %s requests again after %.0fs (%d failed attempts); %s", self.kind,
                         time.monotonic() - failing_since, failures, how)
                failures = 0

        while not self._stop.is_set():
            try:
                if not version:
                    version, items = self.list_all()
                    self.relists += 1
                    metrics.RELISTS_KUBE.inc()
                    recovered("re-listed")
                    self.on_list(items)
                    log.info("listed %d %ss at resourceVersion %s", len(items), self.kind, version)
                for kind, obj in self.watch(version):
                    recovered(f"resumed the watch from resourceVersion {version}")
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind != "BOOKMARK":
                        self.on_event(kind, obj)
                failures = 0
            except Gone as error:
                log.info("%s; re-listing %ss", error, self.kind)
                version = ""
            except Forbidden:
                if not self.retry_forbidden:
                    raise
                failing_since = failing_since if failures else time.monotonic()
                failures += 1
                log.log(attempt_log_level(failures, logging.ERROR),
                        "not allowed to list/watch %ss (grant get/list/watch on %ss to this service account); "
                        "retrying in %.0fs", self.kind, self.kind, FORBIDDEN_RETRY_SECONDS)
                self._stop.wait(FORBIDDEN_RETRY_SECONDS)
            except KubeError as error:
                if self._stop.is_set():
                    return  # a stopped source's open watch ending (its read timeout, the server going) is no failure
                self.resumes += 1 if version else 0
                failing_since = failing_since if failures else time.monotonic()
                failures += 1
                delay = KUBE_BACKOFF.delay(failures)
                log.log(attempt_log_level(failures), "%s (attempt %d); retrying in %.1fs from resourceVersion %s",
                        error, failures, delay, version or "(re-list)")
                self._stop.wait(delay)


class PodReflector(_Reflector):
    kind = "pod"

    def __init__(self, list_call: Callable[..., Any], stop: threading.Event, publication: Publication,
                 cluster: str, zones: Mapping[str, str], scope: str, policy: AddressPolicy = DEFAULT_POLICY,
                 silence: float | None = None) -> None:
        super().__init__(list_call, stop, SIDECAR_SELECTOR, silence)
        self._publication = publication
        self._cluster = cluster
        self._zones = zones
        self._scope = scope
        self._policy = policy
        self._lock = threading.Lock()
        self._pods: dict[tuple[str, str], PodEndpoint] = {}
        self._reported: dict[tuple[str, str], tuple[str, tuple[tuple[str, str], ...]]] = {}

    def slim(self, item: Mapping[str, Any]) -> Mapping[str, Any]:
        return slim_pod(item)

    def _evaluate(self, pod: Mapping[str, Any]) -> PodEndpoint:
        found = pod_endpoint(pod, self._cluster, self._zones, self._policy)
        pod_id = (found.namespace, found.name)
        report = (found.reason, found.refused)
        if self._reported.get(pod_id) != report:
            if found.code:
                log.warning("skipping pod %s/%s: %s", found.namespace or "?", found.name or "?", found.reason)
                metrics.PUBLISHER_SKIPPED.labels(found.code).inc()
            for address, why in found.refused:
                log.warning("pod %s/%s: address %s not published: %s", found.namespace, found.name, address, why)
                metrics.PUBLISHER_REFUSED.labels(refusal_code(why)).inc()
        self._reported[pod_id] = report
        return found

    def on_list(self, items: list[Mapping[str, Any]]) -> None:
        with self._lock:
            self._reported = {k: v for k, v in self._reported.items() if v[0] or v[1]}
            self._pods = {(p.namespace, p.name): p for p in map(self._evaluate, items)}
            records = [r for p in self._pods.values() for r in p.records]
        self._publication.replace(records, self._scope)

    def on_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        with self._lock:
            found = self._evaluate(obj)
            pod_id = (found.namespace, found.name)
            previous = self._pods.pop(pod_id, None)
            if kind != "DELETED":
                self._pods[pod_id] = found
            else:
                self._reported.pop(pod_id, None)
                found = dataclasses.replace(found, records=())
        self._apply(previous, found)

    def _apply(self, previous: PodEndpoint | None, current: PodEndpoint) -> None:
        keys = self._publication.keys
        old = {r.key(keys): r for r in (previous.records if previous else ())}
        new = {r.key(keys): r for r in current.records}
        for key in old.keys() - new.keys():
            self._publication.remove(key, self._scope)
        for key, record in new.items():
            if old.get(key) != record:
                self._publication.upsert(record, self._scope)

    def rezone(self, node: str) -> None:
        """A node's zone changed: republish its pods with the new zone."""
        zone = self._zones.get(node, "")
        with self._lock:
            changed = [(pod, dataclasses.replace(pod, records=tuple(
                dataclasses.replace(record, zone=zone) for record in pod.records)))
                for pod in self._pods.values() if pod.node == node and pod.records]
            for _, updated in changed:
                self._pods[(updated.namespace, updated.name)] = updated
        for previous, updated in changed:
            self._apply(previous, updated)


class NodeReflector(_Reflector):
    kind = "node"
    retry_forbidden = False

    def __init__(self, list_call: Callable[..., Any], stop: threading.Event, zones: dict[str, str],
                 on_zone_change: Callable[[str], None], silence: float | None = None) -> None:
        super().__init__(list_call, stop, silence=silence)
        self._zones = zones
        self._on_zone_change = on_zone_change
        self.listed = threading.Event()  # set after the first list, or when nodes cannot be read

    @staticmethod
    def _zone(node: Mapping[str, Any]) -> tuple[str, str]:
        meta = node.get("metadata") or {}
        labels = meta.get("labels") or {}
        return str(meta.get("name") or ""), str(labels.get(ZONE_LABEL) or "")

    def on_list(self, items: list[Mapping[str, Any]]) -> None:
        fresh = dict(map(self._zone, items))
        changed = {n for n in set(fresh) | set(self._zones) if fresh.get(n, "") != self._zones.get(n, "")}
        self._zones.clear()
        self._zones.update(fresh)
        first = not self.listed.is_set()
        self.listed.set()
        if not first:
            for node in changed:
                self._on_zone_change(node)

    def on_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        name, zone = self._zone(obj)
        if kind == "DELETED":
            zone = ""
        if self._zones.get(name, "") != zone:
            self._zones[name] = zone
            self._on_zone_change(name)


class KubernetesSource:
    """Pods (all namespaces, or each listed one) and nodes → a :class:`Publication`."""

    def __init__(self, api_client: k8s.ApiClient, cluster: str, namespaces: list[str],
                 publication: Publication, policy: AddressPolicy = DEFAULT_POLICY,
                 silence: float | None = None) -> None:
        self._core = k8s.CoreV1Api(api_client)
        self._stop = threading.Event()
        self._zones: dict[str, str] = {}
        self.pods = [
            PodReflector(self._core.list_pod_for_all_namespaces, self._stop, publication, cluster, self._zones, "",
                         policy, silence)
        ] if not namespaces else [
            PodReflector(lambda ns=ns, **kw: self._core.list_namespaced_pod(ns, **kw), self._stop, publication,
                         cluster, self._zones, ns, policy, silence)
            for ns in namespaces
        ]
        self.nodes = NodeReflector(self._core.list_node, self._stop, self._zones, self._rezone, silence)
        self._threads: list[threading.Thread] = []

    def _rezone(self, node: str) -> None:
        for reflector in self.pods:
            reflector.rezone(node)

    def _run_nodes(self) -> None:
        try:
            self.nodes.run()
        except Forbidden as error:
            log.warning("cannot read nodes (%s): zones stay empty; grant get/list/watch on nodes to publish them",
                        error)
        finally:
            self.nodes.listed.set()

    def _run_pods(self, reflector: PodReflector) -> None:
        # The first pod list waits (briefly) for the node list, so it already carries zones.
        self.nodes.listed.wait(NODES_FIRST_WAIT)
        reflector.run()

    def start(self) -> KubernetesSource:
        nodes = threading.Thread(target=self._run_nodes, name="kube-nodes", daemon=True)
        nodes.start()
        self._threads.append(nodes)
        for reflector in self.pods:
            thread = threading.Thread(target=self._run_pods, args=(reflector,), name="kube-pods", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
