"""The etcd client: the only package that imports ``etcd3`` (import-linter holds it to that).

Nothing here knows what the registry's keys mean; everything here knows how etcd fails.

* :mod:`~resolver.etcd.connection` — what identifies one connection (endpoints, prefix, credentials);
* :mod:`~resolver.etcd.gateway` — every call to etcd, with deadlines, failover and one error mapping;
* :mod:`~resolver.etcd.etcd_errors` — what went wrong, in one line naming the endpoint and the fix;
* :mod:`~resolver.etcd.retry` — the one retry policy for etcd work (on :mod:`resolver.timing.backoff`);
* :mod:`~resolver.etcd.watch` — the rules of the project's own watch stream;
* :mod:`~resolver.etcd.multiwatch` — many watchers on one Watch stream (the on-demand cache);
* :mod:`~resolver.etcd.keepalive` — lease keep-alive over one stream we control;
* :mod:`~resolver.etcd.leases` — a pool of leases with a bounded number of keys each;
* :mod:`~resolver.etcd.range_reads` — small paged reads and comparisons the writer converges with.
"""
