#!/usr/bin/env python3
"""Make a CA, an etcd server certificate and client certificates for trying dapr-etcd-resolver out.

The client certificates' common names are the etcd users ``dapr-etcd-resolver etcd-rbac`` creates
(one naming scheme: ``root``, ``dapr-nr-publisher-<cluster>``, ``dapr-nr-resolver``), so with
etcd's ``--client-cert-auth`` each certificate *is* its user:

    python scripts/gen_certs.py --out ./tls --server-name etcd.dapr-nr-system.svc \\
        --root --resolver --cluster cluster-1 --cluster cluster-2
    dapr-etcd-resolver etcd-rbac --client-certs --cluster cluster-1 --cluster cluster-2   # then apply it

An existing CA in --out is reused (new certificates are signed by it) and never replaced
unless --force; existing certificates are not overwritten either unless --force.

Then, for deploy/etcd and the overlays (not for production: the CA key stays on disk):

    kubectl -n dapr-nr-system create secret generic etcd-server-tls \\
        --from-file=ca.crt=tls/ca.crt --from-file=tls.crt=tls/etcd-server.crt --from-file=tls.key=tls/etcd-server.key
    kubectl -n dapr-nr-system create secret generic etcd-publisher-tls \\
        --from-file=ca.crt=tls/ca.crt --from-file=tls.crt=tls/dapr-nr-publisher-cluster-1.crt \\
        --from-file=tls.key=tls/dapr-nr-publisher-cluster-1.key       # the publisher: writes its own range
    kubectl -n dapr-nr-system create secret generic etcd-reader-tls \\
        --from-file=ca.crt=tls/ca.crt --from-file=tls.crt=tls/dapr-nr-resolver.crt \\
        --from-file=tls.key=tls/dapr-nr-resolver.key                  # the DNS bridge and the component: read only

Needs the package and ``cryptography``: ``pip install -e '.[tls]'`` (the ``test`` extra includes it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="directory for the files (created if missing)")
    parser.add_argument("--server-name", action="append", default=[], help="extra DNS names/IPs of the etcd server")
    parser.add_argument("--cluster", action="append", default=[],
                        help="a publisher certificate for this cluster (CN dapr-nr-publisher-CLUSTER; repeatable)")
    parser.add_argument("--resolver", action="store_true", help="the read-only certificate (CN dapr-nr-resolver)")
    parser.add_argument("--root", action="store_true", help="an administrator certificate (CN root), for "
                        "etcdctl and etcd-rbac --apply once authentication is on")
    parser.add_argument("--client", action="append", default=[], metavar="CN",
                        help="a client certificate with any other CN (= etcd user)")
    parser.add_argument("--no-server", action="store_true", help="do not (re)issue the etcd server certificate")
    parser.add_argument("--force", action="store_true", help="replace an existing CA and existing certificates")
    args = parser.parse_args(argv)
    try:
        from resolver.local_tls import LocalCA
        from resolver.records import names
        from resolver.security.rbac import RESOLVER_ROLE, ROOT_USER, publisher_role
    except ImportError as error:
        print(f"error: {error.name} is not installed: run  pip install -e '.[tls]'  in the repository (the "
              "package and its tls extra)", file=sys.stderr)
        return 1
    for cluster in args.cluster:
        try:
            names.check_label(cluster, "--cluster")
        except ValueError as error:
            print(f"error: --cluster {cluster!r}: {error}; give a DNS-1123 label such as cluster-1", file=sys.stderr)
            return 2
    common_names = ([ROOT_USER] if args.root else []) + ([RESOLVER_ROLE] if args.resolver else []) \
        + [publisher_role(cluster) for cluster in args.cluster] + list(args.client)
    wanted = ([] if args.no_server else ["etcd-server"]) + common_names
    existing = [args.out / f"{name}.crt" for name in wanted if (args.out / f"{name}.crt").exists()]
    if existing and not args.force:
        print(f"error: {', '.join(map(str, existing))} already exist(s); pass --force to replace, or leave them "
              "out (--no-server for the server certificate)", file=sys.stderr)
        return 1
    if LocalCA.exists(args.out) and not args.force:
        ca = LocalCA.load(args.out)
        print(f"using the existing CA {ca.files.cert} (--force makes a new one)", file=sys.stderr)
        made = []
    else:
        ca = LocalCA(args.out)
        made = [ca.files.cert]
    made += [] if args.no_server else [ca.server(*args.server_name).cert]
    made += [ca.issue(name).cert for name in common_names]
    for path in made:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
