"""dapr-etcd-resolver: cross-cluster name resolution for Dapr, backed by an etcd registry.

Layers, lowest first (each imports only from the ones above it in this list):

* :mod:`resolver.errors` — the one exception hierarchy;
* :mod:`resolver.config` — settings, parsed and validated in one place;
* :mod:`resolver.registry` — the etcd key schema, the etcd gateway and the watch-fed cache;
* :mod:`resolver.resolution` — traffic policies and the resolve algorithm;
* :mod:`resolver.component` — the Dapr pluggable NameResolution gRPC server;
* :mod:`resolver.publisher` — the agent that fills the registry from Kubernetes or a file;
* :mod:`resolver.dns` — the same answers served as DNS for an unmodified daprd;
* :mod:`resolver.cli` — the ``dapr-etcd-resolver`` command.
"""

__version__ = "0.2.0"
