"""The DNS bridge against resolvers nobody on this project wrote: Knot's ``kdig``/``knsupdate`` and BIND's ``dig``.

Every protocol case docs/dns.md promises: case-insensitive names (A, AAAA, SRV, instance names), SRV targets
that are names, RFC 8020 existence (NODATA for other types, empty non-terminals, TXT), the
protocol details (CD, DO, EDNS version, AXFR/IXFR, UPDATE, apex NS with an address) and
truncation with UDP/EDNS/TCP.
"""

from __future__ import annotations

import ipaddress
import subprocess
from typing import Any

from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import Keys
from tests.conftest import put_record, record
from tests.support.dns_bridge import rdata

ZONE = "dapr.internal"
NOERROR, NXDOMAIN, REFUSED, NOTIMP = 0, 3, 5, 4
DO_BIT = 0x8000


def args(etcd: LocalEtcd, prefix: str, *extra: str) -> list[str]:
    return ["--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}", "--set", "clusterName=cluster-2",
            *extra]


def nodata(reply: dict[str, Any]) -> bool:
    return reply.get("RCODE") == NOERROR and not reply.get("answerRRs") and any(
        rr["TYPEname"] == "SOA" for rr in reply.get("authorityRRs", []))


def test_names_are_case_insensitive_and_srv_targets_are_names(dns_bridge, etcd: LocalEtcd, prefix: str,
                                                              gateway: EtcdGateway, keys: Keys) -> None:
    put_record(gateway, keys, record("OrderSvc", cluster="cluster-2", instance="order-a", address="10.2.0.1"))
    put_record(gateway, keys, record("OrderSvc", cluster="cluster-2", instance="order-b", address="fd00::2",
                                     port=50011))
    bridge = dns_bridge(*args(etcd, prefix))
    for spelling in ("ordersvc", "ORDERSVC", "OrderSvc", "oRDERsVC"):
        name = f"{spelling}.DeFault.{ZONE}"
        assert bridge.dig_short(name, "A") == ["10.2.0.1"], spelling  # dig keeps the spelling on the wire
        assert bridge.dig_short(name, "AAAA") == ["fd00::2"], spelling
        assert bridge.dig_short(f"order-a.{spelling}.default.{ZONE}", "A") == ["10.2.0.1"], spelling
    assert rdata(bridge.kdig(f"ordersvc.default.{ZONE}", "A"), "A") == ["10.2.0.1"]
    srv = bridge.kdig(f"ORDERSVC.default.{ZONE}", "SRV")
    targets = [line.split()[3] for line in rdata(srv, "SRV")]
    assert targets == [f"order-a.ordersvc.default.{ZONE}.", f"order-b.ordersvc.default.{ZONE}."]
    for target in targets:  # every target is a name (Go rejects IP literals) that has an address
        host = target.rstrip(".").split(".")[0]
        assert not _is_ip(host)
    assert rdata(bridge.kdig(targets[0], "A"), "A") == ["10.2.0.1"]
    assert rdata(bridge.kdig(targets[1], "AAAA"), "AAAA") == ["fd00::2"]
    assert nodata(bridge.kdig(targets[0], "AAAA"))  # the instance exists: NODATA, not NXDOMAIN
    assert bridge.kdig(f"order-z.ordersvc.default.{ZONE}", "A")["RCODE"] == NXDOMAIN
    any_reply = bridge.kdig(f"ordersvc.default.{ZONE}", "ANY")
    assert rdata(any_reply, "A") == ["10.2.0.1"] and rdata(any_reply, "AAAA") == ["fd00::2"]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def test_existence_does_not_depend_on_the_type(dns_bridge, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                               keys: Keys) -> None:
    put_record(gateway, keys, record("orders", cluster="cluster-2", address="10.2.0.1"))
    bridge = dns_bridge(*args(etcd, prefix, "--set", "template=10.9.8.7:{port}"))
    for rdtype in ("AAAA", "TXT", "MX", "CNAME"):
        assert nodata(bridge.kdig(f"orders.default.{ZONE}", rdtype)), rdtype
    assert nodata(bridge.kdig(f"_grpc_config.orders.default.{ZONE}", "TXT"))  # gRPC-Go's service-config lookup
    assert nodata(bridge.kdig(f"default.{ZONE}", "A"))  # an empty non-terminal (query-name minimisation)
    assert nodata(bridge.kdig(f"other-ns.{ZONE}", "NS"))
    # The fallback (template host 10.9.8.7, IPv4 only): A answers, AAAA is NODATA, never NXDOMAIN.
    assert rdata(bridge.kdig(f"ghost.default.{ZONE}", "A"), "A") == ["10.9.8.7"]
    assert nodata(bridge.kdig(f"ghost.default.{ZONE}", "AAAA"))
    assert nodata(bridge.kdig(f"ghost.default.{ZONE}", "SRV"))
    assert bridge.kdig("example.com", "A")["RCODE"] == REFUSED
    assert bridge.kdig(f"bad_label!.x.{ZONE}", "A")["RCODE"] == NXDOMAIN


def test_protocol_details(dns_bridge, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway, keys: Keys) -> None:
    put_record(gateway, keys, record("orders", cluster="cluster-2", address="10.2.0.1"))
    bridge = dns_bridge(*args(etcd, prefix), "--ns-address", "10.53.0.1,fd00:53::1")
    soa = rdata(bridge.kdig(ZONE, "SOA"), "SOA")
    assert len(soa) == 1 and soa[0].split()[0] == f"ns.{ZONE}."
    assert rdata(bridge.kdig(ZONE, "NS"), "NS") == [f"ns.{ZONE}."]
    assert rdata(bridge.kdig(f"ns.{ZONE}", "A"), "A") == ["10.53.0.1"]  # the NS name has an address
    assert rdata(bridge.kdig(f"ns.{ZONE}", "AAAA"), "AAAA") == ["fd00:53::1"]
    apex_any = bridge.kdig(ZONE, "ANY")
    assert rdata(apex_any, "NS") and rdata(apex_any, "SOA")
    name = f"orders.default.{ZONE}"
    cd = bridge.kdig(name, "A", "+cdflag")
    assert cd["CD"] == 1 and rdata(cd, "A") == ["10.2.0.1"]
    assert bridge.kdig(name, "A")["CD"] == 0
    dnssec = bridge.kdig(name, "A", "+dnssec")
    opt = [rr for rr in dnssec["additionalRRs"] if rr["TYPEname"] == "OPT"]
    assert opt and opt[0]["TTL"] & DO_BIT  # DO echoed
    plain_edns = bridge.kdig(name, "A", "+edns")
    assert not next(rr for rr in plain_edns["additionalRRs"] if rr["TYPEname"] == "OPT")["TTL"] & DO_BIT
    badvers = bridge.kdig(name, "A", "+edns=1")
    bad_opt = next(rr for rr in badvers["additionalRRs"] if rr["TYPEname"] == "OPT")
    assert (bad_opt["TTL"] >> 24) << 4 | badvers["RCODE"] == 16  # BADVERS, answered with EDNS version 0
    assert (bad_opt["TTL"] >> 16) & 0xFF == 0
    for transfer in ("AXFR", "IXFR=1"):
        refused = bridge.kdig(ZONE, transfer)
        assert refused.get("RCODE") == REFUSED or "REFUSED" in refused.get("error", ""), transfer
    update = subprocess.run(["knsupdate"], input=f"server 127.0.0.1 {bridge.port}\nzone {ZONE}\n"
                            f"update add x.default.{ZONE} 5 A 10.0.0.9\nsend\n", capture_output=True, text=True,
                            timeout=30, check=False)
    assert "NOTIMP" in update.stdout + update.stderr
    tcp = bridge.kdig(name, "A", "+tcp")
    assert rdata(tcp, "A") == ["10.2.0.1"] and tcp["AA"] == 1


def test_truncation_bufsize_and_tcp(dns_bridge, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                    keys: Keys) -> None:
    gateway.apply([(r.key(keys), r.to_json(), None) for r in (
        record("big", cluster="cluster-2", address=f"10.2.{i // 250}.{i % 250 + 1}") for i in range(200))], [])
    bridge = dns_bridge(*args(etcd, prefix))
    name = f"big.default.{ZONE}"
    udp = bridge.kdig(name, "A", "+ignore", "+noedns")
    assert udp["TC"] == 1 and udp["msgLength"] <= 512
    edns = bridge.kdig(name, "A", "+ignore", "+bufsize=4096")
    assert edns["TC"] == 1 and edns["msgLength"] <= 1232  # capped at the DNS-flag-day size
    assert len(rdata(bridge.kdig(name, "A", "+tcp"), "A")) == 200
    assert len(rdata(bridge.kdig(name, "A"), "A")) == 200  # kdig retries over TCP on TC by itself
    srv = bridge.kdig(name, "SRV", "+tcp")
    assert len(rdata(srv, "SRV")) == 200
