"""Where the real peers built from the Go module proxy are: ``.peers/bin/`` of the checkout.

``scripts/build-peers.sh`` (which the README's test command runs through
``scripts/install-test-deps.sh``) builds daprd, sentry and CoreDNS at pinned releases into a
per-machine cache and links them here. A missing peer is a failure that says how to build it,
never a skip: a suite that skips the real daprd proves nothing about it.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".peers" / "bin"


def peer(name: str) -> Path:
    """The built program ``name`` (daprd, sentry, coredns, echoapp, invoker)."""
    path = BIN / name
    if not path.exists():
        raise AssertionError(f"{path} is missing: run `bash scripts/build-peers.sh` "
                             "(the README's test command does it through scripts/install-test-deps.sh)")
    return path


def versions() -> dict[str, str]:
    """The pinned releases the peers were built from (``.peers/versions.env``)."""
    text = (ROOT / ".peers" / "versions.env").read_text()
    return dict(line.split("=", 1) for line in text.split())
