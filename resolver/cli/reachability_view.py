"""``status --reachability HOST:PORT``: what one answering process found reachable.

Reachability is a property of a pair (this bridge → that cluster), not of the registry, so it is
not in etcd: each DNS bridge or consul role serves its own view as JSON at ``/reachability``
on its ``--metrics-port``. This module reads it (timeout, one retry) and prints a table under
``status``'s registry table, or adds it to ``--output json``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from resolver.cli.inspect_cmds import print_table
from resolver.errors import FlagError

TIMEOUT = 5.0


def fetch(target: str) -> dict[str, Any]:
    """``/reachability`` of ``HOST:PORT`` (or a full ``http://`` URL); a FlagError naming the flag on failure."""
    url = target if target.startswith(("http://", "https://")) else f"http://{target}/reachability"
    last: Exception | None = None
    for _ in range(2):
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as reply:  # noqa: S310 - an operator's own URL
                found = json.loads(reply.read(1_000_000))
            if not isinstance(found, dict) or "clusters" not in found:
                raise FlagError("--reachability", f"{url} did not answer a reachability page")
            return found
        except urllib.error.HTTPError as error:
            if error.code == 404:
                raise FlagError("--reachability", f"{url}: 404 — that process does not probe (reachability=off, "
                                "or the component) or is an older release") from None
            last = error
        except (OSError, ValueError) as error:
            last = error
    raise FlagError("--reachability", f"cannot read {url}: {last} (give the --metrics-port of a DNS bridge or "
                    "consul role)")


def _since(at: float, now: float) -> str:
    if not at:
        return "since start"
    return f"{time.strftime('%H:%M:%S', time.localtime(at))} ({max(0.0, now - at):.0f}s)"


def print_reachability(page: dict[str, Any], source: str, now: float) -> None:
    own = page.get("cluster") or "(no clusterName)"
    print(f"\nreachability as seen from {own} ({source}):")
    if page.get("failOpen"):
        print(f"FAIL OPEN since {_since(page.get('failOpenSince', 0), now)}: every other probed cluster is "
              "unreachable; answers that have only those clusters are served as if probing were off")
    clusters: dict[str, dict[str, Any]] = page.get("clusters", {})
    if not clusters:
        print("no cluster probed yet (probes follow what callers ask about)")
        return
    rows = []
    for cluster, state in clusters.items():
        ejected = state.get("ejected", {})
        rows.append((cluster, str(state.get("state", "?")).upper(),
                     _since(state.get("since", 0), now) if "since" in state else "-",
                     f"{state.get('failedProbes', 0)}/{state.get('probes', 0)}" if "probes" in state else "-",
                     ", ".join(f"{a} until {time.strftime('%H:%M:%S', time.localtime(e['until']))}"
                               for a, e in ejected.items()) or "-",
                     state.get("lastError") or state.get("why") or "-"))
    print_table(("CLUSTER", "STATE", "SINCE", "FAILED/PROBES", "EJECTED", "LAST ERROR"), rows)
