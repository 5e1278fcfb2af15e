"""The deployment kit as a cluster gets it: ``kubectl kustomize`` with the kubectl built from Kubernetes.

One place for every test that reads deploy/: the kubectl (and its built-in kustomize) is the one
scripts/build-peers.sh builds at the pinned Kubernetes release, not whatever the machine has.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.peers import peer

ROOT = Path(__file__).resolve().parents[2]


def kustomize_text(directory: str | Path) -> str:
    """``kubectl kustomize`` of a directory (relative to the repository, or absolute), as YAML text."""
    built = subprocess.run([str(peer("kubectl")), "kustomize", str(ROOT / directory)], capture_output=True,
                           text=True, check=False, timeout=120)
    assert built.returncode == 0, f"kubectl kustomize {directory}: {built.stderr}"
    return built.stdout


def kustomize(directory: str | Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` builds from a directory."""
    return [doc for doc in yaml.safe_load_all(kustomize_text(directory)) if doc]
