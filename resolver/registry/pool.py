"""Registry readers shared by connection, so many component instances cost one watch.

One socket can serve several component instances (``x-component-instance``), and a re-Init
builds a new resolver; when their etcd settings agree they share one reader (one list, one
watch, one cache). The last release stops it.
"""

from __future__ import annotations

import threading

from resolver.config import EtcdConnection
from resolver.registry.reader import RegistryReader


class ReaderPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers: dict[EtcdConnection, tuple[RegistryReader, int]] = {}

    def acquire(self, connection: EtcdConnection) -> RegistryReader:
        with self._lock:
            reader, count = self._readers.get(connection, (None, 0))
            if reader is None:
                reader = RegistryReader(connection).start()
            self._readers[connection] = (reader, count + 1)
            return reader

    def release(self, reader: RegistryReader) -> None:
        with self._lock:
            entry = self._readers.get(reader.connection)
            if entry is None or entry[0] is not reader:
                return
            if entry[1] > 1:
                self._readers[reader.connection] = (reader, entry[1] - 1)
                return
            del self._readers[reader.connection]
        reader.stop()

    def close(self) -> None:
        with self._lock:
            readers = [reader for reader, _ in self._readers.values()]
            self._readers.clear()
        for reader in readers:
            reader.stop()
