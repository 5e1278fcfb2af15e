"""A Dapr pod of the two-cluster topology (tests/support/clusters.py), and its callers' loops.

A pod is a network namespace of its own holding daprd and, for apps that serve, the echo app;
callers drive invocations through it with the ``invoker`` program (one JSON line per call).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.dns_bridge import NetNs
from tests.support.peers import peer

if TYPE_CHECKING:
    from tests.support.clusters import Cluster


@dataclass
class Pod:
    """A Dapr pod: its namespace, the echo app (if it serves one) and daprd."""

    name: str
    app: str
    cluster: Cluster
    address: str
    space: NetNs
    published: bool
    invokers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    zone: str = ""

    def daprd_log(self) -> str:
        return self.space.log("daprd.log")

    def invoke(self, target: str, count: int = 1, mode: str = "http", deadline: float = 30.0) -> list[dict[str, Any]]:
        """``count`` invocations of ``target`` through this pod's daprd, one JSON line each. The
        per-call ``deadline`` is generous: these calls check where invocations land, and a
        just-started pod's first call may wait for its component's first registry sync."""
        out = self.space.run([str(peer("invoker")), "-mode", mode, "-target", target, "-count", str(count),
                              "-timeout", f"{deadline}s"], timeout=count * deadline + 60)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def start_invoker(self, target: str, out: Path, mode: str = "http", interval: float = 0.0,
                      deadline: float = 5.0) -> None:
        """Invocations in a loop until :meth:`stop_invokers`, appended to ``out`` as JSON lines;
        ``deadline`` is the caller app's own per-call deadline."""
        self.invokers.append(self.space.start(
            [str(peer("invoker")), "-mode", mode, "-target", target, "-out", str(out),
             "-interval", f"{interval}s", "-timeout", f"{deadline}s"], "invoker.log"))

    def stop_invokers(self) -> None:
        for process in self.invokers:
            process.terminate()
        for process in self.invokers:
            process.wait(30)
        self.invokers.clear()
