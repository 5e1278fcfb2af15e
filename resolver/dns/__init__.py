"""The DNS bridge: the registry's answers served as DNS, for an unmodified daprd (DESIGN §6)."""
