"""The registry's read side: etcd's records as an in-memory cache every answer reads.

* :mod:`~resolver.registry.cache` — the in-memory view every resolve reads;
* :mod:`~resolver.registry.liveness` — per-cluster heartbeats a foreign credential cannot fake;
* :mod:`~resolver.registry.history_id` — one random id per etcd history, so a wiped etcd is noticed;
* :mod:`~resolver.registry.supervised` — the loop, health and surface every reader shares;
* :mod:`~resolver.registry.mirror` — ``cacheScope=all``: the full mirror, list then watch;
* :mod:`~resolver.registry.ondemand` — ``cacheScope=onDemand``: only the apps asked about;
* :mod:`~resolver.registry.pool` — readers shared by connection across component instances.
"""
