"""dapr-etcd-resolver: cross-cluster name resolution for Dapr, backed by an etcd registry.

Layers, lowest first; each imports only from the layers before it, and packages on one line
never import each other (import-linter enforces this; the contracts are in pyproject.toml):

1. :mod:`resolver.errors` (the one exception tree, and how a value is shown in a message) ·
   :mod:`resolver.timing` (the one backoff schedule every retry loop waits by);
2. :mod:`resolver.observability` — logs, metrics and probes (Protocols, never the registry's classes);
3. :mod:`resolver.records` — the key contract: names, the address policy, every record format;
4. :mod:`resolver.etcd` — the etcd client, the only package that imports ``etcd3``;
5. :mod:`resolver.config` — settings, parsed and validated in one place;
6. :mod:`resolver.registry` (the read side: the watch-fed cache) ·
   :mod:`resolver.writer` (the write side: records on leases, presence keys);
7. :mod:`resolver.reachability` — probes of other clusters' endpoints, and the gate that leaves
   the unreachable out of answers (never everything);
8. :mod:`resolver.resolution` (traffic policies and the resolve algorithm) ·
   :mod:`resolver.security` (etcd RBAC plans);
9. :mod:`resolver.component` (the Dapr pluggable NameResolution gRPC server) ·
   :mod:`resolver.publisher` (fills the registry from Kubernetes or a file; the only package that
   imports ``kubernetes``) · :mod:`resolver.dns` (the same answers as DNS) ·
   :mod:`resolver.consul` (the same answers as Consul's HTTP catalog);
10. :mod:`resolver.cli` — the ``dapr-etcd-resolver`` command;
11. :mod:`resolver.demo` — the one-command demo.

Outside the order: :mod:`resolver._proto` (generated stubs), :mod:`resolver.local_etcd` and
:mod:`resolver.local_tls` (a throw-away etcd and CA for the demo and the tests).
"""

__version__ = "0.2.0"
