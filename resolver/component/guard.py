"""A server interceptor that keeps hostile requests from costing anyone but their sender.

It wraps every method the socket serves (NameResolution, reflection, health), once per method:

* **Malformed protobuf** never reaches grpc's own deserializer path (which answers ``INTERNAL``
  "Exception deserializing request!" and logs a six-line traceback per request): the request
  deserializer returns a marker instead of raising, and the call is answered
  ``INVALID_ARGUMENT`` naming the method, with one rate-limited log line.
* **Streaming calls** (reflection, health Watch) each hold a server thread for as long as the
  client keeps them open — 16 idle reflection streams used to starve every other call. They
  take a slot of their own bounded share (``maxStreams``) or are refused at once with
  ``RESOURCE_EXHAUSTED``; unary calls never wait behind them (see :mod:`.limits`).
* **Unary calls** run inside the :class:`~.limits.FastLane` (at most 16 at once), so a large
  pool does not mean dozens of threads fighting over the GIL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from resolver.component.limits import LOG_SECONDS, FastLane, Slots
from resolver.observability import metrics
from resolver.observability.throttle import Throttle

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    Continuation = Callable[[grpc.HandlerCallDetails], Handler | None]


class Malformed:
    """What the guarded deserializer returns for bytes that are not the expected message."""

    __slots__ = ("method", "size")

    def __init__(self, method: str, size: int) -> None:
        self.method = method
        self.size = size


class CallGuard(grpc.ServerInterceptor):
    def __init__(self, streams: Slots, lane: FastLane) -> None:
        self._streams = streams
        self._lane = lane
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}
        self._malformed_log = Throttle(LOG_SECONDS)

    def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Handler | None:
        handler = continuation(details)
        if handler is None:
            return None
        method = str(details.method)
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        if len(self._wrapped) < 256:  # methods come from our own services; bounded all the same
            self._wrapped[method] = (handler, wrapped)
        return wrapped

    # -- wrapping -------------------------------------------------------------------------

    def _wrap(self, method: str, handler: Handler) -> Handler:
        changes: dict[str, Any] = {}
        if handler.request_deserializer is not None:
            changes["request_deserializer"] = _tolerant(handler.request_deserializer, method)
        if handler.unary_unary is not None:
            changes["unary_unary"] = self._unary(method, handler.unary_unary)
        elif handler.unary_stream is not None:
            changes["unary_stream"] = self._stream(method, handler.unary_stream, request_streaming=False)
        elif handler.stream_stream is not None:
            changes["stream_stream"] = self._stream(method, handler.stream_stream, request_streaming=True)
        elif handler.stream_unary is not None:
            changes["stream_unary"] = self._client_stream(method, handler.stream_unary)
        return handler._replace(**changes)  # type: ignore[attr-defined, no-any-return]

    def _refuse_malformed(self, request: Malformed, context: grpc.ServicerContext) -> None:
        metrics.COMPONENT_MALFORMED.labels(request.method).inc()
        self._malformed_log.log(log, logging.WARNING, "malformed request to %s (%d bytes that do not parse as its "
                                "message) from %s; answered INVALID_ARGUMENT", request.method, request.size,
                                context.peer())
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      f"malformed request: the {request.size} bytes sent to {request.method} are not a valid "
                      "protobuf message of its request type")

    def _checked(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        for request in requests:
            if isinstance(request, Malformed):
                self._refuse_malformed(request, context)
            yield request

    def _unary(self, method: str, behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            if isinstance(request, Malformed):
                self._refuse_malformed(request, context)
            with self._lane.running():
                return behavior(request, context)

        return unary

    def _take_stream_slot(self, method: str, context: grpc.ServicerContext) -> None:
        if not self._streams.try_acquire():
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"too many open streams ({self._streams.capacity}, maxStreams) on this socket; "
                          f"{method} refused: close idle streams or raise maxStreams at start-up")
        released = threading.Event()

        def release() -> None:
            if not released.is_set():
                released.set()
                self._streams.release()

        if not context.add_callback(release):  # the call already ended
            release()

    def _stream(self, method: str, behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]], *,
                request_streaming: bool) -> Callable[..., Iterator[Any]]:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            self._take_stream_slot(method, context)
            if request_streaming:
                request = self._checked(request, context)
            elif isinstance(request, Malformed):
                self._refuse_malformed(request, context)
            yield from behavior(request, context)

        return stream

    def _client_stream(self, method: str, behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
        def client_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            self._take_stream_slot(method, context)
            return behavior(self._checked(requests, context), context)

        return client_stream


def _tolerant(deserialize: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # any parse failure is the client's: report it as such, not as INTERNAL
            return Malformed(method, len(data))

    return parse
