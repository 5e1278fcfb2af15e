"""The baseline for bench/resolve_throughput.py: our server stack, with a servicer that returns a constant.

Same grpc.server, thread pool, reflection and health as ``serve`` (it calls the same
``start_server``), so the difference between the two is exactly the cost of resolving.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import grpc

from resolver._proto import nameresolution_pb2, nameresolution_pb2_grpc
from resolver.component.instances import Instances
from resolver.component.server import start_server


class ConstantServicer(nameresolution_pb2_grpc.NameResolutionServicer):
    def ResolveID(self, request: nameresolution_pb2.ResolveRequest,  # noqa: N802
                  context: grpc.ServicerContext) -> nameresolution_pb2.ResolveResponse:
        return nameresolution_pb2.ResolveResponse(address="10.0.0.1:50002")


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    running = start_server(Instances([], False), Path(sys.argv[1]), servicer=ConstantServicer())
    stop.wait()
    running.stop(1)


if __name__ == "__main__":
    main()
