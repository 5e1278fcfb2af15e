"""``dapr-etcd-resolver demo`` end to end: exits 0, tells the whole story, leaves nothing behind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from resolver.local_etcd import LocalEtcd


def run_demo(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "resolver", "demo", *extra], capture_output=True, text=True,
                          timeout=120, check=False)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_demo_tells_the_story_and_cleans_up() -> None:
    result = run_demo()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for section in ("== Local vs. remote", "== FailOver", "== ActiveActive, by weight", "== The DNS bridge"):
        assert section in out
    assert "Discovered via gRPC reflection v1alpha" in out
    assert re.search(r"order-service\s+10\.2\.0\.11:50002\s+cluster-2", out)  # local first
    assert re.search(r"payments\.shop\s+10\.1\.0\.21:50002\s+cluster-1", out)  # remote, other namespace
    assert re.search(r"inventory\s+inventory-dapr\.default\.svc\.cluster\.local:50002", out)  # fallback
    assert re.search(r"order-service\s+10\.1\.0\.1[12]:50002\s+cluster-1\s+no instance left", out)  # failover
    expired = re.search(r"cluster-1's records to expire: ([\d.]+)s", out)
    assert expired and float(expired.group(1)) <= 3 + 1.5  # within the lease TTL (+ detection)
    share = re.search(r"cluster-1\s+300\s+(\d+)%\s+6 of 8 entries", out)
    assert share and 65 <= int(share.group(1)) <= 85
    assert re.search(r"order-service\.default\.dapr\.internal\s+10\.2\.0\.11\s+10\.2\.0\.11", out)
    pids = [int(pid) for pid in re.findall(r"pid (\d+)", out.split("cleaned up:")[-1])]
    assert len(pids) >= 5
    assert not [pid for pid in pids if alive(pid)], "the demo left processes running"
    workdir = re.search(r"cleaned up: .* and (\S+)$", out, re.MULTILINE)
    assert workdir and not Path(workdir.group(1)).exists()  # its own files (other runs may share /tmp)


def test_demo_against_an_existing_etcd_uses_a_throwaway_prefix(etcd: LocalEtcd) -> None:
    result = run_demo("--set", f"etcdEndpoints={etcd.endpoint}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "throw-away prefix" in result.stdout
    assert etcd.etcdctl("get", "--prefix", "--keys-only", "/dapr-etcd-resolver-demo/").strip() == ""


def test_a_real_ctrl_c_on_the_demo_cleans_up_without_a_traceback(tmp_path: Path) -> None:
    """A terminal's Ctrl-C is SIGINT to the whole foreground process group, not to the demo alone."""
    import os
    import signal
    import time

    from resolver.demo.processes import wait_until

    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        demo = subprocess.Popen([sys.executable, "-m", "resolver", "demo"], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # a process group of its own, as a shell job has
    try:
        wait_until(lambda: "== Local vs. remote" in log.read_text(), 60, "the demo to be under way")
        os.killpg(demo.pid, signal.SIGINT)
        started = time.monotonic()
        code = demo.wait(60)
        assert time.monotonic() - started < 45
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
    output = log.read_text()
    assert code == 130, output
    assert "Traceback" not in output and "_InactiveRpcError" not in output
    assert "interrupted: cleaning up" in output
    pids = [int(pid) for pid in re.findall(r"pid (\d+)", output.split("cleaned up:")[-1])]
    assert len(pids) >= 4
    assert not [pid for pid in pids if alive(pid)], "the demo left processes running"
