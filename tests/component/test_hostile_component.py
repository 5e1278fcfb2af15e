"""The component under hostile (or buggy) clients: each one costs itself, not everyone else.

Everything runs on loopback / a Unix socket against ``serve`` as a real subprocess; every
wait has a deadline and every flood a fixed size.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from resolver._proto import nameresolution_pb2, nameresolution_pb2_grpc
from resolver.component.client import ComponentClient
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd, free_port
from resolver.records.schema import Keys
from tests.conftest import eventually, put_record, record
from tests.support.component import status_of

INSTANCE = "x-component-instance"


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def timed(call: object, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    return samples


class IdleStreams:
    """``count`` reflection streams that are opened and then never send (or read) anything."""

    def __init__(self, socket_path: Path, count: int) -> None:
        self.release = threading.Event()
        self.channel = grpc.insecure_channel(f"unix:{socket_path}")
        stub = reflection_pb2_grpc.ServerReflectionStub(self.channel)
        self.calls = [stub.ServerReflectionInfo(self._never(), timeout=60) for _ in range(count)]

    def _never(self) -> Iterator[reflection_pb2.ServerReflectionRequest]:
        self.release.wait(60)
        yield from ()  # a generator that never yields a request

    def close(self) -> None:
        self.release.set()
        for call in self.calls:
            call.cancel()
        self.channel.close()


def test_idle_streams_and_blocked_resolves_do_not_delay_anyone_else(serve, etcd: LocalEtcd, prefix: str,
                                                                    gateway: EtcdGateway, keys: Keys) -> None:
    """200 idle streams + 100 resolves blocked on a registry that never syncs: Ping, Health and a
    synced instance's resolves are not held up behind them (16 idle streams used to stall
    everything for seconds). Speed itself is the benchmark's (bench/hostile_streams.py); the
    bound here is one that only head-of-line blocking crosses, even on a loaded machine."""
    put_record(gateway, keys, record("orders", address="10.1.0.9"))
    server = serve()
    unreachable = f"127.0.0.1:{free_port()}"
    with server.client("synced") as synced, server.client("blocked") as blocked:
        synced.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix})
        eventually(lambda: synced.resolve("orders") == "10.1.0.9:50002", 10, "the synced instance")
        blocked.init({"etcdEndpoints": unreachable, "prefix": prefix, "initialSyncWait": "20s",
                      "etcdTimeout": "500ms"})
        streams = IdleStreams(server.socket_path, 200)
        stub = nameresolution_pb2_grpc.NameResolutionStub(blocked.channel)
        waiting = [stub.ResolveID.future(nameresolution_pb2.ResolveRequest(id=f"app{i}", port=50002),
                                         metadata=((INSTANCE, "blocked"),), timeout=30) for i in range(100)]
        try:
            # over maxSyncWaits (32 by default) a blocked resolve gets the fallback at once
            eventually(lambda: sum(f.done() for f in waiting) >= 100 - 32, 10, "the over-cap resolves' fallback")
            answered = [f.result() for f in waiting if f.done()]
            assert all(a.address.endswith(".svc.cluster.local:50002") for a in answered)
            assert sum(not f.done() for f in waiting) == 32  # the rest really are waiting
            health = health_pb2_grpc.HealthStub(synced.channel)
            latencies = {
                "ping": timed(synced.ping, 300),
                "health": timed(lambda: health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5), 300),
                "resolve": timed(lambda: synced.resolve("orders"), 300),
            }
            for name, samples in latencies.items():
                assert p99(samples) < 1.0, f"{name} p99 {p99(samples) * 1000:.1f} ms"
            assert synced.list_services()  # discovery still works: 200 streams are under maxStreams
        finally:
            streams.close()
            for future in waiting:
                future.cancel()
    assert server.alive()


def test_streams_over_the_cap_are_refused_at_once(serve) -> None:
    server = serve("--set", "maxStreams=4")
    streams = IdleStreams(server.socket_path, 4)
    try:
        with server.client() as client:
            # Wait on the refusal itself: the log line alone could come from one of the four idle
            # streams refused while another had not yet been set up (seen once on a loaded CI run).
            eventually(lambda: _stream_refused(client), 10, "the fifth stream to be refused")
            assert status_of(client.list_services) == grpc.StatusCode.RESOURCE_EXHAUSTED
            client.ping()
            assert client.health() == "SERVING"
    finally:
        streams.close()
    with server.client() as client:  # closed streams give their slots back
        eventually(client.list_services, 10, "a stream slot")
    assert "maxStreams" in server.output()


def _stream_refused(client: object) -> bool:
    return status_of(client.list_services) == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_init_storms_hit_the_instance_and_registry_caps(serve, etcd: LocalEtcd, prefix: str) -> None:
    server = serve("--set", "maxInstances=6", "--set", "maxRegistries=3")
    base = _threads(server.pid)
    codes = []
    for i in range(40):  # distinct prefixes: each would be a new registry (watch + cache + threads)
        with server.client(f"storm-{i}") as client:
            codes.append(_init_code(client, {"etcdEndpoints": etcd.endpoint, "prefix": f"{prefix}/{i}"}))
    assert codes[:3] == [grpc.StatusCode.OK] * 3
    assert set(codes[3:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    shared = {"etcdEndpoints": etcd.endpoint, "prefix": f"{prefix}/0"}
    for i in range(3, 6):
        with server.client(f"storm-{i}") as client:
            client.init(shared)  # the same etcd settings share a registry: only the instance cap counts
    with server.client("one-too-many") as client:
        assert status_of(lambda: client.init(shared)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    with server.client("storm-1") as client:
        client.close_instance()
    with server.client("one-too-many") as client:
        client.init(shared)  # Close gave its slot back
        assert status_of(lambda: client.init({**shared, "maxInstances": 1000})) == grpc.StatusCode.INVALID_ARGUMENT
    assert _threads(server.pid) < base + 40
    assert "limit reached: registries" in server.output() and "limit reached: instances" in server.output()


def _init_code(client: ComponentClient, configuration: dict[str, object]) -> grpc.StatusCode:
    try:
        client.init(configuration)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


METHODS = {
    "/dapr.proto.components.v1.NameResolution/Init": "unary",
    "/dapr.proto.components.v1.NameResolution/Features": "unary",
    "/dapr.proto.components.v1.NameResolution/Ping": "unary",
    "/dapr.proto.components.v1.NameResolution/ResolveID": "unary",
    "/dapr.proto.components.v1.NameResolution/ResolveIDMulti": "unary",
    "/dapr.proto.components.v1.NameResolution/Close": "unary",
    "/grpc.health.v1.Health/Check": "unary",
    "/grpc.health.v1.Health/Watch": "server-stream",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": "bidi",
}
GARBAGE = b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"  # a length-delimited field with an impossible length


def test_malformed_protobuf_is_invalid_argument_with_a_rate_limited_log(serve) -> None:
    server = serve()
    with grpc.insecure_channel(f"unix:{server.socket_path}") as channel:
        for method, kind in METHODS.items():
            for _ in range(20):
                if kind == "unary":
                    call: Any = channel.unary_unary(method)  # raw bytes: no serializer, no message type
                    with pytest.raises(grpc.RpcError) as raised:
                        call(GARBAGE, timeout=5)
                elif kind == "server-stream":
                    with pytest.raises(grpc.RpcError) as raised:
                        list(cast(Any, channel.unary_stream(method))(GARBAGE, timeout=5))
                else:
                    with pytest.raises(grpc.RpcError) as raised:
                        list(cast(Any, channel.stream_stream(method))(iter([GARBAGE]), timeout=5))
                assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
                assert "malformed request" in (raised.value.details() or "")
    with server.client() as client:
        client.ping()
    output = server.output()
    assert "Traceback" not in output and "Exception deserializing" not in output
    logged = [line for line in output.splitlines() if "malformed request" in line]
    assert 1 <= len(logged) <= 3, logged  # 180 bad requests, one line per 10 s


def test_closed_instance_stays_closed_until_the_next_init(serve, etcd: LocalEtcd, prefix: str) -> None:
    server = serve("--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}")
    with server.client("mine") as client:
        client.init({"clusterDomain": "mine.local"})
        assert client.resolve("a").endswith(".svc.mine.local:50002")
        client.close_instance()
        with pytest.raises(grpc.RpcError) as raised:
            client.resolve("a")  # not silently the start-up configuration again
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "was closed" in (raised.value.details() or "")
        client.init({"clusterDomain": "again.local"})
        assert client.resolve("a").endswith(".svc.again.local:50002")
    with server.client("never-initialized") as other:
        assert other.resolve("a").endswith(".svc.cluster.local:50002")  # start-up configuration


def test_registry_health_is_per_instance(serve, etcd: LocalEtcd, prefix: str) -> None:
    server = serve()
    with server.client("good") as good, server.client("bad") as bad:
        good.init({"etcdEndpoints": etcd.endpoint, "prefix": prefix})
        eventually(lambda: good.health("registry/good") == "SERVING", 10, "good instance healthy")
        bad.init({"etcdEndpoints": f"127.0.0.1:{free_port()}", "prefix": prefix, "etcdTimeout": "500ms"})
        assert good.health("registry/bad") == "NOT_SERVING"
        assert good.health("registry/good") == "SERVING"
        eventually(lambda: good.health("registry") == "NOT_SERVING", 5, "process-wide registry health")
        assert status_of(lambda: good.health("registry/nobody")) == grpc.StatusCode.NOT_FOUND
        stub = health_pb2_grpc.HealthStub(good.channel)
        for service in ("registry", "registry/bad"):  # the status cannot say why: the trailer does
            def explained(name: str = service) -> bool:
                return _problem(stub, name) == "bad: never synced"

            eventually(explained, 5, f"{service} explained")
    eventually(lambda: "registry health NOT_SERVING (instances: bad: never synced)" in server.output(), 5,
               "the log line naming the unhealthy instance")


def _problem(stub: health_pb2_grpc.HealthStub, service: str) -> str | None:
    _, call = stub.Check.with_call(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return dict(call.trailing_metadata()).get("x-registry-problem")


def test_oversized_and_deep_init_values_are_short_invalid_arguments(serve, etcd: LocalEtcd, prefix: str) -> None:
    server = serve()
    huge_weights = ",".join(f"cluster-{i}=x{i}" for i in range(2000))  # ~18 KB, used to hit the metadata limit
    with server.client() as client:
        cases = [({"clusterWeights": huge_weights}, {}, "clusterWeights"),
                 ('{"policies": ' + "[" * 2000 + "]" * 2000 + "}", {}, "configuration"),
                 ('{"etcdTimeout": NaN}', {}, "configuration"),
                 ('{"etcdTimeout": Infinity}', {}, "configuration"),
                 ({}, {"etcdTimeout": "NaN"}, "etcdTimeout"),
                 ({}, {"initialSyncWait": "1h"}, "initialSyncWait"),
                 ({"clusterWeights": {"cluster-1": "٣"}}, {}, "clusterWeights"),
                 ({}, {"maxSyncWaits": "1000"}, "maxSyncWaits")]
        for configuration, properties, key in cases:
            with pytest.raises(grpc.RpcError) as raised:
                client.init(configuration, properties)
            details = raised.value.details() or ""
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (key, details)
            assert details.startswith(f"invalid value for '{key}'") and len(details) < 400, details
    assert server.alive()


def test_shutdown_does_not_wait_for_first_sync_waits(serve, prefix: str) -> None:
    """A SIGTERM must not wait up to initialSyncWait (up to a minute) for resolves blocked on a sync."""
    port = free_port()
    server = serve("--set", f"etcdEndpoints=127.0.0.1:{free_port()}", "--set", f"prefix={prefix}",
                   "--set", "initialSyncWait=60s", "--set", "etcdTimeout=500ms", "--metrics-port", str(port))
    with server.client() as client:
        stub = nameresolution_pb2_grpc.NameResolutionStub(client.channel)
        waiting = [stub.ResolveID.future(nameresolution_pb2.ResolveRequest(id="orders", port=50002),
                                         metadata=client.metadata, timeout=30) for _ in range(5)]
        gauge = 'dapr_nr_component_slots_in_use{concern="sync_waits"} 5.0'
        eventually(lambda: gauge in _scrape(port), 10, "five resolves waiting for the sync")
        assert not any(f.done() for f in waiting)
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.process.wait(15) == 0
        assert time.monotonic() - started < 5
        assert {f.result().address for f in waiting} == {"orders-dapr.default.svc.cluster.local:50002"}


def _scrape(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_random_bytes_never_get_internal_or_unknown(serve, etcd: LocalEtcd, prefix: str) -> None:
    """Hypothesis: any bytes to any unary method end in a client-side status, never INTERNAL/UNKNOWN."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    server = serve("--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}")
    unary = [method for method, kind in METHODS.items() if kind == "unary" and not method.endswith("/Close")]
    with grpc.insecure_channel(f"unix:{server.socket_path}") as channel:

        @settings(max_examples=300, deadline=None)
        @given(method=st.sampled_from(unary), payload=st.binary(max_size=300),
               instance=st.text(max_size=300).filter(lambda t: t.isprintable() and t.isascii()))
        def check(method: str, payload: bytes, instance: str) -> None:
            try:
                cast(Any, channel.unary_unary(method))(payload, metadata=((INSTANCE, instance),), timeout=5)
            except grpc.RpcError as error:
                assert error.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), \
                    (method, payload, error.details())

        check()
    assert server.alive() and "Traceback" not in server.output()
