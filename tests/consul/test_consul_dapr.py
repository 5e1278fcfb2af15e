"""Dapr's own consul name resolver (components-contrib v1.18.3, as daprd v1.18.2 links it) and
``github.com/hashicorp/consul/api`` against the catalog: answers, weights, failover and failback."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from typing import Any

import pytest

from resolver.consul.limits import ConsulLimits
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import Keys
from tests.conftest import eventually, put_record, record
from tests.consul.conftest import consul_peer, role_args


class Lines:
    """The JSON lines of a running peer, collected by a thread as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.items: list[dict[str, Any]] = []
        assert process.stdout is not None
        self._stdout = process.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stdout:
            if line.startswith("{"):
                self.items.append(json.loads(line))

    def answers_after(self, moment: float) -> list[dict[str, Any]]:
        return [item for item in list(self.items) if item.get("t", 0) > moment]


def addresses(lines: list[dict[str, Any]]) -> Counter[str]:
    return Counter(line.get("addr") or "error: " + line["error"] for line in lines if "t" in line)


@pytest.mark.parametrize("use_cache", ["false", "true"])
def test_resolve_id_answers_as_daprd_would(consul_role, etcd: LocalEtcd, prefix: str, gateway: EtcdGateway,
                                           keys: Keys, use_cache: str) -> None:
    put_record(gateway, keys, record("orders", cluster="cluster-2", address="10.2.0.1"))
    put_record(gateway, keys, record("orders", cluster="cluster-2", address="fd00::2", port=50011))
    role = consul_role(*role_args(etcd, prefix))
    lines = consul_peer("-address", role.address, "-app", "orders", "-count", "200", f"-use-cache={use_cache}")
    assert lines[0] == {"ready": True} and lines[-1] == {"done": True}
    seen = addresses(lines)
    assert set(seen) == {"10.2.0.1:50002", "[fd00::2]:50011"} and sum(seen.values()) == 200
    assert min(seen.values()) > 60  # a uniform pick over the two entries
    missing = consul_peer("-address", role.address, "-app", "ghost", "-count", "3", f"-use-cache={use_cache}")
    assert all("no healthy services found with AppID 'ghost'" in line["error"] for line in missing if "t" in line)


def test_active_active_300_100_share_per_resolve_id(consul_role, etcd: LocalEtcd, prefix: str,
                                                    gateway: EtcdGateway, keys: Keys) -> None:
    put_record(gateway, keys, record("web", cluster="cluster-1", address="10.1.0.1"))
    put_record(gateway, keys, record("web", cluster="cluster-2", address="10.2.0.1"))
    put_record(gateway, keys, record("web", cluster="cluster-2", address="10.2.0.2"))
    role = consul_role(*role_args(etcd, prefix, "--set", "policy=ActiveActive",
                                  "--set", "clusterWeights=cluster-1=300,cluster-2=100"))
    calls = 20_000
    lines = consul_peer("-address", role.address, "-app", "web", "-count", str(calls), "-use-cache=true")
    seen = addresses(lines)
    share = seen["10.1.0.1:50002"] / calls
    print(f"ActiveActive 300:100 over {calls} ResolveID calls: cluster-1 share {share:.4f}")
    assert abs(share - 0.75) < 0.02, seen
    assert abs(seen["10.2.0.1:50002"] - seen["10.2.0.2:50002"]) / calls < 0.02  # instances evenly


@pytest.mark.parametrize("use_cache", ["true", "false"])
def test_failover_and_failback_follow_etcd(consul_role, peer_process, etcd: LocalEtcd, prefix: str,
                                           gateway: EtcdGateway, keys: Keys, use_cache: str) -> None:
    local = record("orders", cluster="cluster-2", address="10.2.0.1")
    put_record(gateway, keys, local)
    put_record(gateway, keys, record("orders", cluster="cluster-1", address="10.1.0.1"))
    role = consul_role(*role_args(etcd, prefix, "--set", "policy=FailOver"))
    lines = Lines(peer_process("-address", role.address, "-app", "orders", "-count", "0", "-duration", "60s",
                               "-interval", "2ms", f"-use-cache={use_cache}"))
    eventually(lambda: len(lines.answers_after(0)) > 100, what="the peer resolving")
    time.sleep(0.5)  # with useCache the watcher's blocking query is waiting now
    assert set(addresses(lines.answers_after(time.time() - 0.2))) == {"10.2.0.1:50002"}

    def switch_time(since: float, address: str) -> float:
        def first() -> float | None:
            return next((float(item["t"]) for item in lines.answers_after(since) if item.get("addr") == address),
                        None)

        found = eventually(first, what=f"answers of {address}")
        assert found is not None
        return found - since

    removed_at = time.time()
    gateway.delete(local.key(keys))
    failover = switch_time(removed_at, "10.1.0.1:50002")
    time.sleep(0.5)
    after = addresses(lines.answers_after(removed_at + failover))
    restored_at = time.time()
    put_record(gateway, keys, local)
    failback = switch_time(restored_at, "10.2.0.1:50002")
    during = addresses(lines.answers_after(removed_at))
    print(f"useCache={use_cache}: failover {failover * 1000:.0f} ms, failback {failback * 1000:.0f} ms "
          f"after the etcd change; errors {sum(n for a, n in during.items() if a.startswith('error'))}")
    assert set(after) == {"10.1.0.1:50002"}, after  # once switched, every call goes to cluster-1
    assert not [a for a in during if a.startswith("error")], during  # never a failed resolve
    # Pushed by the blocking query, not found when its wait ran out (the default wait, 5 min):
    # the milliseconds are bench/consul_watchers.py's and docs/consul.md's.
    assert failover < ConsulLimits().default_wait / 10 and failback < ConsulLimits().default_wait / 10


def test_consul_api_blocking_query_headers_and_errors(consul_role, etcd: LocalEtcd, prefix: str,
                                                      gateway: EtcdGateway, keys: Keys, tmp_path) -> None:
    put_record(gateway, keys, record("orders", cluster="cluster-2", address="10.2.0.1"))
    (tmp_path / "token").write_text("s3cret")
    role = consul_role(*role_args(etcd, prefix), "--token-file", str(tmp_path / "token"), "--max-blocking", "1")
    common = ("-mode", "query", "-address", role.address, "-token", "s3cret")
    [first] = consul_peer(*common, "-path", "service", "-app", "orders")
    assert first["knownLeader"] is True and first["lastContactNs"] == 0 and first["index"] > 0
    assert [entry["Service"]["Address"] for entry in first["result"]] == ["10.2.0.1"]
    [me] = consul_peer(*common, "-path", "self")
    assert me["result"]["Config"]["Datacenter"] == "cluster-2"

    index = first["index"]
    holder = threading.Thread(target=consul_peer, args=(*common, "-path", "state", "-filter", 'ServiceName=="orders"',
                                                        "-index", str(index), "-wait", "2s"))
    holder.start()
    time.sleep(0.5)
    [over] = consul_peer(*common, "-path", "service", "-app", "orders", "-index", str(index), "-wait", "1s")
    assert "429" in over["error"] and "--max-blocking" in over["error"]
    holder.join()
    [waited] = consul_peer(*common, "-path", "service", "-app", "orders", "-index", str(index), "-wait", "1s")
    assert 0.9 < waited["seconds"] < 10 * 1 and waited["index"] == index  # the 1 s wait, then the same index

    threading.Timer(0.3, lambda: put_record(gateway, keys, record("orders", cluster="cluster-2",
                                                                  address="10.2.0.2"))).start()
    [woken] = consul_peer(*common, "-path", "state", "-filter", 'ServiceName=="orders"', "-index", str(index),
                          "-wait", "60s")
    assert woken["index"] > index and woken["seconds"] < 60 / 4 and len(woken["result"]) == 2

    [bad] = consul_peer(*common, "-path", "state", "-filter", 'ServiceName=="orders" and Status=="passing"')
    assert "Unexpected response code: 400" in bad["error"] and "'and'" in bad["error"]
    [denied] = consul_peer("-mode", "query", "-address", role.address, "-token", "wrong", "-path", "self")
    assert "403" in denied["error"] and "ACL not found" in denied["error"]
    [init] = consul_peer("-mode", "init", "-address", role.address, "-token", "wrong")
    assert init["init"] == "error" and "403" in init["error"]
    assert consul_peer("-mode", "init", "-address", role.address, "-token", "s3cret") == [{"init": "ok"}]
