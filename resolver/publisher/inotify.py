"""Linux inotify through ctypes: "something in this directory changed" without polling the file.

Ten-odd lines of ctypes instead of a dependency: the inventory source needs only a wake-up
(it re-reads and compares the file itself), so no event decoding is done. Directories are
watched rather than the file, because editors replace files by rename and Kubernetes
ConfigMap mounts swap a ``..data`` symlink — a watch on the old inode would go quiet.
Where inotify is unavailable (not Linux, a sandbox, the per-user watch limit), :func:`open_watcher`
returns None and the caller polls.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF = 0x400, 0x800
_MASK = (_IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
         | _IN_DELETE_SELF | _IN_MOVE_SELF)


class DirectoryWatcher:
    """An inotify descriptor watching some directories; :meth:`wait` returns True on any change."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True when something changed (events are drained)."""
        readable, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
        if not readable:
            return False
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while os.read(self._fd, 65536):
                pass
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def open_watcher(directories: Iterable[Path]) -> DirectoryWatcher | None:
    """Watch ``directories`` (those that exist), or None where inotify cannot be used."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
    except (OSError, AttributeError) as error:
        log.debug("inotify unavailable: %s", error)
        return None
    if fd < 0:
        log.debug("inotify_init1 failed: %s", os.strerror(ctypes.get_errno()))
        return None
    watched = 0
    for directory in dict.fromkeys(directories):
        if libc.inotify_add_watch(fd, os.fsencode(directory), _MASK) >= 0:
            watched += 1
    if not watched:
        os.close(fd)
        return None
    return DirectoryWatcher(fd)
