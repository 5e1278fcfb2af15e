"""The Consul-compatible catalog: the registry as the part of Consul's HTTP API that Dapr's consul resolver reads.

Layer 8, beside :mod:`resolver.dns` (neither imports the other): the same cache and policies
(:mod:`resolver.resolution`), answered as Consul JSON with blocking queries. Modules: the
filter grammar (:mod:`~resolver.consul.filters`), the index (:mod:`~resolver.consul.index`),
entries and checks (:mod:`~resolver.consul.catalog`), limits (:mod:`~resolver.consul.limits`),
query parameters (:mod:`~resolver.consul.params`), the HTTP server
(:mod:`~resolver.consul.server`) and its tokens (:mod:`~resolver.consul.tokens`); the write side,
self-registration: bodies (:mod:`~resolver.consul.registration`), health checks
(:mod:`~resolver.consul.checks`) and the registrations with their records
(:mod:`~resolver.consul.agent`, writing through :mod:`resolver.writer.sidecar`). What is served
and why: ``docs/consul.md``.
"""
