"""One etcd Watch stream carrying many watchers: the on-demand cache's view of a few key ranges.

A component that resolves five apps across three clusters needs fifteen small ranges watched,
not the whole registry. etcd multiplexes any number of watchers on one bidirectional stream, so
this costs one stream (and one progress request per interval) per component, however many
ranges it follows — the same shape etcd's Go client uses, and the shape ``etcd grpc-proxy``
coalesces across components.

Watch ids are assigned by etcd in the order of the create requests on a stream (clients of
3.4 cannot choose them, and the proxy re-maps them), so pending creates are matched to
``created`` responses first in, first out. A watcher whose start revision was compacted is
cancelled by etcd; the owner is told (:attr:`MultiWatch.on_compacted`) and re-reads that
range. Liveness works as in :mod:`resolver.etcd.watch`: progress requests, and a read probe
for servers that never answer them (``etcd grpc-proxy``).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import etcd3.utils
import grpc
from etcd3 import etcdrpc

from resolver.errors import RegistryError, RegistryUnavailable
from resolver.etcd.gateway import EtcdGateway, translate
from resolver.etcd.watch import REQUIRE_LEADER, WatchEvent

log = logging.getLogger(__name__)


class Range(NamedTuple):
    """A watched key range: every key starting with ``prefix``."""

    prefix: str

    @property
    def key(self) -> bytes:
        return self.prefix.encode()

    @property
    def range_end(self) -> bytes:
        return etcd3.utils.prefix_range_end(self.key)  # type: ignore[no-any-return]


class MultiWatch:
    """Run with :meth:`run` in one thread; :meth:`add` / :meth:`remove` / :meth:`cancel` from any."""

    def __init__(self, gateway: EtcdGateway, progress_interval: float, probe_key: str,
                 on_events: Callable[[Range, list[WatchEvent]], None],
                 on_compacted: Callable[[Range], None]) -> None:
        self._gateway = gateway
        self._probe_key = probe_key  # a key the credentials may read (with RBAC: under the prefix)
        self._interval = progress_interval
        self._on_events = on_events
        self._on_compacted = on_compacted
        self._requests: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._pending: collections.deque[Range] = collections.deque()  # creates awaiting their watch id
        self._ids: dict[int, Range] = {}
        self._by_range: dict[Range, int] = {}
        self._doomed: collections.Counter[Range] = collections.Counter()  # removed before their id came
        self._call: Any = None
        self._cancelled = threading.Event()
        self._last_seen = time.monotonic()
        self._progress_answered = False
        self._dead_reason = ""
        self.read_probing = False

    @property
    def last_contact(self) -> float:
        return self._last_seen

    @property
    def active_watchers(self) -> int:
        """Watchers etcd confirmed and not cancelled since (creates still pending are not counted)."""
        return len(self._by_range)

    def add(self, watched: Range, start_revision: int) -> None:
        """Watch ``watched`` from ``start_revision`` on (events before it must already be applied)."""
        request = etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
            key=watched.key, range_end=watched.range_end, start_revision=start_revision))
        with self._lock:
            self._pending.append(watched)
            self._requests.put(request)

    def remove(self, watched: Range) -> None:
        """Stop watching ``watched`` (a create still awaiting its id is cancelled when the id arrives)."""
        with self._lock:
            watch_id = self._by_range.pop(watched, None)
            if watch_id is None:
                if self._pending.count(watched) > self._doomed[watched]:
                    self._doomed[watched] += 1
                return
            self._ids.pop(watch_id, None)
        self._requests.put(etcdrpc.WatchRequest(cancel_request=etcdrpc.WatchCancelRequest(watch_id=watch_id)))

    def cancel(self) -> None:
        self._cancelled.set()
        self._requests.put(None)
        call = self._call
        if call is not None:
            call.cancel()

    def _request_stream(self) -> Iterator[Any]:
        progress = etcdrpc.WatchRequest(progress_request=etcdrpc.WatchProgressRequest())
        while not self._cancelled.is_set():
            try:
                request = self._requests.get(timeout=self._interval)
            except queue.Empty:
                request = progress
            if request is None:
                return
            if request is progress:
                silent_for = time.monotonic() - self._last_seen
                if self.read_probing or silent_for > 2 * self._interval + self._gateway.timeout:
                    if not self._alive_by_read(silent_for):
                        call = self._call
                        if call is not None:
                            call.cancel()
                        return
                    continue
            yield request

    def _alive_by_read(self, silent_for: float) -> bool:
        if self._progress_answered and not self.read_probing:
            self._dead_reason = f"no answer from etcd for {silent_for:.1f}s"
            return False
        try:
            self._gateway.status(self._probe_key)
        except RegistryError as error:
            self._dead_reason = f"no answer from etcd for {silent_for:.1f}s ({error})"
            return False
        if not self.read_probing:
            self.read_probing = True
            log.info("etcd does not answer watch progress requests (an etcd grpc-proxy?); checking the "
                     "on-demand watch's liveness with a read every %.1fs instead", self._interval)
        self._last_seen = time.monotonic()
        return True

    def run(self) -> None:
        """Serve the stream until cancelled (returns) or broken (raises :class:`RegistryUnavailable`)."""
        channel, auth = self._gateway.stream_call()
        auth = {**auth, "metadata": (*(auth.get("metadata") or ()), REQUIRE_LEADER)}
        self._last_seen = time.monotonic()
        self._call = etcdrpc.WatchStub(channel).Watch(self._request_stream(), **auth)
        if self._cancelled.is_set():
            self._call.cancel()
        try:
            for response in self._call:
                self._last_seen = time.monotonic()
                self._handle(response)
            if not self._cancelled.is_set():
                raise RegistryUnavailable("etcd closed the watch stream")
        except grpc.RpcError as error:
            if self._cancelled.is_set() and not self._dead_reason:
                return
            if self._dead_reason:
                raise RegistryUnavailable(f"etcd watch stalled: {self._dead_reason}") from None
            self._gateway.reset()
            raise translate(error, "watch", self._gateway.connection, self._probe_key) from None
        finally:
            self.cancel()

    def _handle(self, response: Any) -> None:
        watch_id = int(response.watch_id)
        if response.created:
            with self._lock:
                watched = self._pending.popleft() if self._pending else None
                if watched is not None and self._doomed[watched] > 0:
                    self._doomed[watched] -= 1
                    if not self._doomed[watched]:
                        del self._doomed[watched]
                    self._requests.put(etcdrpc.WatchRequest(
                        cancel_request=etcdrpc.WatchCancelRequest(watch_id=watch_id)))
                elif watched is not None:
                    self._ids[watch_id] = watched
                    self._by_range[watched] = watch_id
            if not response.canceled:
                return
        with self._lock:
            watched = self._ids.get(watch_id)
        if response.canceled:
            with self._lock:
                self._ids.pop(watch_id, None)
                if watched is not None and self._by_range.get(watched) == watch_id:
                    del self._by_range[watched]
            if response.compact_revision and watched is not None:
                self._on_compacted(watched)
            elif watched is not None and response.cancel_reason:
                raise RegistryUnavailable(f"etcd cancelled a watch: {response.cancel_reason}")
            return
        if not response.events:
            self._progress_answered = True
            return
        if watched is not None:
            self._on_events(watched, [WatchEvent(int(e.type), e.kv.key, e.kv.value, int(e.kv.lease),
                                                 int(e.kv.mod_revision)) for e in response.events])
