"""Dapr's sentry, one per test cluster, for the cross-cluster mTLS tests.

Sentry in self-hosted mode makes its root and issuer on first start when its credentials
directory is empty; given another cluster's ``ca.crt``, ``issuer.crt`` and ``issuer.key`` it
issues from that root instead — which is how the tests make "one root" and "a root per cluster".
It refuses to start without a Configuration file of its own, hence :data:`CONFIGURATION`.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.dns_bridge import NetNs
from tests.support.peers import peer

PORT = 50001
CONFIGURATION = """apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: daprsystem
spec:
  mtls:
    enabled: true
    workloadCertTTL: 24h
    allowedClockSkew: 15m
"""
FILES = ("ca.crt", "issuer.crt", "issuer.key")


def start(space: NetNs, work: Path, credentials: Path, shared_from: Path | None) -> None:
    """Sentry in ``space`` on :data:`PORT`, with ``credentials`` (copied from ``shared_from``
    when the clusters share a root, else made by sentry itself)."""
    credentials.mkdir(exist_ok=True)
    if shared_from is not None:
        for name in FILES:
            (credentials / name).write_bytes((shared_from / name).read_bytes())
    config = work / "sentry-config.yaml"
    config.write_text(CONFIGURATION)
    space.start([str(peer("sentry")), "--config", str(config), "--issuer-credentials", str(credentials),
                 "--port", str(PORT), "--healthz-port", "8080", "--enable-metrics=false", "--mode", "standalone"],
                "sentry.log")


def ready(log: str, credentials: Path) -> bool:
    return (credentials / "ca.crt").exists() and "Running gRPC server" in log
