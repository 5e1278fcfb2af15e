"""A YAML inventory as a source — for VMs, bare metal and the demo — reloaded when it changes.

The file is a list of entries (or ``{endpoints: [...]}``)::

    - {appId: billing, namespace: default, instance: vm-billing-1, address: 192.168.7.10, port: 50002, zone: z1}

Entries that fail validation are skipped with a log line and a counter; the rest publish. A
file that cannot be read or parsed at all keeps the last good state published (a typo in the
inventory must not wipe the registry). Changes are noticed by polling (mtime, size and
content hash) — ten lines, and no dependency on inotify behaviour inside containers.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Any

import yaml

from resolver.errors import ValidationError
from resolver.observability import metrics
from resolver.publisher.publication import Publication
from resolver.registry.schema import EndpointRecord

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
MAX_FILE_BYTES = 16 * 1024 * 1024
_FIELDS = {"appId", "namespace", "instance", "address", "port", "zone", "node"}


def parse_inventory(text: str, cluster: str, source: str = "inventory") -> list[EndpointRecord]:
    """Valid records of an inventory; raises ValueError only when the document as a whole is unusable."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{source}: not valid YAML: {error}") from None
    if isinstance(document, dict):
        document = document.get("endpoints")
    if document is None:
        return []
    if not isinstance(document, list):
        raise ValueError(f"{source}: expected a list of endpoints, got {type(document).__name__}")
    records: dict[str, EndpointRecord] = {}
    for index, entry in enumerate(document):
        try:
            record = _entry(entry, cluster)
        except ValidationError as error:
            metrics.PUBLISHER_SKIPPED.labels("invalid_inventory_entry").inc()
            log.warning("%s entry %d skipped: %s", source, index, error)
            continue
        identity = f"{record.namespace}/{record.app_id}/{record.instance}"
        if identity in records:
            log.warning("%s entry %d skipped: duplicate of %s", source, index, identity)
            continue
        records[identity] = record
    return list(records.values())


def _entry(entry: Any, cluster: str) -> EndpointRecord:
    if not isinstance(entry, dict):
        raise ValidationError("entry", f"expected a mapping, got {type(entry).__name__}")
    unknown = set(entry) - _FIELDS
    if unknown:
        raise ValidationError(sorted(unknown)[0], f"unknown field; allowed: {', '.join(sorted(_FIELDS))}")
    for field in ("appId", "namespace", "instance", "address"):
        if not isinstance(entry.get(field), str):
            raise ValidationError(field, "missing or not a string")
    port = entry.get("port", 50002)
    return EndpointRecord(
        app_id=entry["appId"], namespace=entry["namespace"], cluster=cluster, instance=entry["instance"],
        address=entry["address"], port=port, zone=str(entry.get("zone") or ""), node=str(entry.get("node") or ""),
    ).validate()


class FileSource:
    def __init__(self, path: Path, cluster: str, publication: Publication, poll: float = POLL_SECONDS) -> None:
        self.path = path
        self.cluster = cluster
        self.publication = publication
        self.poll = poll
        self.loads = 0
        self._fingerprint: tuple[float, int, str] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inventory", daemon=True)

    def start(self) -> FileSource:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._stop.wait(self.poll)

    def check(self) -> bool:
        """Reload if the file changed; True when a new state was published."""
        try:
            stat = self.path.stat()
            if stat.st_size > MAX_FILE_BYTES:
                raise ValueError(f"{self.path}: {stat.st_size} bytes is over the {MAX_FILE_BYTES}-byte limit")
            data = self.path.read_bytes()
        except (OSError, ValueError) as error:
            if self._fingerprint != (0.0, -1, str(error)):
                log.warning("cannot read inventory (keeping the last good state): %s", error)
                self._fingerprint = (0.0, -1, str(error))
            return False
        fingerprint = (stat.st_mtime, stat.st_size, hashlib.sha256(data).hexdigest())
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        try:
            records = parse_inventory(data.decode("utf-8", errors="replace"), self.cluster, str(self.path))
        except ValueError as error:
            log.warning("inventory unusable (keeping the last good state): %s", error)
            return False
        self.loads += 1
        self.publication.replace(records)
        log.info("inventory %s loaded: %d endpoints", self.path, len(records))
        return True
