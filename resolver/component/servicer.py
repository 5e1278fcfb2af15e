"""The NameResolution gRPC servicer: requests in, :class:`Instances` / :class:`Resolver` calls out.

Errors are mapped to status codes by one table (:mod:`.grpc_status`, applied in :func:`_answer`); a
resolver never answers ``UNKNOWN``, and error details are cut to :data:`MAX_DETAILS` characters
(an error echoing an 18 KB value used to exceed gRPC's metadata limit and turn into
``RESOURCE_EXHAUSTED``).

No call waits behind another client's: a resolve the registry is not ready for yet (its first
sync; on demand, also the app's first read) waits (at most ``initialSyncWait``) only while one
of ``maxSyncWaits`` slots is free — otherwise it
gets the fallback at once, exactly as when the wait expires; Init and Close, which may wait
for etcd, take one of :data:`~resolver.component.limits.ADMIN_SLOTS` or are refused at once.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from resolver._proto import common_pb2, nameresolution_pb2, nameresolution_pb2_grpc
from resolver.component.grpc_status import status_for
from resolver.component.instances import Caller, Instances
from resolver.component.limits import ADMIN_SLOTS, LOG_SECONDS, FastLane, Slots
from resolver.errors import (
    InvalidRequest,
    LimitReached,
    NotFound,
    NotInitialized,
    ResolverError,
)
from resolver.observability import metrics
from resolver.observability.throttle import Throttle
from resolver.resolution.policy import Policy
from resolver.resolution.resolver import Outcome, Resolver, Target

log = logging.getLogger(__name__)

INSTANCE_HEADER = "x-component-instance"
MAX_INSTANCE_NAME = 253
"""Longest ``x-component-instance`` accepted (a Dapr component name is a DNS-1123 subdomain)."""
MAX_DETAILS = 1000
"""Longest error text sent back to a client."""
SERVICE_NAME = nameresolution_pb2.DESCRIPTOR.services_by_name["NameResolution"].full_name
FEATURES: list[str] = []  # no optional features defined for name resolution yet

Response = TypeVar("Response")
Answer = TypeVar("Answer")


def instance_name(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata():
        if key == INSTANCE_HEADER:
            name = str(value)
            if len(name) > MAX_INSTANCE_NAME:
                raise InvalidRequest(INSTANCE_HEADER, f"longer than {MAX_INSTANCE_NAME} characters")
            return name
    return ""


def _answer(rpc: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Turn our exceptions into status codes; log the unexpected ones (never UNKNOWN)."""

    failures = Throttle(LOG_SECONDS)

    def decorate(method: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(method)
        def wrapper(self: NameResolutionServicer, request: Any, context: grpc.ServicerContext) -> Response:
            try:
                return method(self, request, context)
            except ResolverError as error:
                if not isinstance(error, InvalidRequest | NotFound | NotInitialized | LimitReached):
                    failures.log(log, logging.WARNING, "%s failed: %s", rpc, str(error)[:MAX_DETAILS])
                context.abort(status_for(error), str(error)[:MAX_DETAILS])
            except Exception as error:
                log.exception("%s failed unexpectedly", rpc)
                context.abort(grpc.StatusCode.INTERNAL,
                              f"internal error: {type(error).__name__}: {str(error)[:MAX_DETAILS]}")
            raise AssertionError("unreachable: context.abort raises")  # pragma: no cover

        return wrapper

    return decorate


class NameResolutionServicer(nameresolution_pb2_grpc.NameResolutionServicer):
    def __init__(self, instances: Instances, lane: FastLane | None = None) -> None:
        self.instances = instances
        self.lane = lane or FastLane()
        self.sync_waits = Slots("sync_waits", instances.limits.max_sync_waits,
                                "resolves already wait for a first registry sync (maxSyncWaits); answered "
                                "with the fallback")
        self.admin = Slots("admin", ADMIN_SLOTS, "Init/Close calls already running")
        self.stopping = threading.Event()
        """Set on shutdown: first-sync waits end at once with the fallback."""

    def _admin_slot(self, rpc: str) -> None:
        if not self.admin.try_acquire():
            raise LimitReached(f"{ADMIN_SLOTS} Init/Close calls are already running on this socket; "
                               f"{rpc} refused, retry shortly")

    @_answer("Init")
    def Init(self, request: nameresolution_pb2.NameResolutionInitRequest,  # noqa: N802 - gRPC names
             context: grpc.ServicerContext) -> nameresolution_pb2.NameResolutionInitResponse:
        name = instance_name(context)
        instance = request.instance
        caller = Caller(instance.app_id, instance.namespace, instance.address, instance.dapr_internal_port)
        self._admin_slot("Init")
        try:
            with self.lane.stepped_off():
                self.instances.init(name, request.configuration, dict(request.metadata.properties), caller)
        finally:
            self.admin.release()
        return nameresolution_pb2.NameResolutionInitResponse()

    @_answer("Features")
    def Features(self, request: common_pb2.FeaturesRequest,  # noqa: N802
                 context: grpc.ServicerContext) -> common_pb2.FeaturesResponse:
        return common_pb2.FeaturesResponse(features=FEATURES)

    @_answer("Ping")
    def Ping(self, request: common_pb2.PingRequest,  # noqa: N802
             context: grpc.ServicerContext) -> common_pb2.PingResponse:
        return common_pb2.PingResponse()

    def _measured(self, context: grpc.ServicerContext, request: nameresolution_pb2.ResolveRequest,
                  resolve: Callable[[Resolver, Target, int, str], tuple[Answer, Outcome, Policy]],
                  fallback: Callable[[str], Answer]) -> Answer:
        """Run one resolve for the caller's instance, counting its outcome and timing it.

        The request is validated, and the fallback made, by the resolver (:meth:`Resolver.request`,
        :meth:`Resolver.fallback`): the only thing decided here is where a resolve that must wait
        for the registry waits (see :meth:`_waited_until_ready`). The caller's zone is the
        instance's (:mod:`resolver.component.caller_zone`).
        """
        started = time.perf_counter()
        policy = "-"
        try:
            state = self.instances.get(instance_name(context))
            policy = state.settings.policy.value
            resolver = state.resolver
            target, port = resolver.request(request.id, request.namespace, request.port)
            if resolver.would_wait(target) and not self._waited_until_ready(resolver, target):
                answer = fallback(resolver.fallback(target, port))
                metrics.count_resolve(Outcome.FALLBACK.value, policy)
                return answer
            answer, outcome, chosen = resolve(resolver, target, port, state.caller_zone.current())
        except ResolverError as error:
            metrics.count_resolve(_outcome_of(error), policy)
            raise
        metrics.count_resolve(outcome.value, chosen.name.value)
        metrics.RESOLVE_SECONDS.observe(time.perf_counter() - started)
        return answer

    def _waited_until_ready(self, resolver: Resolver, target: Target) -> bool:
        """Wait (off the fast lane, in one of ``maxSyncWaits`` slots) until the registry can answer
        ``target``; True if it came to.

        The wait is ours rather than the resolve's so that it ends at once on shutdown
        (``stopping``): a SIGTERM must not wait up to ``initialSyncWait`` for blocked resolves.
        What is waited for is the reader's business — the first sync, and in the on-demand scope
        also the first read of the app's records (bounded by ``etcdTimeout``) — but it is never
        waited for on the fast lane.
        """
        if not self.sync_waits.try_acquire():
            return False
        try:
            with self.lane.stepped_off():
                return resolver.wait_until_ready(target, self.stopping)
        finally:
            self.sync_waits.release()

    @_answer("ResolveID")
    def ResolveID(self, request: nameresolution_pb2.ResolveRequest,  # noqa: N802
                  context: grpc.ServicerContext) -> nameresolution_pb2.ResolveResponse:
        address = self._measured(context, request, Resolver.answer, str)
        return nameresolution_pb2.ResolveResponse(address=address)

    @_answer("ResolveIDMulti")
    def ResolveIDMulti(self, request: nameresolution_pb2.ResolveRequest,  # noqa: N802
                       context: grpc.ServicerContext) -> nameresolution_pb2.ResolveMultiResponse:
        addresses = self._measured(context, request, Resolver.answer_multi, lambda address: [address])
        return nameresolution_pb2.ResolveMultiResponse(addresses=addresses)

    @_answer("Close")
    def Close(self, request: nameresolution_pb2.CloseRequest,  # noqa: N802
              context: grpc.ServicerContext) -> nameresolution_pb2.CloseResponse:
        name = instance_name(context)
        self._admin_slot("Close")
        try:
            with self.lane.stepped_off():
                self.instances.close(name)
        finally:
            self.admin.release()
        return nameresolution_pb2.CloseResponse()


def _outcome_of(error: ResolverError) -> str:
    if isinstance(error, InvalidRequest):
        return "invalid"
    if isinstance(error, NotFound):
        return "not_found"
    if isinstance(error, NotInitialized):
        return "uninitialized"
    if isinstance(error, LimitReached):
        return "limited"
    return "error"
