"""``status``, ``ls`` and ``resolve`` show what is wrong: clusters alive, syncing, stale, gone and in
conflict, with ``--output json`` for scripts — against a real etcd, through real CLI subprocesses."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd, free_port
from resolver.records.schema import ClusterInfo, ConflictMarker, Heartbeat, Keys, LastSeen, RegistryIdentity
from tests.conftest import eventually, put_record, record
from tests.test_cli import cli

_examples = itertools.count()


def _populate(gateway: EtcdGateway, keys: Keys) -> None:
    now = time.time()
    lease = gateway.grant(60)
    gateway.put(keys.identity(), RegistryIdentity("a" * 32, now - 3600).to_json())
    # cluster-1: alive and synced, renewing, 2 records; someone else tried to take its name
    gateway.put(keys.info("cluster-1"), ClusterInfo("cluster-1", "pub-a", "0.2.0", now - 30, now - 20, 2, 15,
                                                    cluster_uid="1" * 32).to_json(), lease=lease)
    gateway.put(keys.heartbeat("cluster-1"), Heartbeat("cluster-1", "1" * 32, "pub-a", 7, now - 2, 15).to_json(),
                lease=lease)
    put_record(gateway, keys, record("orders", cluster="cluster-1", address="10.1.0.1"), lease=lease)
    put_record(gateway, keys, record("orders", cluster="cluster-1", address="10.1.0.2"), lease=lease)
    gateway.put(keys.conflict("cluster-1", "f" * 32), ConflictMarker("cluster-1", "f" * 32, "pub-evil", now).to_json(),
                lease=lease)
    gateway.put(keys.cluster_meta("cluster-1") + "added-by-a-newer-release", b'{"whatever": 1}')
    # cluster-2: vanished; only its lease-less lastseen record is left
    gateway.put(keys.lastseen("cluster-2"), LastSeen("cluster-2", "2" * 32, "pub-b", now - 600, 5,
                                                     "running").to_json())
    # cluster-3: info still there but its heartbeat stood still for longer than its lease TTL
    gateway.put(keys.info("cluster-3"), ClusterInfo("cluster-3", "pub-c", "0.2.0", now - 300, now - 290, 0, 15,
                                                    cluster_uid="3" * 32).to_json(), lease=lease)
    gateway.put(keys.heartbeat("cluster-3"), Heartbeat("cluster-3", "3" * 32, "pub-c", 3, now - 100, 15).to_json(),
                lease=lease)
    # cluster-4: a publisher of the previous release, still listing
    gateway.put(keys.info("cluster-4"), ClusterInfo("cluster-4", "pub-d", "0.1.0", now).to_json(), lease=lease)


def test_status_shows_every_cluster_state(etcd: LocalEtcd, prefix: str, gateway: EtcdGateway, keys: Keys) -> None:
    _populate(gateway, keys)
    common = ["--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}"]
    result = cli("status", *common)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"registry {prefix}: identity {'a' * 32} (created " + lines[0].split("(created ")[1]
    assert lines[1].split()[:4] == ["CLUSTER", "STATE", "PUBLISHER", "IDENTITY"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == {"cluster-1", "cluster-2", "cluster-3", "cluster-4"}
    one = rows["cluster-1"].split()
    assert one[1:4] == ["OK,CONFLICT", "pub-a", "1" * 12]
    left = int(one[4].rstrip("s"))
    assert 50 <= left <= 60  # the info key's lease, asked from etcd
    assert 2 <= int(one[5].rstrip("s")) <= 10 and one[6] == "ago"  # heartbeat age
    assert "pub-evil" in rows["cluster-1"]
    assert rows["cluster-2"].split()[1] == "GONE"
    assert "last seen" in rows["cluster-2"] and "(lease expired)" in rows["cluster-2"]
    assert rows["cluster-3"].split()[1] == "STALE" and "no renewal for 10" in rows["cluster-3"]
    assert rows["cluster-4"].split()[1] == "SYNCING" and "not yet" in rows["cluster-4"]

    data = json.loads(cli("status", *common, "--output", "json").stdout)
    assert data["registry"]["id"] == "a" * 32
    clusters = {c["cluster"]: c for c in data["clusters"]}
    assert clusters["cluster-1"]["records"] == 2 and clusters["cluster-1"]["heartbeatSeq"] == 7
    assert clusters["cluster-1"]["conflicts"][0]["publisher"] == "pub-evil"
    assert clusters["cluster-2"]["state"] == "GONE" and clusters["cluster-2"]["lastSeen"]["endpoints"] == 5
    assert clusters["cluster-3"]["leaseTTL"] == 15 and clusters["cluster-4"]["clusterUid"] == ""


def test_status_of_an_empty_registry_says_so(etcd: LocalEtcd, prefix: str) -> None:
    result = cli("status", "--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}")
    assert result.returncode == 0, result.stderr
    assert "no identity key (run `dapr-etcd-resolver registry init`" in result.stdout
    assert "no clusters have published" in result.stdout


def test_ls_and_resolve_as_json(etcd: LocalEtcd, prefix: str, gateway: EtcdGateway, keys: Keys) -> None:
    put_record(gateway, keys, record("orders", cluster="cluster-1", address="10.1.0.1"))
    put_record(gateway, keys, record("orders", cluster="cluster-2", address="10.2.0.1"))
    common = ["--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}"]
    listed = json.loads(cli("ls", *common, "--output", "json").stdout)
    assert [(r["cluster"], r["address"], r["port"]) for r in listed] == [("cluster-1", "10.1.0.1", 50002),
                                                                        ("cluster-2", "10.2.0.1", 50002)]
    one = cli("resolve", "orders", *common, "--set", "clusterName=cluster-2", "--output", "json")
    assert json.loads(one.stdout) == {"id": "orders", "answer": "10.2.0.1:50002", "outcome": "registry",
                                      "policy": "FailOver", "registry": "synced"}
    many = json.loads(cli("resolve", "orders", *common, "--all", "--set", "policy=ActiveActive",
                          "--output", "json").stdout)
    assert sorted(many["answers"]) == ["10.1.0.1:50002", "10.2.0.1:50002"]


def test_resolve_prints_only_the_answer_and_says_why_it_fell_back() -> None:
    port = free_port()
    result = cli("resolve", "orders", "--set", f"etcdEndpoints=127.0.0.1:{port}", "--set", "initialSyncWait=300ms",
                 "--set", "etcdTimeout=500ms")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "orders-dapr.default.svc.cluster.local:50002\n"  # nothing else on stdout
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning: this is the fallback")]
    assert warning and f"127.0.0.1:{port}" in warning[0] and "connection refused" in warning[0]


def test_probe_reports_the_registry_and_exits_by_its_state(etcd: LocalEtcd, prefix: str, serve) -> None:
    fresh = serve("--set", f"etcdEndpoints={etcd.endpoint}", "--set", f"prefix={prefix}")
    sock = str(fresh.socket_path)

    def probed() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "resolver", "probe", "--socket", sock], capture_output=True,
                              text=True, timeout=30, check=False)

    def fresh_output() -> str:
        result = probed()
        return result.stdout if result.returncode == 0 else ""

    assert "registry: SERVING" in eventually(fresh_output, 20, "a fresh registry")
    fresh.stop()

    port = free_port()
    never = serve("--set", f"etcdEndpoints=127.0.0.1:{port}", "--set", "etcdTimeout=500ms",
                  "--set", f"prefix={prefix}")
    sock = str(never.socket_path)
    result = probed()
    assert result.returncode == 4, result.stdout + result.stderr
    assert "registry: NOT_SERVING: never synced" in result.stdout
    hinted = subprocess.run([sys.executable, "-m", "resolver", "probe", "--socket", sock, "--set",
                             f"etcdEndpoints=127.0.0.1:{port}", "--set", "etcdTimeout=500ms"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert hinted.returncode == 4 and f"from here: etcd status at http://127.0.0.1:{port} failed: connection refused" \
        in hinted.stdout
    assert "connection refused" in hinted.stdout


cluster_specs = st.fixed_dictionaries({
    "info": st.booleans(), "synced": st.booleans(),
    "heartbeat_age": st.one_of(st.none(), st.sampled_from([0.0, 5.0, 14.0, 16.0, 600.0])),
    "lastseen": st.one_of(st.none(), st.sampled_from(["running", "withdrawn"])),
    "conflicts": st.integers(0, 2),
})


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.lists(cluster_specs, min_size=1, max_size=4))
def test_status_judges_any_mix_of_cluster_keys_like_the_model(etcd: LocalEtcd, specs: list[dict[str, Any]]) -> None:
    """Whatever combination of info / heartbeat / lastseen / conflict keys a cluster has, status says
    what the documented rules say (lease TTL 15 s)."""
    from resolver.cli.status_cmd import gather
    from resolver.config import Layer, load_settings

    keys = Keys(f"/t/status-model-{next(_examples)}")
    gateway = EtcdGateway(load_settings([Layer("t", {"etcdEndpoints": etcd.endpoint, "prefix": keys.prefix})]).etcd)
    now = time.time()
    expected = {}
    try:
        for index, spec in enumerate(specs):
            cluster = f"cluster-{index}"
            if spec["info"]:
                gateway.put(keys.info(cluster), ClusterInfo(cluster, "pub", "0.2.0", now - 60,
                                                            now - 50 if spec["synced"] else 0, 1, 15).to_json())
            if spec["heartbeat_age"] is not None:
                gateway.put(keys.heartbeat(cluster), Heartbeat(cluster, "", "pub", 1, now - spec["heartbeat_age"],
                                                               15).to_json())
            if spec["lastseen"] is not None:
                gateway.put(keys.lastseen(cluster), LastSeen(cluster, "", "pub", now - 100, 1,
                                                             spec["lastseen"]).to_json())
            for number in range(spec["conflicts"]):
                gateway.put(keys.conflict(cluster, f"uid-{number}"),
                            ConflictMarker(cluster, f"uid-{number}", "other", now).to_json())
            if not any((spec["info"], spec["heartbeat_age"] is not None, spec["lastseen"], spec["conflicts"])):
                continue  # no key at all: the cluster does not exist
            if not spec["info"]:
                state = "GONE" if spec["lastseen"] else "UNKNOWN"
            elif spec["heartbeat_age"] is not None and spec["heartbeat_age"] > 15:
                state = "STALE"
            elif not spec["synced"]:
                state = "SYNCING"
            else:
                state = "OK"
            expected[cluster] = state + (",CONFLICT" if spec["conflicts"] else "")
        _, states = gather(gateway, keys, time.time())
        assert {s.cluster: s.state for s in states} == expected
        for s in states:
            assert len(s.conflicts) == next(spec["conflicts"] for i, spec in enumerate(specs)
                                            if f"cluster-{i}" == s.cluster)
    finally:
        gateway.delete_prefix(keys.root)
        gateway.close()
