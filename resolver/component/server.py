"""Serving the component on a Unix socket, as daprd discovers pluggable components.

* The socket is ``{socket_dir}/{name}.sock``; the directory is created if missing; a stale
  socket file (nothing answers on it) is removed; a live one makes us refuse to start; a
  path that is not a socket is never removed. The socket is created with mode 0660 so only
  the owner and group (daprd's, via a shared volume) can connect.
* Besides NameResolution it serves gRPC reflection v1alpha (daprd's discovery lists services
  through it) and ``grpc.health.v1.Health`` — overall, the NameResolution service, and
  ``registry`` (NOT_SERVING until every registry this process reads has synced).
* SIGTERM/SIGINT: health turns NOT_SERVING, in-flight calls get ``grace`` seconds to finish,
  instances close (self-registrations are deleted), the socket is removed, exit 0.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import stat
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from resolver._proto import nameresolution_pb2_grpc
from resolver.component.instances import Instances
from resolver.component.servicer import SERVICE_NAME, NameResolutionServicer
from resolver.errors import ResolverError

log = logging.getLogger(__name__)

DEFAULT_SOCKET_DIR = "/tmp/dapr-components-sockets"  # noqa: S108 - Dapr's documented default
SOCKET_MODE = 0o660
REGISTRY_HEALTH = "registry"
MAX_REQUEST_BYTES = 64 * 1024
"""Largest request accepted (a resolve is ~100 bytes; an Init with a big policies JSON a few KiB)."""


class SocketInUse(ResolverError):
    """Another live server answers on the socket, or the path is not a socket."""


def default_socket_dir() -> str:
    return os.environ.get("DAPR_COMPONENTS_SOCKETS_FOLDER") or DEFAULT_SOCKET_DIR


def _socket_answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        return True
    except OSError as error:
        if error.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        raise
    finally:
        probe.close()


def prepare_socket(path: Path) -> None:
    """Make ``path`` free to bind: create its directory, remove a stale socket, refuse a live one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketInUse(f"{path} exists and is not a socket; refusing to remove it")
    if _socket_answers(path):
        raise SocketInUse(f"another server is already answering on {path}")
    log.info("removing stale socket %s", path)
    path.unlink()


@dataclass
class RunningServer:
    server: grpc.Server
    health: health.HealthServicer
    instances: Instances
    socket_path: Path
    _stop_health: threading.Event

    def stop(self, grace: float) -> None:
        """Graceful shutdown: NOT_SERVING, drain in-flight calls, close instances, remove the socket."""
        self._stop_health.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait(grace + 1)
        self.instances.close_all()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        log.info("stopped; removed %s", self.socket_path)


def start_server(instances: Instances, socket_path: Path, max_workers: int = 16,
                 servicer: nameresolution_pb2_grpc.NameResolutionServicer | None = None) -> RunningServer:
    """Bind and start; ``servicer`` replaces ours (the benchmarks' constant-answer baseline)."""
    prepare_socket(socket_path)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
                         options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES)])
    nameresolution_pb2_grpc.add_NameResolutionServicer_to_server(  # type: ignore[no-untyped-call]
        servicer or NameResolutionServicer(instances), server)
    health_servicer = health.HealthServicer()
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
    stop_health = threading.Event()
    threading.Thread(target=_report_registry_health, args=(health_servicer, instances, stop_health),
                     name="registry-health", daemon=True).start()
    log.info("serving %s on %s (reflection v1alpha, grpc.health.v1)", SERVICE_NAME, socket_path)
    return RunningServer(server, health_servicer, instances, socket_path, stop_health)


def _report_registry_health(servicer: health.HealthServicer, instances: Instances, stop: threading.Event) -> None:
    """``registry`` is SERVING only while every registry in use has synced and is connected."""
    last = None
    while not stop.wait(0.2):
        readers = instances.readers()
        ok = bool(readers) and all(reader.synced and reader.connected for reader in readers)
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        if status != last:
            servicer.set(REGISTRY_HEALTH, status)
            last = status


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
