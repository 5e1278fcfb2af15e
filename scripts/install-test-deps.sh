#!/usr/bin/env bash
# The system packages the test suite talks to: real peers that nobody on this project wrote.
#   knot-dnsutils  kdig, Knot's DNS client (protocol cases against the DNS bridge)
#   dnsutils       dig, BIND's client
#   musl-tools     musl-gcc, to build a static getaddrinfo probe (Alpine's resolver)
#   knot, dnsperf  the DNS benchmark's reference server and load generator (bench/)
#   etcd-server    etcd 3.4 (Debian), so the registry tests run against 3.4 as well as 3.5
#   etcd-client    etcdctl 3.4, to drive that server
#   iproute2       ip netns, for tests that need their own resolv.conf and port 53
#   prometheus     promtool, which checks and unit-tests the shipped alert rules (deploy/monitoring)
# Then scripts/build-peers.sh: daprd, sentry and CoreDNS built from the Go module proxy (needs Go >= 1.26).
# Idempotent, and quiet when everything is already there. Needs root (CI runs as root).
set -euo pipefail
packages=(knot-dnsutils dnsutils musl-tools knot dnsperf etcd-server etcd-client iproute2 prometheus)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    # Packages with daemons (knot, etcd-server, prometheus) must not start them: the tests start their own.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    if ((created_policy)); then rm -f "$policy"; fi
fi

# The real Dapr peers (daprd, sentry), CoreDNS and our Go test programs, from the Go module
# proxy at pinned releases; cached per machine, so this is a no-op once they are built.
bash "$(dirname "$0")/build-peers.sh"
