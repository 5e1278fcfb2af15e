"""Serving the component on a Unix socket, as daprd discovers pluggable components.

* The socket is ``{socket_dir}/{name}.sock``, prepared by :mod:`.socket_dir` (directory
  ownership checked, created 0750 if missing; a stale socket replaced, a live one or a
  non-socket never removed). The socket is created with mode 0660 so only the owner and group
  (daprd's, via a shared volume) can connect.
* Besides NameResolution it serves gRPC reflection v1alpha (daprd's discovery lists services
  through it) and ``grpc.health.v1.Health`` — overall, the NameResolution service, ``registry``
  (NOT_SERVING until every registry this process reads has synced and while one is
  disconnected; a change is logged naming the unhealthy instances) and ``registry/<instance>``
  for one component instance (Check only).
* **Server model.** grpc's synchronous server, chosen because it is the cheapest per call here
  (about 238 µs of server CPU per resolve at concurrency 8 against about 389 µs for grpc.aio),
  with its one thread pool divided by concern so that no client can starve another: streams
  (``maxStreams``), resolves waiting for a first sync (``maxSyncWaits``), Init/Close
  (:data:`~.limits.ADMIN_SLOTS`) and :data:`~.limits.UNARY_WORKERS` threads that only ever run
  calls that finish in microseconds. A concern over its share is refused at once (or, for a
  first-sync wait, answered with the fallback at once) — see :mod:`.guard` and :mod:`.servicer`.
  Unary handlers run inside a :class:`~.limits.FastLane` of 16, so the big pool does not turn
  into dozens of threads contending for the GIL under load.
* SIGTERM/SIGINT: health turns NOT_SERVING, in-flight calls get ``grace`` seconds to finish,
  instances close (self-registrations are deleted), the socket is removed, exit 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from resolver._proto import nameresolution_pb2_grpc
from resolver.component.guard import CallGuard
from resolver.component.instances import Instances
from resolver.component.limits import ADMIN_SLOTS, UNARY_WORKERS, FastLane, Slots
from resolver.component.servicer import SERVICE_NAME, NameResolutionServicer
from resolver.component.socket_dir import prepare_socket
from resolver.errors import ResolverError, SocketInUse, UnsafeSocketDir
from resolver.registry.supervised import SupervisedReader

__all__ = ["DEFAULT_SOCKET_DIR", "SOCKET_MODE", "RunningServer", "SocketInUse", "UnsafeSocketDir",
           "default_socket_dir", "prepare_socket", "serve_until_signalled", "start_server"]

log = logging.getLogger(__name__)

DEFAULT_SOCKET_DIR = "/tmp/dapr-components-sockets"  # noqa: S108 - daprd's fixed default (checked: socket_dir)
SOCKET_MODE = 0o660
REGISTRY_HEALTH = "registry"
MAX_REQUEST_BYTES = 64 * 1024
"""Largest request accepted (a resolve is ~100 bytes; an Init with a big policies JSON a few KiB)."""
QUEUED_CALLS = 256
"""Calls accepted beyond the worker threads (queued); more are refused RESOURCE_EXHAUSTED by grpc."""


def default_socket_dir() -> str:
    return os.environ.get("DAPR_COMPONENTS_SOCKETS_FOLDER") or DEFAULT_SOCKET_DIR


def reader_problem(reader: SupervisedReader) -> str | None:
    """Why ``reader`` is not healthy (never synced, etcd unreachable, no quorum, reader failed), or None."""
    if reader.failure is not None:
        return f"reader failed: {reader.failure}"
    if not reader.synced:
        return "never synced"
    if reader.no_quorum:
        return "etcd member has no leader (no quorum)"
    if not reader.connected:
        return f"etcd unreachable for {reader.unreachable_for():.0f}s"
    return None


REGISTRY_SYNCED_HEALTH = "registry-synced"
"""SERVING once every registry in use has synced at least once: with ``registry`` NOT_SERVING it
means "serving the last known state" (``probe`` exit 3), not "never synced" (exit 4)."""


PROBLEM_TRAILER = "x-registry-problem"
"""Trailing metadata of a ``registry`` health check that is not SERVING: which instance, and why."""


class ComponentHealth(health.HealthServicer):  # type: ignore[misc]
    """grpc's health servicer, plus ``registry/<instance>`` answered from the instance's reader.

    A health status cannot carry text, so a ``registry`` or ``registry/<instance>`` check that
    is not SERVING says why in the :data:`PROBLEM_TRAILER` trailing metadata
    (``bad: never synced``) — for ``probe`` and for operators using grpcurl.
    """

    def __init__(self, instances: Instances) -> None:
        super().__init__()
        self._instances = instances
        self.problems = ""

    def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        service = str(request.service)
        if service.startswith(REGISTRY_HEALTH + "/"):
            name = service[len(REGISTRY_HEALTH) + 1:]
            try:
                state = self._instances.get(name)
            except ResolverError:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no initialized component instance for {service[:300]!r}")
            problem = reader_problem(state.reader)
            if problem is not None:
                _explain(context, f"{name}: {problem}")
            return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING if problem is None
                                                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        if service == REGISTRY_HEALTH and self.problems:
            _explain(context, self.problems)
        return super().Check(request, context)


def _explain(context: grpc.ServicerContext, text: str) -> None:
    printable = text.encode("ascii", "replace").decode()[:1000]
    context.set_trailing_metadata(((PROBLEM_TRAILER, printable),))


@dataclass
class RunningServer:
    server: grpc.Server
    health: health.HealthServicer
    instances: Instances
    socket_path: Path
    _stop_health: threading.Event
    _stopping: threading.Event

    def stop(self, grace: float) -> None:
        """Graceful shutdown: NOT_SERVING, drain in-flight calls, close instances, remove the socket."""
        self._stop_health.set()
        self._stopping.set()  # resolves waiting for a first sync answer the fallback now
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait(grace + 1)
        self.instances.close_all()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        log.info("stopped; removed %s", self.socket_path)


def start_server(instances: Instances, socket_path: Path,
                 servicer: nameresolution_pb2_grpc.NameResolutionServicer | None = None) -> RunningServer:
    """Bind and start; ``servicer`` replaces ours (the benchmarks' constant-answer baseline)."""
    prepare_socket(socket_path)
    caps = instances.limits
    workers = caps.max_streams + caps.max_sync_waits + ADMIN_SLOTS + UNARY_WORKERS
    streams = Slots("streams", caps.max_streams, "streams are already open (maxStreams); new ones refused")
    lane = FastLane()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
                         interceptors=[CallGuard(streams, lane)],
                         options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES)],
                         maximum_concurrent_rpcs=workers + QUEUED_CALLS)
    ours = NameResolutionServicer(instances, lane)
    nameresolution_pb2_grpc.add_NameResolutionServicer_to_server(  # type: ignore[no-untyped-call]
        servicer or ours, server)
    health_servicer = ComponentHealth(instances)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server)
    previous_umask = os.umask(0o777 & ~SOCKET_MODE)
    try:
        if server.add_insecure_port(f"unix:{socket_path}") == 0:
            raise SocketInUse(f"could not bind {socket_path}")
        server.start()
    finally:
        os.umask(previous_umask)
    os.chmod(socket_path, SOCKET_MODE)
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    for service in (REGISTRY_HEALTH, REGISTRY_SYNCED_HEALTH):
        health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)  # until the first check
    stop_health = threading.Event()
    threading.Thread(target=_report_registry_health, args=(health_servicer, instances, stop_health),
                     name="registry-health", daemon=True).start()
    log.info("serving %s on %s (reflection v1alpha, grpc.health.v1; %d threads: %d streams, %d first-sync "
             "waits, %d Init/Close, %d other calls)", SERVICE_NAME, socket_path, workers, caps.max_streams,
             caps.max_sync_waits, ADMIN_SLOTS, UNARY_WORKERS)
    return RunningServer(server, health_servicer, instances, socket_path, stop_health, ours.stopping)


def _report_registry_health(servicer: ComponentHealth, instances: Instances, stop: threading.Event) -> None:
    """``registry`` is SERVING only while every registry in use has synced and is connected."""
    last: tuple[int, str] | None = None
    last_synced: int | None = None
    while not stop.is_set():
        states = instances.states()
        synced = health_pb2.HealthCheckResponse.SERVING if states and all(
            state.reader.synced for state in states.values()) else health_pb2.HealthCheckResponse.NOT_SERVING
        if synced != last_synced:
            servicer.set(REGISTRY_SYNCED_HEALTH, synced)
            last_synced = synced
        problems = []
        for name, state in sorted(states.items()):
            problem = reader_problem(state.reader)
            if problem is not None:
                problems.append(f"{name or '(start-up configuration)'}: {problem.split(' for ')[0]}")
        ok = bool(states) and not problems
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        summary = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        if not states:
            summary = "no component instance yet: waiting for Init (or start serve with --config/--set)"
        servicer.problems = summary
        if last is None or (status, summary) != last:
            servicer.set(REGISTRY_HEALTH, status)
            if last is not None or problems:
                log.log(logging.INFO if ok else logging.WARNING, "registry health %s%s",
                        health_pb2.HealthCheckResponse.ServingStatus.Name(status),
                        f" (instances: {summary})" if summary else "")
            last = (status, summary)
        stop.wait(0.2)


def serve_until_signalled(instances: Instances, socket_path: Path, grace: float) -> int:
    """Run until SIGTERM/SIGINT, then shut down gracefully; returns the exit code."""
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    running = start_server(instances, socket_path)
    stop.wait()
    log.info("received %s: shutting down (grace %.1fs)", signal.Signals(received[0]).name, grace)
    running.stop(grace)
    return 0
