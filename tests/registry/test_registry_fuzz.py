"""The registry fuzzer: arbitrary bytes and JSON in every key shape, while real readers run.

Hypothesis writes into a real etcd that a real ``serve`` and a real ``dns`` are watching:
non-finite and huge numbers, duplicate keys, BOMs, deep nesting, every address class, in
endpoint, info, heartbeat, lastseen, conflict and identity keys. Invariants after every write:
both processes are alive, a valid record in the same app and cluster stays resolvable through
the socket and over DNS, nothing the address policy refuses is ever served, and ``ls`` and
``status`` never crash — with everything the fuzzer wrote still in etcd.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.demo.processes import CliProcess, wait_dns_listening
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.addresses import DEFAULT_POLICY
from resolver.records.names import split_host_port
from resolver.records.schema import Keys
from tests.conftest import make_settings, put_record, record
from tests.support.component import ServeProcess

PREFIX = "/regfuzz"
KEYS = Keys(PREFIX)
ADDRESSES = ["10.2.0.9", "0.0.0.0", "127.0.0.1", "::1", "::ffff:127.0.0.1", "169.254.169.254", "fe80::1%eth0",
             "2130706433", "0x7f000001", "0177.0.0.01", "0", "999.1.1.1", "224.0.0.1", "fd00:ec2::254",
             "100.100.100.200", "localhost", "a" * 70 + ".example", "vm-1.example.com", "2001:db8::7", ""]
NUMBERS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1e400", b"9" * 400, b"-1", b"0", b"1.5",
           b"true", b'"5"', b"null", b"[]", b"{}"]
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
JSON_VALUES = st.recursive(SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c,
                                                                                        max_size=4), max_leaves=20)
KEY_SHAPES = [
    KEYS.cluster_apps("cluster-2") + "default/victim/fuzzed",
    KEYS.cluster_apps("cluster-2") + "default/victim/" + "b" * 100,
    KEYS.cluster_apps("cluster-2") + "default/Victim/fuzzed",
    KEYS.cluster_apps("cluster-2") + "default/victim/x/extra",
    KEYS.info("cluster-2"), KEYS.heartbeat("cluster-2"), KEYS.lastseen("cluster-2"),
    KEYS.cluster_meta("cluster-2") + "conflict/abc", KEYS.cluster_meta("cluster-2") + "unknown-leaf",
    KEYS.identity(), f"{PREFIX}/apps/", f"{PREFIX}/clusters/cluster-2", f"{PREFIX}/other",
]
FIELDS = ["appId", "namespace", "cluster", "instance", "address", "port", "zone", "node", "updatedAt",
          "endpoints", "leaseTTL", "seq", "at", "startedAt", "syncedAt", "id", "createdAt", "clusterUid"]


def endpoint_object(address: str = "10.2.0.9") -> dict[str, object]:
    return {"appId": "victim", "namespace": "default", "cluster": "cluster-2", "instance": "fuzzed",
            "address": address, "port": 50002}


def with_raw_number(field: str, number: bytes) -> bytes:
    """A valid-looking record with one field spelled as raw JSON (NaN, 1e999, …)."""
    base = json.dumps({k: v for k, v in endpoint_object().items() if k != field})
    return base[:-1].encode() + b', "' + field.encode() + b'": ' + number + b"}"


VALUES = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda address: json.dumps(endpoint_object(address)).encode(), st.sampled_from(ADDRESSES)),
    st.builds(with_raw_number, st.sampled_from(FIELDS), st.sampled_from(NUMBERS)),
    st.builds(lambda field, value: json.dumps({**endpoint_object(), field: value}).encode(),
              st.sampled_from(FIELDS), JSON_VALUES),
    st.builds(lambda a, b: (json.dumps(endpoint_object(a))[:-1] + f', "address": "{b}"}}').encode(),
              st.sampled_from(ADDRESSES), st.sampled_from(ADDRESSES)),  # duplicate keys
    st.sampled_from([b"\xef\xbb\xbf" + json.dumps(endpoint_object()).encode(), b"[" * 3000 + b"]" * 3000,
                     b'{"a":' * 1500 + b"1" + b"}" * 1500, b"{" + b" " * 5000 + b"}"]),
)


@dataclass
class Readers:
    serve: ServeProcess
    dns: CliProcess
    dns_port: int
    gateway: EtcdGateway
    etcd: LocalEtcd
    workdir: Path


@pytest.fixture(scope="module")
def readers(etcd: LocalEtcd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Readers]:
    workdir = tmp_path_factory.mktemp("regfuzz")
    gateway = EtcdGateway(make_settings(etcd.endpoint, PREFIX).etcd)
    put_record(gateway, KEYS, record("victim", cluster="cluster-2", instance="good", address="10.2.0.1"))
    common = ["--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={PREFIX}", "--set", "clusterName=cluster-1",
              "--set", "policy=ActiveActive"]
    serve = ServeProcess(workdir / "sockets", [*common, "--log-level", "error"], workdir / "serve.log")
    bridge = CliProcess(["dns", "--listen", "127.0.0.1:0", *common], workdir / "dns.log")  # logs its port
    try:  # stopped even when they fail to come up
        serve.wait_ready()
        port = wait_dns_listening(bridge, 20)
        yield Readers(serve, bridge, port, gateway, etcd, workdir)
    finally:
        serve.stop()
        bridge.stop()
        gateway.delete_prefix(f"{PREFIX}/")
        gateway.close()


def dns_addresses(port: int, name: str) -> set[str]:
    reply = dns.query.udp(dns.message.make_query(name, dns.rdatatype.A), "127.0.0.1", port=port, timeout=5)
    return {item.address for rrset in reply.answer for item in rrset if rrset.rdtype == dns.rdatatype.A}


def served_hosts(readers: Readers) -> set[str]:
    with readers.serve.client("fuzz") as client:
        return {split_host_port(address)[0] for address in client.resolve_multi("victim", "default", 50002)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEY_SHAPES), value=VALUES)
def test_every_value_in_every_key_shape(readers: Readers, key: str, value: bytes) -> None:
    readers.gateway.put(key, value)
    # the write is followed by a known-good one: once it is visible, the fuzzed one was processed first
    marker = record("victim", cluster="cluster-2", instance="good", address="10.2.0.1")
    readers.gateway.put(marker.key(KEYS), marker.to_json())
    hosts = served_hosts(readers)
    assert "10.2.0.1" in hosts, f"the valid sibling must stay resolvable (got {hosts})"
    for host in hosts:
        assert DEFAULT_POLICY.host_refusal("cluster-2", host) is None, f"served a refused address {host!r}"
    assert "10.2.0.1" in dns_addresses(readers.dns_port, "victim.default.dapr.internal")
    assert readers.serve.alive() and readers.dns.alive()


def test_ls_and_status_survive_everything_at_once(readers: Readers) -> None:
    for index, shape in enumerate(KEY_SHAPES):
        readers.gateway.put(shape, with_raw_number(FIELDS[index % len(FIELDS)], NUMBERS[index % len(NUMBERS)]))
    readers.gateway.put(KEYS.cluster_apps("cluster-3") + "default/victim/nan",
                        with_raw_number("updatedAt", b"NaN").replace(b"cluster-2", b"cluster-3"))
    readers.gateway.put(KEYS.info("cluster-4"), b'{"cluster":"cluster-4","endpoints":1e999,"leaseTTL":NaN}')
    for command in (["ls"], ["status"], ["ls", "--output", "json"], ["status", "--output", "json"],
                    ["resolve", "victim"]):
        result = subprocess.run([sys.executable, "-m", "resolver", *command, "--set",
                                 f"etcdEndpoints={readers.etcd.endpoint}", "--set", f"prefix={PREFIX}",
                                 "--set", "clusterName=cluster-1"],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, (command, result.stderr)
    assert readers.serve.alive() and readers.dns.alive()
