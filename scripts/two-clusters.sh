#!/usr/bin/env bash
# The two-cluster demo with the real daprd (root, Linux; nothing leaves the machine): builds
# daprd, sentry and CoreDNS from the Go module proxy if they are not built yet, makes two
# clusters of network namespaces (CoreDNS with the shipped stanza, the DNS bridge and a
# publisher per cluster, a daprd + echo app per pod), and prints what happened, in calls:
# FailOver and failback, scale-out, a lost cluster, a cut link, and the ActiveActive 300:100
# share. Everything it made is removed at the end, also on Ctrl-C.
#   bash scripts/two-clusters.sh               # stock daprd through the DNS bridge
#   bash scripts/two-clusters.sh component     # daprd-etcd asking the pluggable component
set -euo pipefail
cd "$(dirname "$0")/.."
if ((EUID != 0)); then
    echo "two-clusters: needs root (it makes network namespaces)" >&2
    exit 1
fi
if ! command -v kdig >/dev/null || ! command -v ip >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q --no-install-recommends knot-dnsutils iproute2
fi
bash scripts/build-peers.sh
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
exec .venv/bin/python -m bench.invocation --resolver "${1:-dns}" --callers 4 --seconds 15
