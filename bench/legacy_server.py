"""The component's server path as it was before the hostile-client work, kept as a baseline.

Same servicer and instances as ``serve``, but the previous server model: grpc's synchronous
server with one 16-thread pool, no interceptor and no per-concern shares (16 idle streams
starved it). bench/resolve_throughput.py runs it next to the current one to report the
server's CPU per call before and after in one run.

    python bench/legacy_server.py SOCKET_PATH KEY=VALUE...
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from resolver._proto import nameresolution_pb2_grpc
from resolver.component.instances import Instances
from resolver.component.servicer import SERVICE_NAME, NameResolutionServicer
from resolver.config import set_layer


def main() -> None:
    socket_path = Path(sys.argv[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    instances = Instances([set_layer(sys.argv[2:])], True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="rpc"),
                         options=[("grpc.max_receive_message_length", 64 * 1024)])
    nameresolution_pb2_grpc.add_NameResolutionServicer_to_server(  # type: ignore[no-untyped-call]
        NameResolutionServicer(instances), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server)
    server.add_insecure_port(f"unix:{socket_path}")
    server.start()
    stop.wait()
    server.stop(1).wait(2)
    instances.close_all()


if __name__ == "__main__":
    main()
