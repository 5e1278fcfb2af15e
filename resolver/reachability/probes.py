"""TCP connect probes, many at once from one thread.

A probe is a TCP handshake to an endpoint's Dapr internal gRPC port, closed as soon as it
completes: it proves the path (routes, firewalls, gateways) and a listening daprd, which is
what an invocation needs first. No gRPC health call: daprd's internal port serves no health
service, and a handshake is the cheapest thing that fails where an invocation would.

All probes of a batch (up to :data:`MAX_OPEN`) are started non-blocking and awaited with one
selector, so a round of hundreds of probes costs one thread and lasts one ``probeTimeout`` per
batch at worst, not the sum of the probes. A set ``stop`` event ends the wait within
:data:`STOP_CHECK` seconds (shutdown must not wait out a long timeout). A blackholed endpoint
ends as ``timed out``; a refusing one (RST, or an ICMP "prohibited") ends at once with the
kernel's error — both are failures.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import threading
import time
from collections.abc import Sequence

MAX_OPEN = 256
"""Probes in flight at once: a round larger than this runs in batches (stays far below fd limits)."""
STOP_CHECK = 0.2
TIMED_OUT = "timed out"
STOPPED = "stopped"


def connect_all(targets: Sequence[tuple[str, int]], timeout: float,
                stop: threading.Event | None = None) -> list[str | None]:
    """Probe every ``(ip, port)``; the result at each position is None (connected) or the error."""
    stop = stop or threading.Event()
    results: list[str | None] = []
    for start in range(0, len(targets), MAX_OPEN):
        if stop.is_set():
            return results + [STOPPED] * (len(targets) - len(results))
        results += _batch(targets[start:start + MAX_OPEN], timeout, stop)
    return results


def _batch(targets: Sequence[tuple[str, int]], timeout: float, stop: threading.Event) -> list[str | None]:
    results: list[str | None] = [TIMED_OUT] * len(targets)
    selector = selectors.DefaultSelector()
    try:
        for position, (host, port) in enumerate(targets):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                probe = socket.socket(family, socket.SOCK_STREAM)
            except OSError as error:
                results[position] = f"no socket: {error.strerror}"
                continue
            probe.setblocking(False)
            code = probe.connect_ex((host, port))
            if code == 0:
                results[position] = None
                probe.close()
            elif code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                selector.register(probe, selectors.EVENT_WRITE, position)
            else:
                results[position] = os.strerror(code)
                probe.close()
        deadline = time.monotonic() + timeout
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stop.is_set():
                break
            for key, _ in selector.select(min(remaining, STOP_CHECK)):
                probe = key.fileobj  # type: ignore[assignment]
                code = probe.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                results[key.data] = None if code == 0 else os.strerror(code)
                selector.unregister(probe)
                probe.close()
    finally:
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()
    return results
