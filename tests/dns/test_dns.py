"""The DNS bridge with real DNS clients (dnspython's stub resolver over UDP and TCP) on loopback."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections import Counter

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.demo.processes import CliProcess
from resolver.dns.answers import DnsAnswers
from resolver.dns.limits import DnsLimits
from resolver.dns.lookups import HostLookups
from resolver.dns.server import DnsService, formerr_for
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import Keys
from resolver.registry.mirror import RegistryReader
from resolver.resolution.resolver import Resolver
from tests.conftest import eventually, make_settings, put_record, record

ZONE = "dapr.internal"


def common(etcd: LocalEtcd, prefix: str, *extra: str) -> list[str]:
    return ["--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}", "--set", "clusterName=cluster-2",
            *extra]


def addresses(response: dns.message.Message) -> list[str]:
    return [item.address for rrset in response.answer for item in rrset if rrset.rdtype in (1, 28)]


def test_registry_hit_a_aaaa_srv_and_instance_names(dns_bridge, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                                    keys: Keys) -> None:
    put_record(gateway, keys, record("orders", cluster="cluster-2", instance="orders-a", address="10.2.0.1"))
    put_record(gateway, keys, record("orders", cluster="cluster-2", instance="orders-b", address="fd00::2",
                                     port=50011))
    bridge = dns_bridge(*common(etcd, prefix))
    reply = bridge.query(f"orders.default.{ZONE}")
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert addresses(reply) == ["10.2.0.1"]
    assert addresses(bridge.query("OrDeRs.DEFAULT.Dapr.Internal")) == ["10.2.0.1"]  # case-insensitive
    assert addresses(bridge.query(f"orders.default.{ZONE}", "AAAA")) == ["fd00::2"]
    assert reply.answer[0].ttl == 5
    srv = bridge.query(f"orders.default.{ZONE}", "SRV", tcp=True)
    records = sorted((r.port, r.target.to_text()) for rrset in srv.answer for r in rrset)
    assert records == [(50002, f"orders-a.orders.default.{ZONE}."), (50011, f"orders-b.orders.default.{ZONE}.")]
    assert addresses(bridge.query(f"orders-b.orders.default.{ZONE}", "AAAA")) == ["fd00::2"]
    assert bridge.query(f"orders-z.orders.default.{ZONE}").rcode() == dns.rcode.NXDOMAIN


def test_stub_resolver_over_udp_and_tcp(dns_bridge, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                        keys: Keys) -> None:
    put_record(gateway, keys, record("orders", cluster="cluster-2", address="10.2.0.7"))
    bridge = dns_bridge(*common(etcd, prefix))
    stub = dns.resolver.Resolver(configure=False)
    stub.nameservers = ["127.0.0.1"]
    stub.port = bridge.port
    for tcp in (False, True):
        answer = stub.resolve(f"orders.default.{ZONE}", "A", tcp=tcp)
        assert [r.address for r in answer] == ["10.2.0.7"]
    with pytest.raises(dns.resolver.NXDOMAIN):
        stub.resolve(f"no.such.thing.{ZONE}", "A")


def test_policy_failover_removal_and_change_within_a_watch_event(dns_bridge, etcd: LocalEtcd, prefix: str,
                                                                 gateway: EtcdGateway, keys: Keys) -> None:
    local = record("orders", cluster="cluster-2", address="10.2.0.1")
    put_record(gateway, keys, local)
    put_record(gateway, keys, record("orders", cluster="cluster-1", address="10.1.0.1"))
    bridge = dns_bridge(*common(etcd, prefix))
    assert addresses(bridge.query(f"orders.default.{ZONE}")) == ["10.2.0.1"]  # FailOver keeps the local cluster
    gateway.delete(local.key(keys))
    eventually(lambda: addresses(bridge.query(f"orders.default.{ZONE}")) == ["10.1.0.1"], 2, "failover")
    put_record(gateway, keys, local)
    eventually(lambda: addresses(bridge.query(f"orders.default.{ZONE}")) == ["10.2.0.1"], 2, "failback")


def test_weights_reach_random_picking_callers(dns_bridge, etcd: LocalEtcd, prefix: str,
                                              gateway: EtcdGateway, keys: Keys) -> None:
    """As daprd experiences it: many independent resolutions, each followed by 60 invocations
    that pick an address of the answer at random.

    Three clusters with uneven weights (50/30/20) and instance counts (1/2/3) that no subset can
    express (cluster-1 has one instance), so each answer holds one cluster: the traffic split
    must match the weights within 5 points (the draw's standard deviation is < 1 point over
    3,000 answers), also across cache invalidations.
    """
    rng = random.Random(3)
    counts = {"cluster-1": 1, "cluster-2": 2, "cluster-3": 3}
    for cluster, count in counts.items():
        for i in range(count):
            put_record(gateway, keys, record("orders", cluster=cluster, address=f"10.{cluster[-1]}.0.{i + 1}"))
    bridge = dns_bridge(*common(etcd, prefix, "--set", "policy=ActiveActive", "--set",
                                "clusterWeights=cluster-1=50,cluster-2=30,cluster-3=20"))
    traffic: Counter[str] = Counter()
    sizes: Counter[int] = Counter()
    for batch in range(3):
        for _ in range(1000):
            answer = addresses(bridge.query(f"orders.default.{ZONE}"))
            sizes[len(answer)] += 1
            for _call in range(60):  # daprd: one address at random per invocation
                traffic[f"cluster-{rng.choice(answer).split('.')[1]}"] += 1
        marker = record(f"marker{batch}", cluster="cluster-2", address="10.9.9.1")
        put_record(gateway, keys, marker)  # a registry change: every cached answer is recomputed
        marker_name = f"marker{batch}.default.{ZONE}"
        eventually(lambda: addresses(bridge.query(marker_name)) == ["10.9.9.1"], 5, "marker")  # noqa: B023
    total = sum(traffic.values())
    print("traffic shares:", {c: round(n / total, 3) for c, n in sorted(traffic.items())})
    for cluster, weight in (("cluster-1", 0.5), ("cluster-2", 0.3), ("cluster-3", 0.2)):
        assert traffic[cluster] / total == pytest.approx(weight, abs=0.05), (cluster, traffic)
    assert set(sizes) <= {1, 2, 3}  # one cluster per answer: its instances, all of them
    srv = bridge.query(f"orders.default.{ZONE}", "SRV")
    weights = {r.target.to_text().split(".")[0]: r.weight for rrset in srv.answer for r in rrset}
    assert weights["orders-10-1-0-1"] == 500 and weights["orders-10-2-0-1"] == 150


def test_instance_counts_that_match_the_weights_answer_every_address(dns_bridge, etcd: LocalEtcd, prefix: str,
                                                                     gateway: EtcdGateway, keys: Keys) -> None:
    for cluster, count in (("cluster-1", 3), ("cluster-2", 1)):
        for i in range(count):
            put_record(gateway, keys, record("orders", cluster=cluster, address=f"10.{cluster[-1]}.0.{i + 1}"))
    bridge = dns_bridge(*common(etcd, prefix, "--set", "policy=ActiveActive", "--set",
                                "clusterWeights=cluster-1=300,cluster-2=100"))
    for _ in range(50):  # random picks over all four already give 3:1, so every answer has all four
        assert sorted(addresses(bridge.query(f"orders.default.{ZONE}"))) == [
            "10.1.0.1", "10.1.0.2", "10.1.0.3", "10.2.0.1"]


def test_fallback_records_nxdomain_and_loop_guard(dns_bridge, etcd: LocalEtcd, prefix: str, tmp_path) -> None:
    bridge = dns_bridge(*common(etcd, prefix, "--set", "template=localhost:{port}"))
    reply = bridge.query(f"ghost.default.{ZONE}")
    assert reply.rcode() == dns.rcode.NOERROR and addresses(reply) == ["127.0.0.1"]
    assert reply.flags & dns.flags.AA
    # RFC 8020: the name exists, so AAAA, SRV and TXT are NODATA (localhost may or may not have ::1)
    for rdtype in ("SRV", "TXT"):
        nodata = bridge.query(f"ghost.default.{ZONE}", rdtype)
        assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority
    assert bridge.query(f"ghost.default.{ZONE}", "AAAA").rcode() == dns.rcode.NOERROR
    literal = dns_bridge(*common(etcd, prefix, "--set", "template=10.9.8.7:{port}"))
    assert addresses(literal.query(f"Ghost.Default.{ZONE}")) == ["10.9.8.7"]
    aaaa = literal.query(f"ghost.default.{ZONE}", "AAAA")
    assert aaaa.rcode() == dns.rcode.NOERROR and not aaaa.answer  # not NXDOMAIN (musl would give up)
    looping = CliProcess(["dns", "--listen", "127.0.0.1:0", *common(etcd, prefix, "--set",
                          "template={id}.{namespace}.dapr.internal:{port}")], tmp_path / "loop.log")
    assert looping.process.wait(20) != 0 and "inside the zone" in looping.output()
    none = dns_bridge(*common(etcd, prefix, "--set", "fallback=none"))
    negative = none.query(f"ghost.default.{ZONE}")
    assert negative.rcode() == dns.rcode.NXDOMAIN
    assert negative.authority and negative.authority[0].rdtype == dns.rdatatype.SOA


def test_refused_outside_the_zone_apex_and_nodata(dns_bridge, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                                  keys: Keys) -> None:
    put_record(gateway, keys, record("orders", cluster="cluster-2", address="10.2.0.1"))
    bridge = dns_bridge(*common(etcd, prefix))
    assert bridge.query("example.com").rcode() == dns.rcode.REFUSED
    assert bridge.query(f"{ZONE}", "SOA").answer[0].rdtype == dns.rdatatype.SOA
    nodata = bridge.query(f"orders.default.{ZONE}", "MX")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority
    assert bridge.query(f"bad_ns!.x.{ZONE}").rcode() == dns.rcode.NXDOMAIN
    ent = bridge.query(f"default.{ZONE}")  # an empty non-terminal: NODATA, never NXDOMAIN (RFC 8020)
    assert ent.rcode() == dns.rcode.NOERROR and not ent.answer and ent.authority


def test_truncation_edns_and_tcp_with_many_instances(dns_bridge, etcd: LocalEtcd, prefix: str,
                                                     gateway: EtcdGateway, keys: Keys) -> None:
    gateway.apply([(r.key(keys), r.to_json(), None) for r in (
        record("big", cluster="cluster-2", address=f"10.2.{i // 250}.{i % 250 + 1}") for i in range(200))], [])
    bridge = dns_bridge(*common(etcd, prefix))
    plain = bridge.query(f"big.default.{ZONE}")
    assert plain.flags & dns.flags.TC
    edns = bridge.query(f"big.default.{ZONE}", payload=4096)
    assert edns.flags & dns.flags.TC and edns.edns == 0  # 200 A records need ~3.2 kB > 1232
    full = bridge.query(f"big.default.{ZONE}", tcp=True)
    assert not full.flags & dns.flags.TC and len(addresses(full)) == 200
    few = record("few", cluster="cluster-2", address="10.9.0.1")
    put_record(gateway, keys, few)
    eventually(lambda: addresses(bridge.query(f"few.default.{ZONE}", payload=1232)) == ["10.9.0.1"], 5, "edns")


def test_several_queries_on_one_tcp_connection_and_garbage(dns_bridge, etcd: LocalEtcd, prefix: str) -> None:
    bridge = dns_bridge(*common(etcd, prefix, "--set", "fallback=none"))
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=5) as conn:
        for n in range(3):
            wire = dns.message.make_query(f"app{n}.default.{ZONE}", "A").to_wire()
            conn.sendall(struct.pack("!H", len(wire)) + wire)
            (length,) = struct.unpack("!H", conn.recv(2))
            assert dns.message.from_wire(conn.recv(length)).rcode() == dns.rcode.NXDOMAIN
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.settimeout(0.5)
    rng = random.Random(1)
    for size in (0, 3, 12, 40, 300):
        udp.sendto(bytes(rng.getrandbits(8) for _ in range(size)), ("127.0.0.1", bridge.port))
    udp.close()
    assert bridge.alive()
    assert bridge.query(f"app.default.{ZONE}").rcode() == dns.rcode.NXDOMAIN  # still answering


@pytest.fixture
def service(  # shared by every generated example on purpose: the service is stateless per query
        etcd: LocalEtcd, prefix: str, gateway: EtcdGateway, keys: Keys):
    put_record(gateway, keys, record("orders", cluster="cluster-2", address="10.2.0.1"))
    settings = make_settings(etcd.endpoint, prefix, clusterName="cluster-2", fallback="none")
    reader = RegistryReader(settings.etcd).start()
    assert reader.wait_synced(10)
    lookups = HostLookups(DnsLimits())
    yield DnsService(DnsAnswers(Resolver(settings, reader), ZONE, ttl=5, lookups=lookups))
    lookups.close()
    reader.stop()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(packet=st.binary(max_size=600))
def test_fuzzed_packets_never_crash(service: DnsService, packet: bytes) -> None:
    reply = asyncio.run(service.handle(packet, "udp"))
    if reply is not None:
        parsed = dns.message.from_wire(reply, question_only=True) if len(reply) > 12 else None
        assert reply[:2] == packet[:2]  # same query id
        assert len(reply) <= 512
        assert parsed is None or parsed.flags & dns.flags.QR


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.lists(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20),
                     min_size=0, max_size=5),
       rdtype=st.sampled_from(["A", "AAAA", "SRV", "TXT", "ANY", "SOA", "MX", "CNAME"]))
def test_fuzzed_names_in_the_zone_get_a_valid_answer(service: DnsService, name: list[str], rdtype: str) -> None:
    try:
        query = dns.message.make_query(".".join([*name, "dapr", "internal"]), rdtype)
    except Exception:  # a label dnspython itself refuses to build
        return
    reply = asyncio.run(service.handle(query.to_wire(), "udp"))
    assert reply is not None
    inside = query.question[0].name.is_subdomain(dns.name.from_text(ZONE))
    expected = (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) if inside else (dns.rcode.REFUSED,)
    assert dns.message.from_wire(reply).rcode() in expected


def test_formerr_for_headers_only() -> None:
    assert formerr_for(b"\x12") is None
    reply = formerr_for(b"\xab\xcd\x01\x00" + b"\x00" * 8)
    assert reply is not None and reply[:2] == b"\xab\xcd" and reply[3] & 0x0F == dns.rcode.FORMERR
    assert formerr_for(b"\xab\xcd\x81\x00" + b"\x00" * 8) is None  # a response: never answered
