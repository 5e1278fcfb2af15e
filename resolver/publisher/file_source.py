"""An inventory file as a source — for VMs, bare metal and the demo — reloaded when it changes.

The format and its validation live in :mod:`resolver.publisher.inventory`; this module is
about *reading the file safely* and *deciding when a new version counts*:

* **Only complete, settled versions are applied.** A new content is applied once it has been
  unchanged for :data:`SETTLE_SECONDS` (truncate-then-write, as most editors and copy tools
  do, passes through an empty or half-written file: 2,000 → 0 → 2,000 records were seen).
  A document that does not parse, or is empty / comment-only / ``~`` / ``{}`` / ``endpoints:``,
  keeps the last good state with a warning; only ``[]`` or ``endpoints: []`` empties it.
* **Only a regular file is read.** Symlinks are followed (ConfigMap mounts are symlinks), the
  file is opened non-blocking (a FIFO cannot hang the source) and checked with ``fstat`` on the
  opened descriptor — type and size, so a symlink to ``/dev/zero`` is refused instead of being
  read until memory runs out.
* **Reloads re-validate only what changed**: entries equal to one of the previous load's are
  reused as they were validated (the document itself is re-parsed: JSON is fast at that).
* **Change notification** with inotify where available (parent directories are watched, see
  :mod:`resolver.publisher.inotify`) plus a slow safety poll; elsewhere a 0.5 s poll of the
  file's ``stat`` (the content is read only when mtime, size or inode moved).
* A missing, unreadable or endpoint-less inventory is said clearly (warning, once per cause) —
  never a silent sync of zero records.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

from resolver.errors import InventoryError, NoEndpoints
from resolver.observability import metrics
from resolver.publisher.inotify import DirectoryWatcher, open_watcher
from resolver.publisher.inventory import (
    EntryValidator,
    entries_of,
    load_document,
    parse_entries,
    parse_inventory,
)
from resolver.publisher.publication import Publication
from resolver.records.addresses import DEFAULT_POLICY, AddressPolicy
from resolver.records.schema import EndpointRecord

log = logging.getLogger(__name__)

__all__ = ["FileSource", "parse_inventory", "read_inventory"]

POLL_SECONDS = 0.5
"""Polling interval without inotify."""
SAFETY_POLL_SECONDS = 5.0
"""With inotify, the file is still looked at this often (a symlink target in an unwatched directory)."""
SETTLE_SECONDS = 0.25
"""A new content must stay unchanged this long before it is applied."""
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_PROBLEMS_LOGGED = 20


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_inventory(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file (symlinks followed); :class:`InventoryError` for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InventoryError(f"{path}: no such file (nothing is published until it exists)") from None
    except OSError as error:
        raise InventoryError(f"{path}: cannot open: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InventoryError(f"{path}: is {_kind(info.st_mode)}; point --file at a regular file")
        if info.st_size > limit:
            raise InventoryError(f"{path}: {info.st_size} bytes is over the {limit}-byte limit")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise InventoryError(f"{path}: grew over the {limit}-byte limit while being read")
        return b"".join(chunks)
    except OSError as error:
        raise InventoryError(f"{path}: cannot read: {error.strerror}") from None
    finally:
        os.close(fd)


class FileSource:
    def __init__(self, path: Path, cluster: str, publication: Publication, poll: float = POLL_SECONDS,
                 policy: AddressPolicy = DEFAULT_POLICY, settle: float = SETTLE_SECONDS,
                 use_inotify: bool = True) -> None:
        self.path = path
        self.cluster = cluster
        self.publication = publication
        self.poll = poll
        self.policy = policy
        self.settle = settle
        self.use_inotify = use_inotify
        self.loads = 0
        self.published = -1  # records in the last applied state (-1: none yet)
        self.as_json = path.suffix.lower() == ".json"
        self._stat: tuple[int, int, int] | None = None
        self._applied: str | None = None  # digest of the last content parsed (applied or refused)
        self._candidate: str | None = None
        self._candidate_since = 0.0
        self._warned: str | None = None
        self._validated: dict[tuple[Any, ...], EndpointRecord] = {}  # entry content -> record, last load
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inventory", daemon=True)
        self.watcher: DirectoryWatcher | None = None

    def start(self) -> FileSource:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        if self.use_inotify:
            self.watcher = open_watcher([self.path.absolute().parent, self.path.resolve().parent])
        log.info("watching inventory %s (%s)", self.path, "inotify" if self.watcher else f"polling every {self.poll}s")
        last_check = 0.0
        try:
            while not self._stop.is_set():
                self.check()
                last_check = time.monotonic()
                pending = self._candidate is not None
                wait = self.settle if pending else (1.0 if self.watcher else self.poll)
                if self.watcher is None:
                    self._stop.wait(wait)
                    continue
                while not self._stop.is_set() and not self.watcher.wait(wait) and not pending:
                    if time.monotonic() - last_check >= SAFETY_POLL_SECONDS:
                        break
        finally:
            if self.watcher is not None:
                self.watcher.close()

    def _warn_once(self, message: str) -> None:
        if self._warned != message:
            self._warned = message
            log.warning("%s", message)

    def _keeping(self) -> str:
        return (f"keeping the last good state ({self.published} endpoints)" if self.published >= 0
                else "nothing is published until a valid inventory appears")

    def check(self) -> bool:
        """Look at the file; True when a new state was handed to the publication."""
        try:
            info = os.stat(self.path)
            fingerprint = (info.st_mtime_ns, info.st_size, info.st_ino)
        except OSError:
            fingerprint = None
        if fingerprint is not None and fingerprint == self._stat and self._candidate is None:
            return False
        try:
            data = read_inventory(self.path)
        except InventoryError as error:
            self._stat, self._candidate = None, None
            metrics.INVENTORY_LOADS.labels("unreadable").inc()
            self._warn_once(f"inventory unreadable ({self._keeping()}): {error}")
            return False
        self._stat = fingerprint
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._applied:
            self._candidate = None
            return False
        now = time.monotonic()
        if digest != self._candidate:
            self._candidate, self._candidate_since = digest, now
        if now - self._candidate_since < self.settle:
            self._stat = None  # look again after the settle time even if nothing moves
            return False
        self._candidate, self._applied, self._warned = None, digest, None
        return self._apply(data)

    def _apply(self, data: bytes) -> bool:
        source = str(self.path)
        started = time.perf_counter()
        try:
            entries = entries_of(load_document(data.decode("utf-8", errors="replace"), source, self.as_json), source)
        except NoEndpoints as error:
            metrics.INVENTORY_LOADS.labels("kept").inc()
            log.warning("inventory has no endpoints (%s; write endpoints: [] to publish nothing): %s",
                        self._keeping(), error)
            return False
        except InventoryError as error:
            metrics.INVENTORY_LOADS.labels("kept").inc()
            log.warning("inventory unusable (%s): %s", self._keeping(), error)
            return False
        validator = EntryValidator(self.cluster, self._validated)
        inventory = parse_entries(entries, self.cluster, source, self.policy, validator)
        self._validated = validator.seen
        for problem in inventory.problems[:MAX_PROBLEMS_LOGGED]:
            log.warning("%s", problem)
        if len(inventory.problems) > MAX_PROBLEMS_LOGGED:
            log.warning("%s: %d more entries skipped", source, len(inventory.problems) - MAX_PROBLEMS_LOGGED)
        self.loads += 1
        self.published = len(inventory.records)
        metrics.INVENTORY_LOADS.labels("applied").inc()
        if self.loads == 1:
            self.publication.replace(inventory.records)  # the first list reconciles the cluster's range
        else:
            self.publication.update(inventory.records)  # later ones: only what changed (the verify catches drift)
        log.info("inventory %s loaded in %.2fs: %d endpoints%s", self.path, time.perf_counter() - started,
                 len(inventory.records), f" ({len(inventory.problems)} entries skipped)" if inventory.problems else "")
        return True
