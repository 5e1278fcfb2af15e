"""Registry readers shared by connection, so many component instances cost one watch.

One socket can serve several component instances (``x-component-instance``), and a re-Init
builds a new resolver; when their etcd settings, address policy and cache scope agree they share
one reader (one list, one watch, one cache). The last release stops it.
"""

from __future__ import annotations

import threading
from typing import Literal, overload

from resolver.etcd.connection import EtcdConnection
from resolver.records.addresses import DEFAULT_POLICY, AddressPolicy
from resolver.registry.mirror import RegistryReader
from resolver.registry.ondemand import OnDemandReader
from resolver.registry.supervised import SupervisedReader

Reader = RegistryReader | OnDemandReader
_Key = tuple[EtcdConnection, AddressPolicy, str]


class ReaderPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers: dict[_Key, tuple[Reader, int]] = {}

    def __len__(self) -> int:
        """Distinct readers (registries) this process runs now."""
        with self._lock:
            return len(self._readers)

    @overload
    def acquire(self, connection: EtcdConnection, policy: AddressPolicy = ...,
                scope: Literal["all"] = ...) -> RegistryReader: ...

    @overload
    def acquire(self, connection: EtcdConnection, policy: AddressPolicy, scope: str) -> Reader: ...

    def acquire(self, connection: EtcdConnection, policy: AddressPolicy = DEFAULT_POLICY,
                scope: str = "all") -> Reader:
        """The shared reader for these etcd settings, address policy and cache scope (``all`` or ``onDemand``)."""
        key = (connection, policy, scope)
        with self._lock:
            reader, count = self._readers.get(key, (None, 0))
            if reader is None:
                reader = (OnDemandReader(connection, policy=policy) if scope == "onDemand"
                          else RegistryReader(connection, policy=policy)).start()
            self._readers[key] = (reader, count + 1)
            return reader

    def release(self, reader: SupervisedReader) -> None:
        key = (reader.connection, reader.cache.policy, "onDemand" if isinstance(reader, OnDemandReader) else "all")
        with self._lock:
            entry = self._readers.get(key)
            if entry is None or entry[0] is not reader:
                return
            if entry[1] > 1:
                self._readers[key] = (reader, entry[1] - 1)
                return
            del self._readers[key]
        reader.stop()

    def close(self) -> None:
        with self._lock:
            readers = [reader for reader, _ in self._readers.values()]
            self._readers.clear()
        for reader in readers:
            reader.stop()
