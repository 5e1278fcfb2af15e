"""Merge the dapr.internal server block into a CoreDNS Corefile, for CoreDNS setups that do not
import ``coredns-custom`` (kubeadm and most self-managed clusters, NodeLocal DNSCache's own
Corefile).

The block is the one in ``coredns-custom.yaml`` next to this file (one source of truth), with
the bridge's address filled in. An existing ``dapr.internal`` block is replaced, so running it
again (a new bridge IP, a new release) never duplicates it; every other line of the Corefile
is kept as it was.

    kubectl -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}' > Corefile
    python deploy/coredns/merge_corefile.py --bridge-ip 10.96.0.53 --output patch Corefile > patch.json
    kubectl -n kube-system patch configmap coredns --type merge --patch-file patch.json

CoreDNS's ``reload`` plugin (in the default kubeadm Corefile) picks the change up within ~30 s.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ZONE = "dapr.internal"


def stanza(bridge_ip: str, port: int = 53) -> str:
    """The server block of coredns-custom.yaml for ``bridge_ip`` (and CoreDNS listening on ``port``)."""
    document = yaml.safe_load((HERE / "coredns-custom.yaml").read_text())
    block: str = document["data"]["dapr-internal.server"]
    return block.replace("BRIDGE_IP", bridge_ip).replace(f"{ZONE}:53 {{", f"{ZONE}:{port} {{", 1)


def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0]


def find_block(corefile: str) -> tuple[int, int] | None:
    """Line range [start, end) of the top-level server block for the zone, if there is one."""
    lines = corefile.splitlines()
    depth, start = 0, None
    for number, line in enumerate(lines):
        code = _strip_comment(line)
        if depth == 0 and start is None and re.match(rf"^\s*(dns://)?{re.escape(ZONE)}\.?(:\d+)?\s*\{{", code):
            start = number
        depth += code.count("{") - code.count("}")
        if depth < 0:
            raise ValueError(f"Corefile line {number + 1}: '}}' without a matching '{{'")
        if start is not None and depth == 0:
            return start, number + 1
    if depth != 0:
        raise ValueError("Corefile: a '{' is never closed; is this the whole Corefile?")
    return None


def merge(corefile: str, block: str) -> str:
    """``corefile`` with ``block`` replacing its dapr.internal block, or appended after the others."""
    lines = corefile.splitlines()
    found = find_block(corefile)
    new = block.rstrip("\n").splitlines()
    if found is None:
        while lines and not lines[-1].strip():
            lines.pop()
        merged = [*lines, "", *new] if lines else new
    else:
        merged = [*lines[: found[0]], *new, *lines[found[1]:]]
    return "\n".join(merged) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("corefile", type=Path, help="the current Corefile ('-' for stdin)")
    parser.add_argument("--bridge-ip", required=True, help="the DNS bridge Service's clusterIP (params/cluster.env)")
    parser.add_argument("--port", type=int, default=53, help="the port this CoreDNS serves on (default 53)")
    parser.add_argument("--output", choices=["corefile", "patch"], default="corefile",
                        help="the merged Corefile, or a merge patch for kubectl patch configmap coredns")
    args = parser.parse_args(argv)
    try:
        ipaddress.ip_address(args.bridge_ip)
    except ValueError:
        parser.error(f"--bridge-ip {args.bridge_ip!r} is not an IP address: CoreDNS's forward takes addresses")
    try:
        text = sys.stdin.read() if str(args.corefile) == "-" else args.corefile.read_text()
        merged = merge(text, stanza(args.bridge_ip, args.port))
    except OSError as error:
        parser.error(f"cannot read {args.corefile}: {error.strerror}")
    except ValueError as error:
        parser.error(f"{args.corefile}: {error}")
    print(json.dumps({"data": {"Corefile": merged}}) if args.output == "patch" else merged, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
