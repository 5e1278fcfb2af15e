"""The Dapr pluggable NameResolution component: gRPC on a Unix socket (DESIGN §1)."""
