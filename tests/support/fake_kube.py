"""A small fake of the Kubernetes API server, for pods and nodes, over real HTTP.

What it is still for. The publisher's Kubernetes side is tested against a real kube-apiserver
(tests/publisher/test_real_apiserver_*.py); the fake stays where Kubernetes is incidental and
a deterministic pod list in milliseconds is worth more than a server to start — the etcd-side
publisher tests (test_publisher.py, _convergence, _identity, _process) and the fault suite
(tests/faults/world.py, which churns two clusters every 20 ms) — for what a real server
cannot do on demand (one list answered 6 s late: :attr:`FakeKubeApi.list_delay`), and for
``bench/publisher_sync.py --api-server fake``. ``make_pod`` also builds the hand-made pods of
tests/publisher/test_pods.py, many of which a real server would refuse (a name or namespace
that is not DNS, a port above 65535, an IP that is not one, a ``/`` in a label value): they
show the publisher survives objects a real server never sends.

Where the real server differs, the fake is the lenient one: it stores any labels, names and
statuses it is given, and marks a pod terminating by a ``deletionTimestamp`` in the object put
(a real server sets it only on a graceful delete). A test that needs the server's validation or
graceful deletion uses the real one.

What the publisher relies on, implemented as the real API server behaves:

* ``GET /api/v1/pods``, ``/api/v1/namespaces/{ns}/pods``, ``/api/v1/nodes`` — lists with
  ``labelSelector`` (``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, comma = AND), ``limit`` +
  ``continue`` pages served from a snapshot at the first page's resourceVersion (a token whose
  version has been compacted answers ``410 Gone``);
* ``?watch=1`` streams (chunked JSON lines) from ``resourceVersion``: events after it are
  replayed from the history, then live; a version older than the history window gets an
  ``ERROR`` event with ``code: 410`` (reason ``Expired``); ``allowWatchBookmarks`` adds
  periodic ``BOOKMARK`` events; ``timeoutSeconds`` ends the stream cleanly; with a label
  selector, an object that stops (starts) matching is sent as ``DELETED`` (``ADDED``) — the
  ``DELETED`` one as it last matched, at the new resourceVersion (checked against the real server);
* every object carries ``metadata.resourceVersion``; versions grow monotonically.

Test hooks: :meth:`FakeKubeApi.compact` (expire the history → 410s), :meth:`FakeKubeApi.drop_watches`
(cut every open stream mid-flight), :attr:`FakeKubeApi.list_delay` (slow lists), and
``GET /api/v1/namespaces/kube-system`` answering :attr:`FakeKubeApi.kube_system_uid` (the
cluster identity). The hooks for a 403, a silent watch and request counters went with the tests
that used them: a real server refuses by RBAC, a TCP proxy stalls its watch, and its audit log
counts the requests (tests/publisher/test_real_apiserver_sources.py).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

Obj = dict[str, Any]


@dataclass
class Event:
    rv: int
    resource: str
    type: str
    obj: Obj
    before: Obj | None


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def selector_matcher(selector: str) -> Callable[[Obj | None], bool]:
    terms = [t.strip() for t in selector.split(",") if t.strip()]

    def matches(obj: Obj | None) -> bool:
        if obj is None:
            return False
        labels = obj.get("metadata", {}).get("labels") or {}
        for term in terms:
            if "!=" in term:
                k, v = term.split("!=", 1)
                if labels.get(k.strip()) == v.strip():
                    return False
            elif "=" in term:
                k, v = term.replace("==", "=").split("=", 1)
                if labels.get(k.strip()) != v.strip():
                    return False
            elif term.startswith("!"):
                if term[1:] in labels:
                    return False
            elif term not in labels:
                return False
        return True

    return matches


class FakeKubeApi:
    def __init__(self, bookmark_interval: float = 1.0) -> None:
        self._cond = threading.Condition()
        self._rv = 1000
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {"pods": {}, "nodes": {}}
        self._events: list[Event] = []
        self._oldest_rv = self._rv  # watches from versions below this get 410
        self._snapshots: dict[str, list[Obj]] = {}
        self._streams: set[Any] = set()
        self.bookmark_interval = bookmark_interval
        self.list_delay = 0.0  # seconds every list request waits before answering
        self.kube_system_uid = f"0f{id(self) % 10**6:06d}-5a7b-4c1d-9e2f-{int(time.time() * 1000) % 10**12:012d}"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-kube", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: fake, cluster: {{server: '{self.url}'}}}}]\n"
            "users: [{name: fake, user: {token: fake-token}}]\n"
            "contexts: [{name: fake, context: {cluster: fake, user: fake}}]\ncurrent-context: fake\n")
        return path

    def close(self) -> None:
        self.drop_watches()
        self.server.shutdown()
        self.server.server_close()

    # -- state changes ------------------------------------------------------------------------

    def _record(self, resource: str, kind: str, obj: Obj | None, key: tuple[str, str]) -> int:
        with self._cond:
            self._rv += 1
            before = self._objects[resource].get(key)
            if obj is None:
                if before is None:
                    return self._rv
                gone = copy.deepcopy(before)
                gone["metadata"]["resourceVersion"] = str(self._rv)
                del self._objects[resource][key]
                self._events.append(Event(self._rv, resource, "DELETED", gone, before))
            else:
                stored = copy.deepcopy(obj)
                stored.setdefault("kind", kind)
                stored.setdefault("apiVersion", "v1")
                stored["metadata"]["resourceVersion"] = str(self._rv)
                stored["metadata"].setdefault("uid", f"uid-{resource}-{key[0]}-{key[1]}")
                self._objects[resource][key] = stored
                self._events.append(Event(self._rv, resource, "MODIFIED" if before else "ADDED", stored, before))
            self._cond.notify_all()
            return self._rv

    def put_pod(self, pod: Obj) -> int:
        return self._record("pods", "Pod", pod, _key(pod))

    def delete_pod(self, namespace: str, name: str) -> int:
        return self._record("pods", "Pod", None, (namespace, name))

    def put_node(self, node: Obj) -> int:
        return self._record("nodes", "Node", node, ("", node["metadata"]["name"]))

    def delete_node(self, name: str) -> int:
        return self._record("nodes", "Node", None, ("", name))

    def pods(self) -> list[Obj]:
        with self._cond:
            return copy.deepcopy(list(self._objects["pods"].values()))

    def compact(self) -> None:
        """Forget the event history: watches from any version seen so far now get 410 Gone."""
        with self._cond:
            self._events.clear()
            self._oldest_rv = self._rv + 1
            self._snapshots.clear()

    def expire_watches(self) -> None:
        """Every open watch falls out of the event window and its stream drops: each gets 410 on resume."""
        with self._cond:
            self._rv += 1  # versions move on (other resources change too), so no watcher is current
        self.compact()
        self.drop_watches()

    def drop_watches(self) -> None:
        """Cut every open watch stream without a clean end (a proxy or API server restart)."""
        with self._cond:
            streams = list(self._streams)
        for connection in streams:
            with contextlib.suppress(OSError):
                connection.shutdown(2)

    # -- HTTP ---------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                api._serve(self)

        return Handler

    @staticmethod
    def _send_json(handler: BaseHTTPRequestHandler, status: int, body: Obj) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def _status(code: int, reason: str, message: str) -> Obj:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                "reason": reason, "code": code}

    def _route(self, path: str) -> tuple[str, str | None] | None:
        parts = [p for p in path.split("/") if p]
        if parts[:2] != ["api", "v1"]:
            return None
        rest = parts[2:]
        if rest in (["pods"], ["nodes"]):
            return rest[0], None
        if len(rest) == 3 and rest[0] == "namespaces" and rest[2] == "pods":
            return "pods", rest[1]
        if len(rest) == 2 and rest[0] == "namespaces":
            return "namespaces", rest[1]
        return None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlparse(handler.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        route = self._route(url.path)
        if route is None:
            self._send_json(handler, 404, self._status(404, "NotFound", f"no route {url.path}"))
            return
        resource, namespace = route
        watching = query.get("watch") in ("1", "true", "True")
        if resource == "namespaces":
            if namespace != "kube-system":
                self._send_json(handler, 404, self._status(404, "NotFound", f"namespaces {namespace!r} not found"))
                return
            self._send_json(handler, 200, {"kind": "Namespace", "apiVersion": "v1", "metadata": {
                "name": namespace, "uid": self.kube_system_uid, "resourceVersion": "1"}})
            return
        matches = selector_matcher(query.get("labelSelector", ""))

        def visible(obj: Obj | None) -> bool:
            return obj is not None and matches(obj) and (namespace is None or obj["metadata"].get("namespace") ==
                                                         namespace)

        if watching:
            self._watch(handler, resource, visible, query)
        else:
            self._list(handler, resource, visible, query)

    def _list(self, handler: BaseHTTPRequestHandler, resource: str, visible: Callable[[Obj | None], bool],
              query: dict[str, str]) -> None:
        if self.list_delay:
            time.sleep(self.list_delay)
        limit = int(query.get("limit") or 0)
        token = query.get("continue")
        with self._cond:
            if token:
                snapshot = self._snapshots.get(token)
                if snapshot is None:
                    self._send_json(handler, 410, self._status(410, "Expired", "the provided continue parameter "
                                                               "is too old to display a consistent list result"))
                    return
                rv, items = json.loads(base64.b64decode(token))["rv"], snapshot
            else:
                rv = self._rv
                items = [copy.deepcopy(o) for k, o in sorted(self._objects[resource].items()) if visible(o)]
        page, rest = (items[:limit], items[limit:]) if limit else (items, [])
        meta: Obj = {"resourceVersion": str(rv)}
        if rest:
            next_token = base64.b64encode(json.dumps({"rv": rv, "n": len(self._snapshots), "t": time.time()})
                                          .encode()).decode()
            with self._cond:
                self._snapshots[next_token] = rest
            meta["continue"] = next_token
        kind = "PodList" if resource == "pods" else "NodeList"
        self._send_json(handler, 200, {"kind": kind, "apiVersion": "v1", "metadata": meta, "items": page})

    def _watch(self, handler: BaseHTTPRequestHandler, resource: str, visible: Callable[[Obj | None], bool],
               query: dict[str, str]) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        connection = handler.connection
        with self._cond:
            self._streams.add(connection)
        try:
            for line in self._watch_lines(resource, visible, query):
                data = (json.dumps(line) + "\n").encode()
                handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                handler.wfile.flush()
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except OSError:
            pass
        finally:
            with self._cond:
                self._streams.discard(connection)
            handler.close_connection = True

    def _watch_lines(self, resource: str, visible: Callable[[Obj | None], bool],
                     query: dict[str, str]) -> Iterator[Obj]:
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1", "True")
        requested = query.get("resourceVersion") or "0"
        kind = "Pod" if resource == "pods" else "Node"
        with self._cond:
            if requested == "0":
                position = len(self._events)
                initial = [copy.deepcopy(o) for o in self._objects[resource].values() if visible(o)]
                last_rv = self._rv
            else:
                since = int(requested)
                if since < self._oldest_rv - 1:
                    yield {"type": "ERROR", "object": self._status(410, "Expired", f"too old resource version: "
                                                                    f"{since} ({self._oldest_rv})")}
                    return
                position = next((i for i, e in enumerate(self._events) if e.rv > since), len(self._events))
                initial, last_rv = [], since
        for obj in initial:
            yield {"type": "ADDED", "object": obj}
        next_bookmark = time.monotonic() + self.bookmark_interval
        while time.monotonic() < deadline:
            with self._cond:
                if position >= len(self._events):
                    self._cond.wait(min(0.2, max(0.0, next_bookmark - time.monotonic())))
                pending = self._events[position:]
                position = len(self._events)
                current_rv = self._rv
            for event in pending:
                if event.resource != resource:
                    continue
                last_rv = event.rv
                now, was = visible(event.obj if event.type != "DELETED" else None), visible(event.before)
                if event.type == "DELETED":
                    if was:
                        yield {"type": "DELETED", "object": event.obj}
                elif now and was:
                    yield {"type": "MODIFIED", "object": event.obj}
                elif now:
                    yield {"type": "ADDED", "object": event.obj}
                elif was:  # as the real watch cache: the object as it last matched, at the new version
                    gone = copy.deepcopy(event.before)
                    assert gone is not None
                    gone["metadata"]["resourceVersion"] = str(event.rv)
                    yield {"type": "DELETED", "object": gone}
            if bookmarks and time.monotonic() >= next_bookmark:
                last_rv = max(last_rv, current_rv)
                yield {"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": "v1",
                                                      "metadata": {"resourceVersion": str(last_rv)}}}
                next_bookmark = time.monotonic() + self.bookmark_interval


def make_pod(name: str, app_id: str | None = "orders", namespace: str = "default", ip: str | None = "10.0.0.1",
             ready: bool = True, node: str = "node-1", port: int | None = None, terminating: bool = False,
             annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None,
             sidecar: bool = True) -> Obj:
    """A pod as Dapr's injector leaves it: the sidecar label, the app-id label, a daprd container."""
    all_labels = {"dapr.io/sidecar-injected": "true"} if sidecar else {}
    if app_id is not None:
        all_labels["dapr.io/app-id"] = app_id
    all_labels.update(labels or {})
    daprd: Obj = {"name": "daprd", "image": "daprio/daprd:1.14.0", "ports": [
        {"name": "dapr-http", "containerPort": 3500}, {"name": "dapr-grpc", "containerPort": 50001}]}
    if port is not None:
        daprd["ports"].append({"name": "dapr-internal", "containerPort": port})
    metadata: Obj = {"name": name, "namespace": namespace, "labels": all_labels, "annotations": annotations or {}}
    if terminating:
        metadata["deletionTimestamp"] = "2026-11-22T00:00:00Z"
    status: Obj = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip is not None:
        status["podIP"] = ip
    return {"metadata": metadata, "spec": {"nodeName": node, "containers": [{"name": "app"}, daprd]},
            "status": status}


def make_node(name: str, zone: str | None = None) -> Obj:
    labels = {"kubernetes.io/hostname": name}
    if zone is not None:
        labels["topology.kubernetes.io/zone"] = zone
    return {"metadata": {"name": name, "labels": labels}}
