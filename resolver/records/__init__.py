"""The key contract: what the registry's keys are and what their values may say (docs/registry-schema.md).

Pure data and validation — no I/O — so every layer above (the etcd client included) may use it,
and readers, writers and the JSON Schemas agree on one definition.

* :mod:`~resolver.records.names` — the names that become key segments (labels, app ids, hosts, ports);
* :mod:`~resolver.records.addresses` — which addresses may be handed to a sidecar (the address policy);
* :mod:`~resolver.records.schema` — the key layout and every record format, strictly decoded.
"""
