"""The one way a registry reader is built, and readers shared by connection.

:func:`open_reader` (and, for the component's pool, the same builder behind it) is the only
place a reader is constructed — the ``resolve`` command and the DNS bridge call it — so every reader applies what its
settings say about the addresses it may serve (``clusterCIDRs``, ``allowLoopback``) and the
cache scope (``all`` or ``onDemand``). When each caller built its own, one drifted:
``resolve`` served records the component refuses, though it claims the component's code path.

One socket can serve several component instances (``x-component-instance``), and a re-Init
builds a new resolver; when their etcd settings, address policy and cache scope agree they share
one reader (one list, one watch, one cache). The last release stops it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from resolver.config import Settings
from resolver.etcd.connection import EtcdConnection
from resolver.records.addresses import AddressPolicy
from resolver.registry.mirror import RegistryReader
from resolver.registry.ondemand import OnDemandReader
from resolver.registry.supervised import SupervisedReader


@dataclass(frozen=True)
class ReaderSpec:
    """Everything a reader is built from — so also what two component instances must agree on to share one."""

    connection: EtcdConnection
    policy: AddressPolicy
    scope: str
    """``all`` (the full mirror) or ``onDemand`` (only the apps asked about)."""
    list_jitter: float = 0.0
    """Full mirror only: spread each full list over up to this many seconds (the on-demand scope
    lists only ``clusters/``, which many readers can afford at once)."""

    @classmethod
    def of(cls, settings: Settings, scope: str | None = None, list_jitter: float = 0.0) -> ReaderSpec:
        """The reader ``settings`` ask for; ``scope`` overrides ``cacheScope`` (the DNS bridge needs every app)."""
        return cls(settings.etcd, settings.address_policy, scope or settings.cache_scope, list_jitter)


def open_reader(settings: Settings, *, scope: str | None = None, list_jitter: float = 0.0) -> SupervisedReader:
    """A started reader for ``settings``: their etcd, their address policy and their cache scope
    (``scope`` overrides the last). The caller stops it."""
    return _build(ReaderSpec.of(settings, scope, list_jitter)).start()


def _build(spec: ReaderSpec) -> SupervisedReader:
    if spec.scope == "onDemand":
        return OnDemandReader(spec.connection, policy=spec.policy)
    if spec.scope == "all":
        return RegistryReader(spec.connection, policy=spec.policy, list_jitter=spec.list_jitter)
    raise ValueError(f"unknown cache scope {spec.scope!r} (expected all or onDemand)")


class ReaderPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers: dict[ReaderSpec, tuple[SupervisedReader, int]] = {}
        self._specs: dict[SupervisedReader, ReaderSpec] = {}

    def __len__(self) -> int:
        """Distinct readers (registries) this process runs now."""
        with self._lock:
            return len(self._readers)

    def acquire(self, settings: Settings) -> SupervisedReader:
        """The shared reader for these settings' etcd, address policy and cache scope (see :func:`open_reader`)."""
        spec = ReaderSpec.of(settings)
        with self._lock:
            reader, count = self._readers.get(spec, (None, 0))
            if reader is None:
                reader = _build(spec).start()
                self._specs[reader] = spec
            self._readers[spec] = (reader, count + 1)
            return reader

    def release(self, reader: SupervisedReader) -> None:
        with self._lock:
            spec = self._specs.get(reader)
            entry = self._readers.get(spec) if spec is not None else None
            if spec is None or entry is None or entry[0] is not reader:
                return
            if entry[1] > 1:
                self._readers[spec] = (reader, entry[1] - 1)
                return
            del self._readers[spec]
            del self._specs[reader]
        reader.stop()

    def close(self) -> None:
        with self._lock:
            readers = [reader for reader, _ in self._readers.values()]
            self._readers.clear()
            self._specs.clear()
        for reader in readers:
            reader.stop()
