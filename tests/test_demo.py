"""``dapr-etcd-resolver demo`` end to end: exits 0, tells the story, leaves nothing behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path


def test_demo_runs_end_to_end_and_cleans_up() -> None:
    before = set(Path(tempfile.gettempdir()).glob("dapr-nr-*"))
    result = subprocess.run([sys.executable, "-m", "resolver", "demo"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Discovered via gRPC reflection v1alpha" in out
    assert re.search(r"orders\s+10\.2\.0\.11:50002", out)  # local cluster wins under FailOver
    assert re.search(r"payments\.shop\s+10\.1\.0\.21:50002", out)  # cross-cluster, cross-namespace
    assert "inventory-dapr.default.svc.cluster.local:50002" in out  # fallback
    for pid in map(int, re.findall(r"pid (\d+)", out)):
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"process {pid} left running"
    assert set(Path(tempfile.gettempdir()).glob("dapr-nr-*")) <= before


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_demo_against_an_existing_etcd_uses_a_throwaway_prefix(etcd) -> None:
    result = subprocess.run([sys.executable, "-m", "resolver", "demo", "--set", f"etcdEndpoints={etcd.endpoint}"],
                            capture_output=True, text=True, timeout=120, check=False, env={**os.environ})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "throw-away prefix" in result.stdout
    leftovers = etcd.etcdctl("get", "--prefix", "--keys-only", "/dapr-etcd-resolver-demo/")
    assert leftovers.strip() == ""
