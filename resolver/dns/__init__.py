"""The DNS bridge: the registry's answers served as DNS, for an unmodified daprd (docs/dns.md).

* :mod:`~resolver.dns.zone` — what a name in the zone denotes, case-insensitively;
* :mod:`~resolver.dns.answers` — question → records (RFC 8020 existence, fallback, host names);
* :mod:`~resolver.dns.weights` — cluster weights as address counts per answer, for daprd's random pick per invocation;
* :mod:`~resolver.dns.lookups` — bounded system-resolver lookups (SERVFAIL on timeout);
* :mod:`~resolver.dns.service` — one message in, one out: protocol rules and the response cache;
* :mod:`~resolver.dns.server` — UDP and TCP transports with their limits;
* :mod:`~resolver.dns.limits` — the process-level limits and their throttled log.
"""
