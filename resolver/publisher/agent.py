"""The publisher agent: a source, a publication, optionally an election — and a clean exit.

Without ``--leader-elect`` the agent leads from the start. On SIGTERM/SIGINT it stops its
source and writer; with ``--withdraw`` it revokes its leases (its records disappear at once),
otherwise they stay until their lease expires, so a restart or a rolling update never opens
a gap in which the cluster disappears.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from resolver import __version__
from resolver.config import Settings
from resolver.publisher.election import LeaderElection, default_identity
from resolver.publisher.publication import Publication
from resolver.registry.gateway import EtcdGateway
from resolver.registry.schema import ClusterInfo

log = logging.getLogger(__name__)


class Source(Protocol):
    def start(self) -> object: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class PublisherOptions:
    cluster: str
    lease_ttl: float = 15.0
    withdraw: bool = False
    leader_elect: bool = False
    source: str = "kubernetes"
    file: Path | None = None
    kubeconfig: str | None = None
    namespaces: tuple[str, ...] = ()
    identity: str = ""


class PublisherAgent:
    def __init__(self, settings: Settings, options: PublisherOptions) -> None:
        self.options = options
        self.identity = options.identity or default_identity()
        self.gateway = EtcdGateway(settings.etcd)
        info = ClusterInfo(cluster=options.cluster, publisher=self.identity, version=__version__,
                           started_at=round(time.time(), 3), lease_ttl=options.lease_ttl)
        # One full list per namespace watched (or one for the whole cluster) before anything is written.
        scopes = list(options.namespaces) if options.source == "kubernetes" and options.namespaces else [""]
        self.publication = Publication(self.gateway, options.cluster, options.lease_ttl, info, scopes)
        self.source = self._build_source()
        self.election: LeaderElection | None = None
        self.synced = threading.Event()
        self.publication.on_synced = self.synced.set

    def _build_source(self) -> Source:
        if self.options.source == "file":
            from resolver.publisher.file_source import FileSource

            assert self.options.file is not None
            return FileSource(self.options.file, self.options.cluster, self.publication)
        from resolver.publisher.kube_client import api_client
        from resolver.publisher.kube_source import KubernetesSource

        return KubernetesSource(api_client(self.options.kubeconfig), self.options.cluster,
                                list(self.options.namespaces), self.publication)

    def start(self) -> PublisherAgent:
        log.info("publisher %s for cluster %s (source %s, lease TTL %gs%s)", self.identity, self.options.cluster,
                 self.options.source, self.options.lease_ttl, ", leader election" if self.options.leader_elect else "")
        self.source.start()
        if self.options.leader_elect:
            self.election = LeaderElection(self.gateway, self.options.cluster, self.options.lease_ttl,
                                           self.identity, self.publication.lead, self.publication.step_down).start()
        else:
            self.publication.lead()
        return self

    def stop(self) -> None:
        self.source.stop()
        if self.election is not None:
            self.election.stop()
        self.publication.step_down(withdraw=self.options.withdraw)
        self.gateway.close()
        log.info("publisher stopped%s", " (records withdrawn)" if self.options.withdraw else
                 f" (records expire within {self.options.lease_ttl:g}s unless a successor takes them over)")
