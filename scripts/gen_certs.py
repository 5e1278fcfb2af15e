#!/usr/bin/env python3
"""Make a CA, an etcd server certificate and client certificates for trying dapr-etcd-resolver out.

    python scripts/gen_certs.py --out ./tls --server-name etcd.dapr-nr-system.svc \\
        --client publisher-cluster-1 --client publisher-cluster-2 --client resolver

Then, for deploy/etcd and the overlays (not for production: the CA key stays on disk):

    kubectl -n dapr-nr-system create secret generic etcd-server-tls \\
        --from-file=ca.crt=tls/ca.crt --from-file=tls.crt=tls/etcd-server.crt --from-file=tls.key=tls/etcd-server.key
    kubectl -n dapr-nr-system create secret generic etcd-client-tls \\
        --from-file=ca.crt=tls/ca.crt --from-file=tls.crt=tls/publisher-cluster-1.crt \\
        --from-file=tls.key=tls/publisher-cluster-1.key
"""

from __future__ import annotations

import argparse
from pathlib import Path

from resolver.local_tls import LocalCA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--server-name", action="append", default=[], help="extra DNS names/IPs of the etcd server")
    parser.add_argument("--client", action="append", default=[], help="a client certificate (CN = etcd user)")
    args = parser.parse_args()
    ca = LocalCA(args.out)
    made = [ca.files.cert, ca.server(*args.server_name).cert]
    made += [ca.issue(name).cert for name in args.client]
    for path in made:
        print(path)


if __name__ == "__main__":
    main()
