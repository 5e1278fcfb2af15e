"""The Consul-compatible catalog (``dapr-etcd-resolver consul``) against HTTP clients and Dapr's consul resolver."""
