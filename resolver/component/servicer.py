"""The NameResolution gRPC servicer: requests in, :class:`Instances` / :class:`Resolver` calls out.

Errors are mapped to status codes in one place (:func:`resolver.errors.grpc_status_for`, via
:func:`_answer`); a resolver never answers ``UNKNOWN``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from resolver._proto import common_pb2, nameresolution_pb2, nameresolution_pb2_grpc
from resolver.component.instances import Caller, Instances
from resolver.errors import InvalidRequest, NotFound, NotInitialized, ResolverError, grpc_status_for
from resolver.observability import metrics
from resolver.resolution.policy import Policy
from resolver.resolution.resolver import Outcome, Resolver

log = logging.getLogger(__name__)

INSTANCE_HEADER = "x-component-instance"
SERVICE_NAME = nameresolution_pb2.DESCRIPTOR.services_by_name["NameResolution"].full_name
FEATURES: list[str] = []  # no optional features defined for name resolution yet

Response = TypeVar("Response")
Answer = TypeVar("Answer")


def _instance_name(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata():
        if key == INSTANCE_HEADER:
            return str(value)
    return ""


def _answer(rpc: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Turn our exceptions into status codes; log the unexpected ones (never UNKNOWN)."""

    def decorate(method: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(method)
        def wrapper(self: NameResolutionServicer, request: Any, context: grpc.ServicerContext) -> Response:
            try:
                return method(self, request, context)
            except ResolverError as error:
                if not isinstance(error, InvalidRequest | NotFound | NotInitialized):
                    log.warning("%s failed: %s", rpc, error)
                context.abort(grpc_status_for(error), str(error))
            except Exception as error:
                log.exception("%s failed unexpectedly", rpc)
                context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}: {error}")
            raise AssertionError("unreachable: context.abort raises")  # pragma: no cover

        return wrapper

    return decorate


class NameResolutionServicer(nameresolution_pb2_grpc.NameResolutionServicer):
    def __init__(self, instances: Instances) -> None:
        self.instances = instances

    @_answer("Init")
    def Init(self, request: nameresolution_pb2.NameResolutionInitRequest,  # noqa: N802 - gRPC names
             context: grpc.ServicerContext) -> nameresolution_pb2.NameResolutionInitResponse:
        instance = request.instance
        caller = Caller(instance.app_id, instance.namespace, instance.address, instance.dapr_internal_port)
        self.instances.init(_instance_name(context), request.configuration, dict(request.metadata.properties),
                            caller)
        return nameresolution_pb2.NameResolutionInitResponse()

    @_answer("Features")
    def Features(self, request: common_pb2.FeaturesRequest,  # noqa: N802
                 context: grpc.ServicerContext) -> common_pb2.FeaturesResponse:
        return common_pb2.FeaturesResponse(features=FEATURES)

    @_answer("Ping")
    def Ping(self, request: common_pb2.PingRequest,  # noqa: N802
             context: grpc.ServicerContext) -> common_pb2.PingResponse:
        return common_pb2.PingResponse()

    def _measured(self, context: grpc.ServicerContext,
                  resolve: Callable[[Resolver], tuple[Answer, Outcome, Policy]]) -> Answer:
        """Run one resolve for the caller's instance, counting its outcome and timing it."""
        started = time.perf_counter()
        policy = "-"
        try:
            state = self.instances.get(_instance_name(context))
            policy = state.settings.policy.value
            answer, outcome, chosen = resolve(state.resolver)
        except ResolverError as error:
            metrics.count_resolve(_outcome_of(error), policy)
            raise
        metrics.count_resolve(outcome.value, chosen.name.value)
        metrics.RESOLVE_SECONDS.observe(time.perf_counter() - started)
        return answer

    @_answer("ResolveID")
    def ResolveID(self, request: nameresolution_pb2.ResolveRequest,  # noqa: N802
                  context: grpc.ServicerContext) -> nameresolution_pb2.ResolveResponse:
        address = self._measured(context, lambda r: r.resolve(request.id, request.namespace, request.port))
        return nameresolution_pb2.ResolveResponse(address=address)

    @_answer("ResolveIDMulti")
    def ResolveIDMulti(self, request: nameresolution_pb2.ResolveRequest,  # noqa: N802
                       context: grpc.ServicerContext) -> nameresolution_pb2.ResolveMultiResponse:
        addresses = self._measured(context, lambda r: r.resolve_multi(request.id, request.namespace, request.port))
        return nameresolution_pb2.ResolveMultiResponse(addresses=addresses)

    @_answer("Close")
    def Close(self, request: nameresolution_pb2.CloseRequest,  # noqa: N802
              context: grpc.ServicerContext) -> nameresolution_pb2.CloseResponse:
        self.instances.close(_instance_name(context))
        return nameresolution_pb2.CloseResponse()


def _outcome_of(error: ResolverError) -> str:
    if isinstance(error, InvalidRequest):
        return "invalid"
    if isinstance(error, NotFound):
        return "not_found"
    if isinstance(error, NotInitialized):
        return "uninitialized"
    return "error"
