"""Model-based: random registry operations and faults; at every quiet point the cache equals etcd.

Hypothesis drives a real reader against a real etcd through a byte-level proxy: puts, deletes,
lease expiries, compactions (also while the reader is cut off, so it must re-list), streams cut
at random byte offsets, etcd restarts with its data kept, and etcd wiped and re-created with the
same member configuration (same cluster id; the administrator re-runs ``registry init`` and
each publisher re-syncs). After every step the reader's view must equal a fresh list exactly.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from resolver.errors import RegistryError
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import LocalEtcd
from resolver.records.schema import ClusterInfo, EndpointRecord, Keys
from resolver.registry.history_id import ensure_identity
from resolver.registry.mirror import RegistryReader
from resolver.registry.ondemand import OnDemandReader
from tests.conftest import eventually, make_settings, record
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.registry  # also run against etcd 3.4 in CI (README's test command)

APPS = ("orders", "Payments", "cart")
CLUSTERS = ("cluster-1", "cluster-2")
_prefixes = itertools.count()


class World:
    """What every example shares: one restartable etcd of its own and a proxy in front of it."""

    def __init__(self, root: Path) -> None:
        self.etcd = LocalEtcd(root / "etcd")
        self.etcd.start()
        self.proxy = TcpProxy("127.0.0.1", self.etcd.client_port)

    def close(self) -> None:
        self.proxy.close()
        self.etcd.cleanup()


class RegistryMachine(RuleBasedStateMachine):
    world: ClassVar[World]
    scope: ClassVar[str] = "all"

    def __init__(self) -> None:
        super().__init__()
        prefix = f"/model/{os.getpid()}-{next(_prefixes)}"
        self.keys = Keys(prefix)
        self.gateway = EtcdGateway(make_settings(self.world.etcd.endpoint, prefix).etcd)
        ensure_identity(self.gateway, self.keys)
        self.world.proxy.restore()
        connection = make_settings(self.world.proxy.endpoint, prefix, etcdTimeout="1s").etcd
        self.reader: RegistryReader | OnDemandReader
        if self.scope == "onDemand":
            for cluster in CLUSTERS:  # publishers announce their clusters; the scope follows every app asked
                self.gateway.put(self.keys.info(cluster), ClusterInfo(cluster, "model", "test", 1.0, 2.0).to_json())
            self.reader = OnDemandReader(connection, progress_interval=0.3).start()
            assert all(self.reader.follow("default", app, 15) for app in APPS)
        else:
            self.reader = RegistryReader(connection, progress_interval=0.3).start()
        assert self.reader.wait_synced(15)
        self.restarts = self.wipes = 0

    def truth(self) -> dict[str, str]:
        _, pages = self.gateway.list_prefix(self.keys.apps)
        return {k.decode(): EndpointRecord.from_json(v).host_port for page in pages for k, v, _ in page}

    def put(self, app: str, cluster: str, instance: int, octet: int, lease: int | None = None) -> None:
        rec = record(app, cluster=cluster, instance=f"i{instance}", address=f"10.{CLUSTERS.index(cluster)}.0.{octet}")
        self.gateway.put(rec.key(self.keys), rec.to_json(), lease=lease)

    @rule(app=st.sampled_from(APPS), cluster=st.sampled_from(CLUSTERS), instance=st.integers(0, 4),
          octet=st.integers(1, 254))
    def put_record(self, app: str, cluster: str, instance: int, octet: int) -> None:
        self.put(app, cluster, instance, octet)

    @rule(data=st.data())
    def delete_record(self, data: st.DataObject) -> None:
        existing = sorted(self.truth())
        if existing:
            self.gateway.delete(data.draw(st.sampled_from(existing)))

    @rule(app=st.sampled_from(APPS), count=st.integers(1, 3))
    def lease_expires(self, app: str, count: int) -> None:
        """Records on a lease that then ends (revoked: the same delete events an expiry makes)."""
        lease = self.gateway.grant(30)
        for instance in range(count):
            self.put(app, "cluster-2", 10 + instance, 100 + instance, lease=lease)
        self.gateway.revoke(lease)

    def compact_now(self) -> None:
        """Compact at the current revision (a no-op when nothing was written since the last one)."""
        with contextlib.suppress(RegistryError):  # "required revision has been compacted"
            self.gateway.compact(self.gateway.status(self.keys.root).revision)

    @rule()
    def compact(self) -> None:
        self.compact_now()

    @rule(app=st.sampled_from(APPS), octet=st.integers(1, 254))
    def compact_while_cut_off(self, app: str, octet: int) -> None:
        """The reader's resume point is compacted away: it must re-list, dropping what it missed."""
        self.world.proxy.cut()
        self.put(app, "cluster-1", 9, octet)
        existing = sorted(self.truth())
        self.gateway.delete(existing[0])
        self.compact_now()
        self.world.proxy.restore()

    @rule(offset=st.integers(0, 20_000), writes=st.integers(1, 40))
    def cut_stream_mid_bytes(self, offset: int, writes: int) -> None:
        self.world.proxy.cut_after(offset)
        for index in range(writes):
            self.put(APPS[index % len(APPS)], CLUSTERS[index % 2], index % 5, 1 + index)

    @rule()
    def break_stream(self) -> None:
        self.world.proxy.cut()
        self.world.proxy.restore()

    @precondition(lambda self: self.restarts < 1)
    @rule()
    def restart_etcd_keeping_data(self) -> None:
        self.restarts += 1
        self.world.etcd.restart()
        self.gateway.reset()

    @precondition(lambda self: self.wipes < 1)
    @rule(octet=st.integers(1, 254))
    def wipe_and_recreate_etcd(self, octet: int) -> None:
        self.wipes += 1
        self.world.etcd.stop()
        shutil.rmtree(self.world.etcd.data_dir / "data")
        self.world.etcd.start()
        self.gateway.reset()
        ensure_identity(self.gateway, self.keys)  # the administrator's bootstrap, re-run
        for _ in range(30):  # the new history passes the reader's resume point
            self.put("orders", "cluster-1", 0, octet)
        for cluster in CLUSTERS:  # each publisher re-registers and marks itself synced
            info = ClusterInfo(cluster, "model", "test", 1.0, synced_at=2.0)
            self.gateway.put(self.keys.info(cluster), info.to_json())

    @invariant()
    def cache_equals_etcd(self) -> None:
        try:
            eventually(lambda: self.reader.cache.dump() == self.truth(), 30, "the cache equals a fresh list")
        except TimeoutError:
            cache, truth = self.reader.cache.dump(), self.truth()
            extra = {k: v for k, v in cache.items() if truth.get(k) != v}
            missing = {k: v for k, v in truth.items() if cache.get(k) != v}
            reader = self.reader
            raise AssertionError(f"cache differs from etcd: extra {extra}, missing {missing}, carried "
                                 f"{sorted(reader.cache.carried_clusters)}, withdrawn {sorted(reader.cache.withdrawn)}"
                                 f"; reader connected={reader.connected} failure={reader.failure} lag="
                                 f"{reader.lag_seconds():.1f}s relists={reader.relists} restarts="
                                 f"{reader.watch_restarts} cache revision {reader.cache.revision}, etcd revision "
                                 f"{self.gateway.status(self.keys.root).revision}") from None

    def teardown(self) -> None:
        self.reader.stop()
        self.gateway.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    shared = World(tmp_path_factory.mktemp("model"))
    yield shared
    shared.close()


def run(world: World, examples: int, steps: int, scope: str = "all") -> None:
    RegistryMachine.world = world
    RegistryMachine.scope = scope
    run_state_machine_as_test(RegistryMachine, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
        derandomize=bool(os.environ.get("CI")),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


@pytest.mark.timeout(480)  # 200 steps with etcd restarts: ~45 s alone, several times that on a loaded CI machine
def test_cache_equals_etcd_under_random_operations_and_faults(world: World) -> None:
    run(world, examples=10, steps=20)  # 200 state-machine steps per CI run


@pytest.mark.timeout(480)
def test_on_demand_cache_equals_etcd_under_random_operations_and_faults(world: World) -> None:
    run(world, examples=5, steps=20, scope="onDemand")


@pytest.mark.soak
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("scope", ["all", "onDemand"])
def test_cache_equals_etcd_soak(world: World, scope: str) -> None:
    run(world, examples=100, steps=50, scope=scope)
