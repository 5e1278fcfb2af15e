"""Bad input, fuzzed with Hypothesis: every case ends in a clear error or a counted skip —
never a crash, a hang, an UNKNOWN/INTERNAL status, or a record outside its cluster's range.

Examples per target (the README's Reliability section quotes these): requests through the
socket 300, request parsing in-process 3,000, Init configuration in-process 2,000 and through
the socket 200, registry records 3,000, inventory files 1,000, pods 300 (tests/publisher/test_pods.py),
DNS packets 1,500 + names 500 (tests/dns/test_dns.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.config import Layer, load_settings
from resolver.config.settings import KEYS
from resolver.errors import ConfigError, InvalidRecord, InvalidRequest
from resolver.local_etcd import LocalEtcd
from resolver.publisher.file_source import parse_inventory
from resolver.records.schema import EndpointRecord, Keys
from resolver.registry.cache import RegistryCache
from resolver.resolution.resolver import Resolver
from tests.conftest import record
from tests.support.component import ServeProcess

SHARED = [HealthCheck.function_scoped_fixture]
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
ANY_TEXT = st.one_of(st.text(max_size=80), st.text(max_size=5000), st.sampled_from(
    ["orders", "orders.default", "a.b.c", "../../x", "ORDERS", "o\x00rders", "orders\n", "ü", ".", "-a-", "a_b"]))
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
JSON_VALUES = st.recursive(SCALARS,
                           lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=15), c, max_size=5),
                           max_leaves=30)

ALLOWED_CODES = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                 grpc.StatusCode.RESOURCE_EXHAUSTED}


@pytest.fixture(scope="module")
def fuzz_server(etcd: LocalEtcd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    directory = tmp_path_factory.mktemp("fuzz")
    server = ServeProcess(directory / "sockets", ["--set", f"etcdEndpoints={etcd.endpoint}", "--set", "prefix=/fuzz",
                                                  "--log-level", "error"], directory / "serve.log")
    server.wait_ready()
    yield server
    server.stop()


def code_of(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@settings(max_examples=300, deadline=None, suppress_health_check=SHARED)
@given(app_id=ANY_TEXT, namespace=ANY_TEXT, port=INT32)
def test_resolve_requests_through_the_socket(fuzz_server: ServeProcess, app_id: str, namespace: str,
                                             port: int) -> None:
    with fuzz_server.client("etcd") as client:
        assert code_of(lambda: client.resolve(app_id, namespace, port)) in ALLOWED_CODES
        assert code_of(lambda: client.resolve_multi(app_id, namespace, port)) in ALLOWED_CODES
    assert fuzz_server.alive()


def test_oversized_requests_are_refused_by_the_transport(fuzz_server: ServeProcess) -> None:
    with fuzz_server.client("etcd") as client:
        assert code_of(lambda: client.resolve("x" * 200_000)) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert client.resolve("orders") == "orders-dapr.default.svc.cluster.local:50002"


@pytest.fixture(scope="module")
def resolver(etcd: LocalEtcd) -> Iterator[Resolver]:
    from resolver.registry.mirror import RegistryReader

    settings = load_settings([Layer("fuzz", {"etcdEndpoints": etcd.endpoint, "prefix": "/fuzz-inproc"})])
    reader = RegistryReader(settings.etcd).start()
    reader.wait_synced(10)
    yield Resolver(settings, reader)
    reader.stop()


@settings(max_examples=3000, deadline=None, suppress_health_check=SHARED)
@given(app_id=ANY_TEXT, namespace=ANY_TEXT, port=INT32)
def test_request_parsing_in_process(resolver: Resolver, app_id: str, namespace: str, port: int) -> None:
    try:
        address, _, _ = resolver.resolve(app_id, namespace, port)
    except InvalidRequest as error:
        assert error.field in ("id", "namespace", "port") and str(error)
    else:
        assert address.endswith(f":{port}") and "/" not in address


@settings(max_examples=2000, deadline=None)
@given(configuration=st.dictionaries(st.sampled_from([*KEYS, "nope", "etcdendpoints", ""]), JSON_VALUES, max_size=6))
def test_init_configuration_in_process(configuration: dict[str, object]) -> None:
    configuration = {k: v for k, v in configuration.items() if not k.startswith("etcdC")}  # no file lookups
    try:
        load_settings([Layer("fuzz", configuration)])
    except ConfigError as error:
        assert repr(error.field) in str(error)  # the message names the key, even an empty one


@settings(max_examples=200, deadline=None, suppress_health_check=SHARED)
@given(configuration=st.one_of(
    st.dictionaries(st.sampled_from(["policy", "clusterWeights", "policies", "template", "fallback", "bogus",
                                     "initialSyncWait", "failoverOrder", "clusterName"]), JSON_VALUES, max_size=4),
    JSON_VALUES, st.text(max_size=200), st.just("{" * 5000)))
def test_init_configuration_through_the_socket(fuzz_server: ServeProcess, configuration: object) -> None:
    text = configuration if isinstance(configuration, str) else json.dumps(configuration)
    with fuzz_server.client("fuzz-init") as client:
        assert code_of(lambda: client.init(text)) in {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}
    assert fuzz_server.alive()


KEYS_FUZZ = Keys("/p")


@settings(max_examples=3000, deadline=None)
@given(key_tail=st.one_of(st.text(max_size=60), st.sampled_from(["c1/default/orders/orders-1", "c1/d/a/i/extra",
                                                                 "C1/default/orders/x", "c1//orders/x"])),
       value=st.one_of(st.binary(max_size=300), JSON_VALUES.map(lambda v: json.dumps(v).encode()),
                       st.just(b"{" + b" " * 5000 + b"}"),
                       st.builds(lambda r, f, v: json.dumps({**json.loads(r.to_json()), f: v}).encode(),
                                 st.just(record("orders", cluster="c1", instance="orders-1")),
                                 st.sampled_from(["appId", "port", "address", "zone", "cluster", "updatedAt"]),
                                 JSON_VALUES)))
def test_registry_records(key_tail: str, value: bytes) -> None:
    cache = RegistryCache(KEYS_FUZZ)
    key = f"/p/apps/{key_tail}".encode(errors="surrogatepass")
    stats = cache.replace_all([(key, value)], 1)
    cache.apply([(False, key, value)], 2)
    assert stats.endpoints + stats.skipped <= 1
    for address in cache.dump().values():  # whatever was accepted is a valid endpoint
        assert ":" in address


@settings(max_examples=1000, deadline=None)
@given(document=st.one_of(
    st.lists(st.dictionaries(st.sampled_from(["appId", "namespace", "instance", "address", "port", "zone", "x"]),
                             JSON_VALUES, max_size=7), max_size=6).map(json.dumps),
    st.text(max_size=300)))
def test_inventory_files(document: str) -> None:
    try:
        records = parse_inventory(document, "vms")
    except ValueError as error:
        assert "inventory" in str(error)
        return
    for rec in records:
        assert rec.key(Keys("/p")).startswith("/p/apps/vms/")  # never outside its cluster's range
        EndpointRecord.from_json(rec.to_json(), ("vms", rec.namespace, rec.app_id, rec.instance))


def test_record_parse_errors_name_the_field() -> None:
    with pytest.raises(InvalidRecord) as raised:
        EndpointRecord.from_json(b'{"appId": 5}')
    assert raised.value.field == "appId"
