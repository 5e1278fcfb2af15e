"""Merging the dapr.internal stanza into a Corefile keeps everything else and never duplicates it.

For CoreDNS setups that do not import ``coredns-custom`` (kubeadm): the operator runs
``deploy/coredns/merge_corefile.py`` on the live Corefile. Run here as a real subprocess on a
kubeadm-style Corefile, and as a property over Corefiles with arbitrary other server blocks.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy/coredns/merge_corefile.py"
_spec = importlib.util.spec_from_file_location("merge_corefile", SCRIPT)
assert _spec is not None and _spec.loader is not None
merge_corefile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(merge_corefile)
find_block, merge, stanza = merge_corefile.find_block, merge_corefile.merge, merge_corefile.stanza

KUBEADM = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
"""


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], input=stdin, capture_output=True, text=True,
                          timeout=30, check=False)


def test_merging_into_a_kubeadm_corefile_appends_once_and_replaces_on_rerun(tmp_path: Path) -> None:
    corefile = tmp_path / "Corefile"
    corefile.write_text(KUBEADM)
    first = run("--bridge-ip", "10.96.0.53", str(corefile))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(KUBEADM)  # the original, byte for byte, then the block
    assert first.stdout.count("dapr.internal:53 {") == 1 and "forward . 10.96.0.53 {" in first.stdout
    corefile.write_text(first.stdout)
    second = run("--bridge-ip", "10.100.7.7", "--output", "patch", str(corefile))
    merged = json.loads(second.stdout)["data"]["Corefile"]
    assert merged.count("dapr.internal:53 {") == 1 and "10.96.0.53" not in merged and "forward . 10.100.7.7 {" in merged
    assert merged.startswith(KUBEADM)


def test_the_merged_block_is_the_shipped_stanza() -> None:
    block = stanza("10.1.2.3")
    shipped = (ROOT / "deploy/coredns/coredns-custom.yaml").read_text()
    assert "forward . BRIDGE_IP {" in shipped and "forward . 10.1.2.3 {" in block
    assert stanza("10.1.2.3", port=8053).startswith("dapr.internal:8053 {")


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["--bridge-ip", "dns-bridge.svc", "-"], KUBEADM, "--bridge-ip 'dns-bridge.svc' is not an IP address"),
    (["--bridge-ip", "10.0.0.1", "-"], ".:53 {\n  errors\n", "never closed"),
    (["--bridge-ip", "10.0.0.1", "/nonexistent/Corefile"], "", "cannot read /nonexistent/Corefile"),
])
def test_bad_input_is_one_line_naming_it(args: list[str], stdin: str, message: str) -> None:
    result = run(*args, stdin=stdin)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr


label = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
server_block = st.builds(lambda zone, body: f"{zone}:53 {{\n    # {zone}\n    forward . 10.0.0.9 {{\n"
                                            f"        {body}\n    }}\n}}\n",
                         st.sampled_from(["example.org", "corp.internal", "."]), label)


@settings(max_examples=200, deadline=None)
@given(blocks=st.lists(server_block, max_size=4), at=st.integers(min_value=0, max_value=4),
       ips=st.lists(st.ip_addresses(v=4).map(str), min_size=1, max_size=3))
def test_merge_is_idempotent_and_keeps_other_blocks(blocks: list[str], at: int, ips: list[str]) -> None:
    existing = "".join([*blocks[:at], stanza("192.0.2.1"), *blocks[at:]]) if at <= len(blocks) else "".join(blocks)
    merged = existing
    for ip in ips:
        merged = merge(merged, stanza(ip))
    assert merged.count("dapr.internal:53 {") == 1 and f"forward . {ips[-1]} {{" in merged
    for block in blocks:
        assert block.strip() in merged
    assert merge(merged, stanza(ips[-1])) == merged  # a re-run with the same address changes nothing
    found = find_block(merged)
    assert found is not None and merged.splitlines()[found[0]] == "dapr.internal:53 {"
