"""A raw etcd watch on one prefix, with a liveness check.

python3-etcd3's own watcher cannot be trusted with a registry: when its stream breaks, its
callback thread dies on a ``NameError`` (``six`` is used but never imported) and the callbacks
are never told, so a watch goes silently dead. It also offers no way to notice a frozen etcd
whose TCP connection stays open. So this module speaks etcd's Watch stream directly, on the
gateway's channel:

* one ``WatchCreateRequest`` for the prefix from ``start_revision``;
* a ``progress_request`` every ``progress_interval``; if nothing at all has arrived for two
  intervals the stream is declared dead (:class:`RegistryUnavailable`) — this is how a frozen
  (SIGSTOPped) or partitioned etcd is noticed within seconds;
* a compacted start revision raises :class:`RegistryCompacted`, so the reader re-lists.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import etcd3.utils
import grpc
from etcd3 import etcdrpc

from resolver.errors import RegistryCompacted, RegistryUnavailable
from resolver.registry.gateway import EtcdGateway, translate

log = logging.getLogger(__name__)

PUT = 0
DELETE = 1


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: int  # PUT or DELETE
    key: bytes
    value: bytes
    lease: int


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """Events of one watch response (possibly none: a progress notification) at ``revision``."""

    revision: int
    events: list[WatchEvent]


class PrefixWatch:
    """Iterate to receive :class:`WatchBatch` es; call :meth:`cancel` from any thread to stop."""

    def __init__(self, gateway: EtcdGateway, prefix: str, start_revision: int,
                 progress_interval: float = 2.0) -> None:
        self._gateway = gateway
        self._prefix = prefix.encode()
        self._start_revision = start_revision
        self._interval = progress_interval
        self._requests: queue.Queue[Any] = queue.Queue()
        self._call: Any = None
        self._cancelled = threading.Event()
        self._last_seen = time.monotonic()
        self._dead_reason = ""

    def cancel(self) -> None:
        self._cancelled.set()
        self._requests.put(None)
        call = self._call
        if call is not None:
            call.cancel()

    def _request_stream(self) -> Iterator[Any]:
        create = etcdrpc.WatchCreateRequest(
            key=self._prefix, range_end=etcd3.utils.prefix_range_end(self._prefix),
            start_revision=self._start_revision)
        yield etcdrpc.WatchRequest(create_request=create)
        progress = etcdrpc.WatchRequest(progress_request=etcdrpc.WatchProgressRequest())
        while not self._cancelled.is_set():
            try:
                if self._requests.get(timeout=self._interval) is None:
                    return
            except queue.Empty:
                pass
            silent_for = time.monotonic() - self._last_seen
            if silent_for > 2 * self._interval + self._gateway.timeout:
                self._dead_reason = f"no answer from etcd for {silent_for:.1f}s"
                call = self._call
                if call is not None:
                    call.cancel()
                return
            yield progress

    def __iter__(self) -> Iterator[WatchBatch]:
        channel, auth = self._gateway.stream_call()
        stub = etcdrpc.WatchStub(channel)
        self._last_seen = time.monotonic()
        self._call = stub.Watch(self._request_stream(), **auth)
        if self._cancelled.is_set():
            self._call.cancel()
        try:
            for response in self._call:
                self._last_seen = time.monotonic()
                if response.compact_revision:
                    raise RegistryCompacted(int(response.compact_revision))
                if response.canceled:
                    raise RegistryUnavailable(f"etcd cancelled the watch: {response.cancel_reason or 'no reason'}")
                if response.created and not response.events:
                    continue
                yield WatchBatch(int(response.header.revision), [
                    WatchEvent(int(event.type), event.kv.key, event.kv.value, int(event.kv.lease))
                    for event in response.events
                ])
            if not self._cancelled.is_set():
                raise RegistryUnavailable("etcd closed the watch stream")
        except grpc.RpcError as error:
            if self._cancelled.is_set() and not self._dead_reason:
                return
            if self._dead_reason:
                raise RegistryUnavailable(f"etcd watch stalled: {self._dead_reason}") from None
            self._gateway.reset()
            raise translate(error, "watch") from None
        finally:
            self.cancel()
