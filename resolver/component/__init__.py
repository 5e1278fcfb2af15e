"""The Dapr pluggable NameResolution component: gRPC on a Unix socket.

The wire contract is in docs/architecture.md ("The component's wire contract").
"""
