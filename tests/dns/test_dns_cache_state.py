"""The response cache against the registry as it changes: a Hypothesis state machine, in-process.

Whatever sequence of puts and deletes the registry sees (watch events applied to a real
:class:`RegistryCache`), the caching service answers every question — in any spelling —
exactly as a service that computes every answer afresh would. One cluster (the caller's),
so there is a single answer per question to compare.
"""

from __future__ import annotations

import asyncio

import dns.message
import dns.rcode
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from resolver.dns import zone
from resolver.dns.answers import DnsAnswers
from resolver.dns.limits import DnsLimits
from resolver.dns.lookups import HostLookups
from resolver.dns.service import DnsService
from resolver.records.schema import EndpointRecord, Keys
from resolver.registry.cache import RegistryCache
from resolver.registry.mirror import RegistryReader
from resolver.resolution.resolver import Resolver
from tests.conftest import make_settings

ZONE = "dapr.internal"
APPS = ["orders", "OrderSvc", "WebApp"]
KEYS = Keys("/state")


def _reader() -> RegistryReader:
    """A reader that is never started (no etcd): the test feeds its cache watch events directly."""
    reader = RegistryReader(make_settings("127.0.0.1:1", KEYS.prefix).etcd)
    reader._synced.set()
    return reader


def _service(reader: RegistryReader, caching: bool) -> tuple[DnsService, HostLookups]:
    settings_ = make_settings("127.0.0.1:1", KEYS.prefix, clusterName="cluster-2", fallback="none")
    resolver = Resolver(settings_, reader)
    lookups = HostLookups(DnsLimits())
    return DnsService(DnsAnswers(resolver, ZONE, ttl=5, lookups=lookups), cache=caching), lookups


def _comparable(wire: bytes | None) -> tuple[str, list[str]]:
    assert wire is not None
    reply = dns.message.from_wire(wire)
    return dns.rcode.to_text(reply.rcode()), sorted(r.to_text() for s in reply.answer for r in s)


class CachedEqualsFresh(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        reader = _reader()
        self.registry: RegistryCache = reader.cache
        self.revision = 0
        self.cached, self._lookups1 = _service(reader, caching=True)
        self.fresh, self._lookups2 = _service(reader, caching=False)
        self.loop = asyncio.new_event_loop()

    def teardown(self) -> None:
        self.loop.close()
        self._lookups1.close()
        self._lookups2.close()

    @rule(app=st.sampled_from(APPS), instance=st.sampled_from(["a", "b"]), host=st.integers(1, 3))
    def put(self, app: str, instance: str, host: int) -> None:
        record = EndpointRecord(app_id=app, namespace="default", cluster="cluster-2", instance=instance,
                                address=f"10.2.0.{host}", port=50002)
        self.revision += 1
        self.registry.apply([(False, record.key(KEYS).encode(), record.to_json())], self.revision)

    @rule(app=st.sampled_from(APPS), instance=st.sampled_from(["a", "b"]))
    def delete(self, app: str, instance: str) -> None:
        key = f"{KEYS.prefix}/apps/cluster-2/default/{app}/{instance}"
        self.revision += 1
        self.registry.apply([(True, key.encode(), b"")], self.revision)

    @rule(app=st.sampled_from(APPS), spelling=st.sampled_from(["lower", "upper", "as-is"]),
          instance=st.sampled_from(["", "a.", "b."]), rdtype=st.sampled_from(["A", "AAAA", "SRV", "TXT"]))
    def query(self, app: str, spelling: str, instance: str, rdtype: str) -> None:
        spelled = {"lower": app.lower(), "upper": app.upper(), "as-is": app}[spelling]
        wire = dns.message.make_query(f"{instance}{spelled}.default.{ZONE}", rdtype).to_wire()
        for _ in range(2):  # the second time from the cache
            got = _comparable(self.loop.run_until_complete(self.cached.handle(wire, "udp")))
            expected = _comparable(self.loop.run_until_complete(self.fresh.handle(wire, "udp")))
            assert got == expected

    @invariant()
    def revision_is_the_registrys(self) -> None:
        assert self.registry.revision == self.revision


@pytest.fixture(autouse=True)
def _rebuild_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mixed-case index may lag a registry change by REBUILD_SECONDS; here it must not."""
    monkeypatch.setattr(zone, "REBUILD_SECONDS", 0.0)


TestCachedEqualsFresh = CachedEqualsFresh.TestCase
TestCachedEqualsFresh.settings = settings(max_examples=40, stateful_step_count=30, deadline=None,
                                          suppress_health_check=[HealthCheck.function_scoped_fixture])
