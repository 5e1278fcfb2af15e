"""The publisher agent: Dapr pods (or an inventory file) → etcd endpoint records under leases."""
