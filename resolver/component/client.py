"""A client that talks to the component exactly as daprd does.

daprd finds pluggable components by listing the sockets in its components folder, asking
each one through gRPC reflection **v1alpha** which services it serves, and then calling them
with the component's name in the ``x-component-instance`` header. The demo, the tests and the
benchmarks all use this client, so they exercise the same path daprd would.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from resolver._proto import common_pb2, nameresolution_pb2, nameresolution_pb2_grpc
from resolver.component.servicer import INSTANCE_HEADER


class ComponentClient:
    def __init__(self, socket_path: str | Path, instance: str = "etcd", timeout: float = 10.0) -> None:
        self.channel = grpc.insecure_channel(f"unix:{Path(socket_path).absolute()}")
        self.stub = nameresolution_pb2_grpc.NameResolutionStub(channel=self.channel)  # type: ignore[no-untyped-call]
        self.metadata = ((INSTANCE_HEADER, instance),)
        self.timeout = timeout

    def list_services(self) -> list[str]:
        """The services the socket offers, through reflection v1alpha (daprd's discovery step)."""
        stub = reflection_pb2_grpc.ServerReflectionStub(self.channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = stub.ServerReflectionInfo(iter([request]), timeout=self.timeout)
        return sorted(service.name for response in responses
                      for service in response.list_services_response.service)

    def health(self, service: str = "") -> str:
        stub = health_pb2_grpc.HealthStub(self.channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    def init(self, configuration: Mapping[str, Any] | str = "", properties: Mapping[str, str] | None = None,
             *, app_id: str = "caller", namespace: str = "default", address: str = "127.0.0.1",
             internal_port: int = 50002) -> None:
        text = configuration if isinstance(configuration, str) else json.dumps(configuration)
        request = nameresolution_pb2.NameResolutionInitRequest(
            metadata=common_pb2.MetadataRequest(properties=dict(properties or {})),
            instance=nameresolution_pb2.Instance(app_id=app_id, namespace=namespace, address=address,
                                                 dapr_internal_port=internal_port),
            configuration=text)
        self.stub.Init(request, metadata=self.metadata, timeout=self.timeout)

    def resolve(self, app_id: str, namespace: str = "", port: int = 50002) -> str:
        request = nameresolution_pb2.ResolveRequest(id=app_id, namespace=namespace, port=port)
        return str(self.stub.ResolveID(request, metadata=self.metadata, timeout=self.timeout).address)

    def resolve_multi(self, app_id: str, namespace: str = "", port: int = 50002) -> list[str]:
        request = nameresolution_pb2.ResolveRequest(id=app_id, namespace=namespace, port=port)
        return list(self.stub.ResolveIDMulti(request, metadata=self.metadata, timeout=self.timeout).addresses)

    def features(self) -> list[str]:
        return list(self.stub.Features(common_pb2.FeaturesRequest(), metadata=self.metadata,
                                       timeout=self.timeout).features)

    def ping(self) -> None:
        self.stub.Ping(common_pb2.PingRequest(), metadata=self.metadata, timeout=self.timeout)

    def close_instance(self) -> None:
        """The Close RPC (Dapr's Resolver is an io.Closer)."""
        self.stub.Close(nameresolution_pb2.CloseRequest(), metadata=self.metadata, timeout=self.timeout)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ComponentClient:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()
