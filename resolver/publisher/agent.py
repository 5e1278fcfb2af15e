"""The publisher agent: a source, a publication, optionally an election — and a clean exit.

Without ``--leader-elect`` the agent leads from the start. On SIGTERM/SIGINT it stops its
source and writer; with ``--withdraw`` it revokes its leases (its records disappear at once),
otherwise they stay until their lease expires, so a restart or a rolling update never opens
a gap in which the cluster disappears.

A publisher that finds its cluster name held by a live publisher of another cluster identity
(:mod:`resolver.publisher.cluster_ownership`) writes nothing but a conflict marker, logs one error
and sets :attr:`PublisherAgent.failed`; ``publish`` then exits non-zero.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from resolver import __version__
from resolver.config import Settings
from resolver.errors import RegistryError
from resolver.etcd.gateway import EtcdGateway
from resolver.observability import metrics
from resolver.publisher.cluster_ownership import file_cluster_uid, find_conflict
from resolver.publisher.election import LeaderElection, default_identity
from resolver.publisher.publication import Publication
from resolver.records.schema import ClusterInfo
from resolver.writer.presence import write_conflict_marker
from resolver.writer.writer import VERIFY_INTERVAL

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
    cluster_uid: str = ""
    verify_interval: float = VERIFY_INTERVAL


class PublisherAgent:
    def __init__(self, settings: Settings, options: PublisherOptions) -> None:
        self.options = options
        self.settings = settings
        self.identity = options.identity or default_identity()
        self.gateway = EtcdGateway(settings.etcd)
        self.failed = threading.Event()
        self.failure: BaseException | None = None
        self._failure_lock = threading.Lock()
        api = self._api_client() if options.source == "kubernetes" else None
        self.cluster_uid = options.cluster_uid or self._default_cluster_uid(api)
        info = ClusterInfo(cluster=options.cluster, publisher=self.identity, version=__version__,
                           started_at=round(time.time(), 3), lease_ttl=options.lease_ttl,
                           cluster_uid=self.cluster_uid)
        # One full list per namespace watched (or one for the whole cluster) before anything is written.
        scopes = list(options.namespaces) if options.source == "kubernetes" and options.namespaces else [""]
        self.publication = Publication(self.gateway, options.cluster, options.lease_ttl, info, scopes,
                                       cluster_uid=self.cluster_uid, verify_interval=options.verify_interval,
                                       on_refused=self._refuse)
        self.source = self._build_source(api)
        self.election: LeaderElection | None = None
        self.synced = threading.Event()
        self.publication.on_synced = self._on_synced

    def _on_synced(self) -> None:
        self.synced.set()
        metrics.PUBLISHER_SYNCED.set(1)

    def _api_client(self) -> Any:
        from resolver.publisher.kube_client import api_client

        return api_client(self.options.kubeconfig)

    def _default_cluster_uid(self, api: Any) -> str:
        if self.options.source == "file":
            assert self.options.file is not None
            return file_cluster_uid(self.options.file)
        from kubernetes import client as k8s

        from resolver.publisher.cluster_ownership import kube_cluster_uid

        return kube_cluster_uid(k8s.CoreV1Api(api).read_namespace)

    def _build_source(self, api: Any) -> Source:
        if self.options.source == "file":
            from resolver.publisher.file_source import FileSource

            assert self.options.file is not None
            return FileSource(self.options.file, self.options.cluster, self.publication,
                              policy=self.settings.address_policy)
        from resolver.publisher.kube_source import KubernetesSource

        return KubernetesSource(api, self.options.cluster, list(self.options.namespaces), self.publication,
                                policy=self.settings.address_policy)

    def _refuse(self, problem: BaseException) -> None:
        """Another cluster identity holds our name: leave a marker, say so once, and fail."""
        with self._failure_lock:
            if self.failed.is_set() or self.failure is not None:
                return
            self.failure = problem
        metrics.PUBLISHER_CONFLICTS.inc()
        try:
            write_conflict_marker(self.gateway, self.options.cluster, self.cluster_uid, self.identity)
        except RegistryError as error:
            log.warning("could not write the conflict marker for cluster %s: %s", self.options.cluster, error)
        log.error("%s", problem)
        self.failed.set()

    def _claim_check(self) -> BaseException | None:
        return find_conflict(self.gateway, self.options.cluster, self.cluster_uid)

    def start(self) -> PublisherAgent:
        log.info("publisher %s for cluster %s (identity %s, source %s, lease TTL %gs%s)", self.identity,
                 self.options.cluster, self.cluster_uid or "none: guard off", self.options.source,
                 self.options.lease_ttl, ", leader election" if self.options.leader_elect else "")
        self.source.start()
        if self.options.leader_elect:
            self.election = LeaderElection(self.gateway, self.options.cluster, self.options.lease_ttl,
                                           self.identity, self.publication.lead, self.publication.step_down,
                                           cluster_uid=self.cluster_uid, claim_check=self._claim_check,
                                           on_refused=self._refuse).start()
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
