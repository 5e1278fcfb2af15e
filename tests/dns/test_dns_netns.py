"""The DNS bridge through the resolvers inside real containers: glibc's and musl's ``getaddrinfo``.

Each test makes a network namespace of its own (``ip netns add``; loopback up) whose
``/etc/resolv.conf`` names a server on port 53 *inside* it — the host's 127.0.0.1 is not
reachable from there, so nothing leaves the machine. etcd, a publisher (file source) and the
bridge run inside (``ip netns exec``), and so do the resolvers: glibc via Python's
``socket.getaddrinfo``, musl via a static C program built here with ``musl-gcc``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resolver.demo.processes import wait_until
from resolver.local_etcd import find_binary
from tests.support.dns_bridge import NetNs

ZONE = "dapr.internal"
BIG = 200

GLIBC_PROBE = """
import json, socket, sys
out = {}
for name in sys.argv[1:]:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        out[name] = sorted({info[4][0] for info in infos})
    except socket.gaierror as error:
        out[name] = f"ERR {error.errno}"
print(json.dumps(out))
"""

DIG_PROBE = """
import json, sys, dns.message, dns.query, dns.rcode
port, names = int(sys.argv[1]), sys.argv[2:]
out = {}
for name in names:
    kind = "A"
    if ":" in name:
        name, kind = name.split(":")
    reply = dns.query.udp(dns.message.make_query(name, kind), "127.0.0.1", port=port, timeout=3)
    out[f"{name}:{kind}"] = [dns.rcode.to_text(reply.rcode()), sorted(str(r) for s in reply.answer for r in s)]
print(json.dumps(out))
"""


def inventory() -> str:
    entries = [
        {"appId": "orders", "namespace": "default", "instance": "orders-1", "address": "10.2.0.1", "port": 50002},
        {"appId": "orders", "namespace": "default", "instance": "orders-2", "address": "fd00:2::1", "port": 50002},
        {"appId": "OrderSvc", "namespace": "default", "instance": "ordersvc-1", "address": "10.2.0.11",
         "port": 50002},
        {"appId": "web", "namespace": "default", "instance": "web-1", "address": "web-host.test", "port": 50002},
        {"appId": "web", "namespace": "default", "instance": "web-2", "address": "10.2.0.21", "port": 50002},
        # A host name that resolves to the cloud metadata address: the address policy refuses it.
        {"appId": "evil", "namespace": "default", "instance": "evil-1", "address": "metadata.test", "port": 50002},
        {"appId": "evil", "namespace": "default", "instance": "evil-2", "address": "10.2.0.31", "port": 50002},
    ]
    entries += [{"appId": "big", "namespace": "default", "instance": f"big-{i}",
                 "address": f"10.3.{i // 250}.{i % 250 + 1}", "port": 50002} for i in range(BIG)]
    return json.dumps(entries)  # JSON is YAML


def start_registry(space: NetNs, work: Path) -> None:
    """etcd on the namespace's loopback, and a file-source publisher for cluster-2."""
    space.start([find_binary("etcd"), "--name", "nsetcd", "--data-dir", str(work / f"etcd-{space.name}"),
                 "--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
                 "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls",
                 "http://127.0.0.1:2380", "--initial-cluster", "nsetcd=http://127.0.0.1:2380"], "etcd.log")
    (work / "inventory.yaml").write_text(inventory())
    space.start([sys.executable, "-m", "resolver", "publish", "--cluster", "cluster-2", "--source", "file", "--file",
                 str(work / "inventory.yaml"), "--set", "etcdEndpoints=127.0.0.1:2379"], "publish.log")


def start_bridge(space: NetNs, listen: str, *extra: str) -> None:
    space.start([sys.executable, "-m", "resolver", "dns", "--listen", listen, "--set", "etcdEndpoints=127.0.0.1:2379",
                 "--set", "clusterName=cluster-2", "--set", "initialSyncWait=20s", *extra], "dns.log")
    wait_until(lambda: "serving zone" in space.log("dns.log") or _failed(space), 40, "the bridge to listen")
    assert "serving zone" in space.log("dns.log"), space.log("dns.log")[-3000:]


def _failed(space: NetNs) -> bool:
    if any(p.poll() is not None for p in space.processes):
        raise AssertionError(f"a process in {space.name} exited: {space.log('dns.log')[-2000:]}"
                             f"{space.log('publish.log')[-2000:]}{space.log('etcd.log')[-1000:]}")
    return False


def glibc(space: NetNs, *names: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(space.run([sys.executable, "-c", GLIBC_PROBE, *names]))
    return result


def musl(space: NetNs, probe: Path, *names: str) -> dict[str, list[str] | str]:
    found: dict[str, list[str] | str] = {}
    for line in space.run([str(probe), *names]).splitlines():
        name, status, *rest = line.split()
        found[name] = rest if status == "OK" else f"ERR {rest[0]}"
    return found


@pytest.fixture(scope="module")
def musl_probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("musl") / "musl_probe"
    source = Path(__file__).parents[1] / "support" / "musl_probe.c"
    subprocess.run(["musl-gcc", "-static", "-O2", "-o", str(out), str(source)], check=True, timeout=120)
    return out


def test_glibc_and_musl_resolve_through_the_bridge(netns, tmp_path: Path, musl_probe: Path) -> None:
    space: NetNs = netns("res")
    space.write("resolv.conf", "nameserver 127.0.0.1\noptions timeout:2 attempts:2\n")
    space.write("hosts", "127.0.0.1 localhost\n10.77.0.5 web-host.test\n10.66.0.9 ghost.fallback.test\n"
                "169.254.169.254 metadata.test\n")
    start_registry(space, tmp_path)
    start_bridge(space, "127.0.0.1:53", "--set", "template={id}.fallback.test:{port}")
    orders, mixed = f"orders.default.{ZONE}", f"ORDERSVC.Default.{ZONE}"
    web, web1, ghost, big = f"web.default.{ZONE}", f"web-1.web.default.{ZONE}", f"ghost.default.{ZONE}", \
        f"big.default.{ZONE}"
    wait_until(lambda: glibc(space, big)[big] != "ERR -2" and len(glibc(space, big)[big]) == BIG, 30,  # type: ignore[arg-type]
               "the publisher's records to reach the bridge")
    expected = {
        orders: ["10.2.0.1", "fd00:2::1"],
        mixed: ["10.2.0.11"],
        f"ordersvc.default.{ZONE}": ["10.2.0.11"],
        f"ordersvc-1.OrderSvc.default.{ZONE}": ["10.2.0.11"],  # an instance name, any spelling
        web: ["10.2.0.21", "10.77.0.5"],  # the host-name endpoint resolved by the bridge
        web1: ["10.77.0.5"],
        ghost: ["10.66.0.9"],  # the fallback: A only, so AAAA must be NODATA, never NXDOMAIN
        f"evil.default.{ZONE}": ["10.2.0.31"],  # 169.254.169.254 (via metadata.test) is never served
    }
    from_glibc = glibc(space, *expected, f"gone.nothing.default.{ZONE}")
    for name, addresses in expected.items():
        assert from_glibc[name] == addresses, (name, from_glibc[name])
    assert from_glibc[f"gone.nothing.default.{ZONE}"] == "ERR -2"  # EAI_NONAME: a real NXDOMAIN stays one
    evil = glibc(space, f"evil-1.evil.default.{ZONE}")[f"evil-1.evil.default.{ZONE}"]
    assert isinstance(evil, str) and evil.startswith("ERR")  # the instance exists, with no address to give
    from_musl = musl(space, musl_probe, *expected)
    for name, addresses in expected.items():
        assert sorted(from_musl[name]) == addresses, (name, from_musl[name])
    # 200 instances: more than 512 bytes. glibc retries over TCP and gets all of them.
    assert len(glibc(space, big)[big]) == BIG  # type: ignore[arg-type]
    # musl 1.2.3 (Debian) has no TCP fallback (added in 1.2.4): it uses the truncated UDP answer,
    # which holds as many records as fit in 512 bytes, a random subset of the instances.
    partial = musl(space, musl_probe, big)[big]
    assert isinstance(partial, list) and 10 <= len(partial) < BIG
    instances = {f"10.3.{i // 250}.{i % 250 + 1}" for i in range(BIG)}
    assert set(partial) <= instances


SCRAPE = """
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
pattern = r'dapr_nr_dns_queries_total{rcode="REFUSED",transport="udp"} ([0-9.e+]+)'
print(sum(float(v) for v in re.findall(pattern, text)))
"""


def test_a_trailing_dot_skips_the_pod_search_list(netns, tmp_path: Path) -> None:
    """A pod's resolv.conf (ndots:5 and search domains): without the trailing dot the name is first
    tried with every search suffix, which the bridge refuses (outside its zone); with it, never."""
    space: NetNs = netns("dot")
    space.write("resolv.conf", "nameserver 127.0.0.1\nsearch default.svc.cluster.local svc.cluster.local "
                "cluster.local\noptions ndots:5 timeout:2 attempts:1\n")
    space.write("hosts", "127.0.0.1 localhost\n")
    start_registry(space, tmp_path)
    start_bridge(space, "127.0.0.1:53", "--metrics-port", "9153")
    name = f"orders.default.{ZONE}"
    wait_until(lambda: glibc(space, f"{name}.")[f"{name}."] == ["10.2.0.1", "fd00:2::1"], 30, "the records")

    def refused() -> float:
        return float(space.run([sys.executable, "-c", SCRAPE, "9153"]).strip())

    before = refused()
    assert glibc(space, f"{name}.")[f"{name}."] == ["10.2.0.1", "fd00:2::1"]
    assert refused() == before  # absolute: asked as it is, nothing else
    assert glibc(space, name)[name] == ["10.2.0.1", "fd00:2::1"]
    assert refused() >= before + 2  # the name under the first search suffix (A and AAAA) was asked first


def test_fallback_flood_against_a_black_holed_upstream(netns, tmp_path: Path) -> None:
    """Random in-zone names each need a lookup that never returns; a known fallback name keeps its answer."""
    space: NetNs = netns("hole")
    space.write("resolv.conf", "nameserver 127.0.0.1\n")  # glibc's defaults: 5 s timeout, 2 attempts
    space.write("hosts", "127.0.0.1 localhost\n10.66.0.10 legit.fallback.test\n10.66.0.11 late.fallback.test\n")
    space.start([sys.executable, "-c", "import socket, time\n"
                 "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 53))\n"
                 "print('black hole ready', flush=True)\ntime.sleep(600)\n"], "hole.log")  # reads nothing, ever
    wait_until(lambda: "ready" in space.log("hole.log"), 20, "the black hole")
    start_registry(space, tmp_path)
    start_bridge(space, "127.0.0.1:5300", "--set", "template={id}.fallback.test:{port}", "--lookup-cache-seconds", "1")
    legit = f"legit.default.{ZONE}"
    first = json.loads(space.run([sys.executable, "-c", DIG_PROBE, "5300", legit]))
    assert first[f"{legit}:A"] == ["NOERROR", ["10.66.0.10"]]
    flood = FLOOD.replace("LEGIT", legit).replace("LATE", f"late.default.{ZONE}")
    report = json.loads(space.run([sys.executable, "-c", flood], timeout=120))
    print(f"fallback flood: {report}")
    # The known name kept its answer, promptly, all along (its refreshes have their own lane).
    assert report["legit"] == {"NOERROR 10.66.0.10": report["legit_total"]}, report["legit"]
    # Head-of-line blocking behind the flood would cost a lookup timeout (2 s); 1.5 s is room for
    # a loaded machine, not for that.
    assert report["legit_p99_ms"] < 1500, report
    # The flood got SERVFAIL (we don't know) or nothing — never NXDOMAIN, which resolvers would cache.
    assert "NXDOMAIN" not in report["random"] and report["random"].get("SERVFAIL", 0) > 0, report["random"]
    assert "NXDOMAIN" not in report["late"], report["late"]  # a name first asked during the flood
    threads = int(next(line.split()[1] for line in Path(f"/proc/{_bridge_pid(space)}/status").read_text()
                       .splitlines() if line.startswith("Threads:")))
    assert threads < 40, threads  # bounded pools, whatever the flood
    log = space.log("dns.log")
    assert "DNS limit lookup_queue reached" in log or "DNS limit lookup_timeout reached" in log
    bridge = space.processes[-1]
    stopping = time.monotonic()
    bridge.terminate()  # lookup threads are still stuck in getaddrinfo: they must not delay the exit
    assert bridge.wait(10) == 0 and time.monotonic() - stopping < 5


def _bridge_pid(space: NetNs) -> int:
    """The bridge's PID (``ip netns exec`` execs the command, so the PIDs are the same)."""
    return space.processes[-1].pid


FLOOD = """
import json, random, socket, string, time
import dns.message, dns.rcode
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.setblocking(False)
rng = random.Random(3)
pending = {}
random_codes, legit_codes, late_codes, legit_ms = {}, {}, {}, []
def ask(name, kind):
    query = dns.message.make_query(name, "A")
    pending[query.id] = (kind, time.monotonic())
    udp.sendto(query.to_wire(), ("127.0.0.1", 5300))
def collect():
    while True:
        try:
            wire = udp.recv(4096)
        except BlockingIOError:
            return
        reply = dns.message.from_wire(wire)
        kind, sent = pending.pop(reply.id, (None, 0))
        code = dns.rcode.to_text(reply.rcode())
        if kind == "legit":
            legit_ms.append((time.monotonic() - sent) * 1000)
            text = code + " " + " ".join(str(r) for s in reply.answer for r in s)
            legit_codes[text] = legit_codes.get(text, 0) + 1
        elif kind == "late":
            late_codes[code] = late_codes.get(code, 0) + 1
        elif kind == "random":
            random_codes[code] = random_codes.get(code, 0) + 1
end = time.monotonic() + 8
tick = 0
while time.monotonic() < end:
    for _ in range(5):  # 50 random names per second
        ask("".join(rng.choice(string.ascii_lowercase) for _ in range(12)) + ".default.dapr.internal", "random")
    ask("LEGIT", "legit")
    if tick % 10 == 5:
        ask("LATE", "late")
    tick += 1
    stop = time.monotonic() + 0.1
    while time.monotonic() < stop:
        collect()
        time.sleep(0.005)
deadline = time.monotonic() + 4
while time.monotonic() < deadline and any(k == "legit" for k, _ in pending.values()):
    collect()
    time.sleep(0.01)
legit_ms.sort()
print(json.dumps({"random": random_codes, "legit": legit_codes, "late": late_codes,
                  "legit_total": tick, "legit_p99_ms": legit_ms[int(len(legit_ms) * 0.99) - 1] if legit_ms else 1e9}))
"""
