"""The registry's write side: a publisher's records, leases and presence keys in etcd.

* :mod:`~resolver.writer.writer` — keeps a desired set of endpoint records in etcd through any etcd weather;
* :mod:`~resolver.writer.commit` — gets one change set into etcd: in chunks, leases kept alive, oversize isolated;
* :mod:`~resolver.writer.claim` — one compare-and-put claims a cluster name for one identity;
* :mod:`~resolver.writer.presence` — the heartbeat, ``lastseen`` and conflict-marker keys.
"""
