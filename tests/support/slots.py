"""At most :data:`SLOTS` two-cluster topologies at once on this machine, whichever process asks.

Each topology runs etcd, two CoreDNS, two bridges, two publishers and a daprd per pod. Three or
more at once on two cores starved etcd for tens of seconds (every reader lost its watch), and
pytest-xdist spreads the modules that make them over its workers; a lock file per slot keeps
the rest waiting, across processes, without depending on how tests are scheduled.
"""

from __future__ import annotations

import fcntl
import tempfile
import time
from pathlib import Path
from typing import IO

SLOTS = 2
WAIT = 900.0  # a topology's tests take a few minutes; a waiter gives up after this long


def acquire(what: str) -> IO[str]:
    """An open, exclusively locked slot file; close it to free the slot."""
    deadline = time.monotonic() + WAIT
    while True:
        for slot in range(SLOTS):
            handle = open(Path(tempfile.gettempdir()) / f"dapr-nr-topology-slot-{slot}.lock", "w")  # noqa: SIM115
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                handle.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no topology slot for {what} within {WAIT:.0f}s")
        time.sleep(0.5)
