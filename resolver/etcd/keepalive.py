"""Lease keep-alive over one long-lived, bidirectional ``LeaseKeepAlive`` stream we control.

Why not python3-etcd3's ``refresh_lease``: it opens a stream per refresh, sends one request
and half-closes. etcd answers that, but ``etcd grpc-proxy`` cancels the upstream stream as
soon as the client half-closes, so every refresh through the proxy fails with ``UNKNOWN
context canceled`` and a cluster's records expire one TTL after start. Here the
stream stays open: requests go in through a queue, a reader thread collects the answers, and
a refresh waits for the answers of the leases it asked about — for at most the etcd timeout.
A refresh that gets no answer in time, or a stream that breaks, closes the stream
(:class:`RegistryUnavailable`); the next refresh opens a fresh one. Several leases are
refreshed in one round trip.

etcd answers a keep-alive for a lease it no longer has with ``TTL <= 0`` (not an error):
callers treat that as "lease lost".
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import grpc
from etcd3 import etcdrpc

from resolver.errors import RegistryUnavailable
from resolver.etcd.gateway import EtcdGateway
from resolver.observability import metrics

log = logging.getLogger(__name__)


class _Stream:
    """One open LeaseKeepAlive call: a request queue in, a thread collecting answers out."""

    def __init__(self, gateway: EtcdGateway) -> None:
        self._gateway = gateway
        channel, auth = gateway.stream_call()
        self._requests: queue.Queue[Any] = queue.Queue()
        self._cond = threading.Condition()
        self.answers: dict[int, int] = {}
        self.error: BaseException | None = None
        self.closed = False
        stub = etcdrpc.LeaseStub(channel)
        self._call = stub.LeaseKeepAlive(self._request_iterator(), **auth)
        self._thread = threading.Thread(target=self._read, name="lease-keepalive", daemon=True)
        self._thread.start()

    def _request_iterator(self) -> Iterator[Any]:
        while True:
            request = self._requests.get()
            if request is None:
                return
            yield request

    def _read(self) -> None:
        try:
            for response in self._call:
                with self._cond:
                    self.answers[int(response.ID)] = int(response.TTL)
                    self._cond.notify_all()
            error: BaseException = RegistryUnavailable("etcd closed the lease keep-alive stream")
        except grpc.RpcError as rpc_error:
            error = rpc_error
        except Exception as unexpected:
            error = unexpected
        with self._cond:
            if not self.closed:
                self.error = error
            self.closed = True
            self._cond.notify_all()

    def refresh(self, lease_ids: list[int], timeout: float) -> dict[int, int]:
        with self._cond:
            for lease_id in lease_ids:
                self.answers.pop(lease_id, None)
        for lease_id in lease_ids:
            self._requests.put(etcdrpc.LeaseKeepAliveRequest(ID=lease_id))
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.closed and any(lease_id not in self.answers for lease_id in lease_ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            missing = [lease_id for lease_id in lease_ids if lease_id not in self.answers]
            if not missing:
                return {lease_id: self.answers.pop(lease_id) for lease_id in lease_ids}
            error = self.error
        if error is not None:
            raise self._gateway.stream_error(error, "lease keep-alive") from None
        raise RegistryUnavailable(f"etcd lease keep-alive: no answer for {len(missing)} lease(s) within "
                                  f"{timeout:g}s (etcdTimeout)")

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self._requests.put(None)
        self._call.cancel()


class LeaseKeeper:
    """Refreshes leases over one shared stream; thread-safe (one refresh at a time)."""

    def __init__(self, gateway: EtcdGateway, timeout: float | None = None) -> None:
        self.gateway = gateway
        self.timeout = timeout if timeout is not None else gateway.timeout
        self._lock = threading.Lock()
        self._stream: _Stream | None = None
        self._broken = False
        self.reconnects = 0
        """Streams opened after one broke or timed out (0 in a healthy steady state)."""

    def refresh(self, lease_ids: Iterable[int]) -> dict[int, int]:
        """``{lease id: remaining TTL}`` (``<= 0``: etcd no longer has the lease).

        Raises :class:`~resolver.errors.RegistryError` when etcd cannot be asked; the stream
        is then closed and the next call opens a new one.
        """
        wanted = list(dict.fromkeys(lease_ids))
        if not wanted:
            return {}
        with self._lock:
            stream = self._stream
            if stream is None or stream.closed:
                if stream is not None or self._broken:
                    self.reconnects += 1  # a stream broke (or timed out) before: this is a reconnect
                self._broken = False
                metrics.ETCD_REQUESTS.labels("lease keep-alive stream").inc()
                try:
                    stream = self._stream = _Stream(self.gateway)
                except grpc.RpcError as error:
                    self._stream, self._broken = None, True
                    raise self.gateway.stream_error(error, "lease keep-alive") from None
            try:
                return stream.refresh(wanted, self.timeout)
            except Exception:
                stream.close()
                self._stream, self._broken = None, True
                raise

    @property
    def streaming(self) -> bool:
        """True while a keep-alive stream is open."""
        stream = self._stream
        return stream is not None and not stream.closed

    def refresh_one(self, lease_id: int) -> int:
        return self.refresh([lease_id])[lease_id]

    def close(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
