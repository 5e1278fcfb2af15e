"""The key contract: what the registry's keys are and what their values may say (docs/registry-schema.md).

Pure data and validation — no I/O — so every layer above (the etcd client included) may use it,
and readers, writers and the JSON Schemas agree on one definition.

* :mod:`~resolver.records.names` — the names that become key segments (labels, app ids, hosts, ports);
* :mod:`~resolver.records.addresses` — which addresses may be handed to a sidecar (the address policy);
* :mod:`~resolver.records.schema` — the key layout and the endpoint record; re-exports every
  other record format, so it is the one module to import a format from;
* :mod:`~resolver.records.coordination` — the values writers coordinate through: cluster info,
  heartbeat, last-seen, conflict marker, leader claim, member marker, identity claim, registry identity;
* :mod:`~resolver.records.strict` — the one strict decoder for every untrusted document (registry
  values, configuration JSON and YAML, inventories) and the readers of a registry value's fields.
"""
