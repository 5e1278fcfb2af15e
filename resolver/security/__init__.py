"""etcd access control for the registry: one writer per cluster range, read-only resolvers."""
