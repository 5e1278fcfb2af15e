"""The etcd registry: key schema, etcd gateway, and the watch-fed in-memory cache."""
