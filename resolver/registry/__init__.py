"""The registry's read side: etcd's records as an in-memory cache every answer reads.

* :mod:`~resolver.registry.entries` — what the cache keeps, and what a key/value pair decodes to;
* :mod:`~resolver.registry.cache` — the in-memory view every resolve reads;
* :mod:`~resolver.registry.carry_over` — a new etcd history serves each cluster's old records until it syncs;
* :mod:`~resolver.registry.liveness` — per-cluster heartbeats a foreign credential cannot fake;
* :mod:`~resolver.registry.history_id` — one random id per etcd history, so a wiped etcd is noticed;
* :mod:`~resolver.registry.supervised` — the loop, health and surface every reader shares,
  ``ready_for`` included: what "ready to answer this app" means is each scope's own;
* :mod:`~resolver.registry.mirror` — ``cacheScope=all``: the full mirror, list then watch;
* :mod:`~resolver.registry.ondemand` — ``cacheScope=onDemand``: only the apps asked about;
* :mod:`~resolver.registry.pool` — ``open_reader``, the one factory every caller builds its reader
  with (address policy and cache scope applied), and readers shared by connection across
  component instances.
"""
