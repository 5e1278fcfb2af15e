"""Registry answers as Consul catalog JSON: ``ServiceEntry`` lists and ``HealthCheck`` lists.

What Dapr's consul resolver reads (components-contrib ``consul.go``, ``watcher.go``):

* ``ResolveID`` picks **one entry uniformly at random** (``services[rand.Int() % len]``) and
  answers ``Service.Address`` (else ``Node.Address``) with the port from
  ``Service.Meta[daprPortMetaKey]``. So weights are carried by **repetition**: the candidate list
  of the app's policy (FailOver, ActiveActive with ``clusterWeights``, per-app overrides — the
  same :class:`~resolver.resolution.resolver.Resolver` as the component and the DNS bridge, from
  the point of view of the role's ``clusterName``) is spread by
  :func:`~resolver.resolution.policy.spread`: instance *i* of cluster *c* repeated so that a
  uniform pick follows the weights (exactly when the list fits ``max_entries``, else within
  ``1/max_entries``). Each repetition is its own entry with a distinct ``Service.ID``.
* The watcher (``useCache: true``) refetches an app only when the set of
  ``(ServiceName, ServiceID, Node)`` of its checks changes, so a ``Service.ID`` encodes
  everything an entry carries: cluster, instance, a digest of ``host:port``, and the repetition
  number. Any change of an answer therefore changes the check set the watcher compares.
* No candidate (the policy's fallback) is an **empty list**, as Consul answers an app with no
  healthy instance — daprd then reports "no healthy services found". The ``template`` fallback
  of the component has no Consul equivalent.
* **Zones** (``zoneAware``): the caller is known by the source address of its request — a pod
  IP, since daprd connects to the role directly — so its zone is the zone of the registry record
  with that host (:meth:`Catalog.caller_zone`); a client with no zoned record gets the role's
  ``zone`` setting, if any, else a cluster-level answer. Each client's answer is its own, and
  the blocking-query loop recomputes it per client.

Entries are computed deterministically (no random order): the blocking-query loop compares
answers to decide whether a change concerns a waiting client.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from resolver.records import names
from resolver.resolution.policy import Candidate, spread
from resolver.resolution.resolver import Resolver, Target

CHECK_NAME = "dapr-etcd-resolver registry"
"""The one check each entry carries: passing while the registry holds its record."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One catalog entry: one (possibly repeated) instance of an app."""

    service: str
    namespace: str
    cluster: str
    instance: str
    host: str
    port: int
    service_id: str


class Catalog:
    """The registry's entries for an app, as the role's ``clusterName`` sees them."""

    def __init__(self, resolver: Resolver, meta_key: str = "DAPR_PORT", max_entries: int = 200) -> None:
        self.resolver = resolver
        self.meta_key = meta_key
        self.max_entries = max_entries

    def target(self, service: str, namespace: str) -> Target:
        """Validate a service name (an app id, or ``id.namespace``) and a namespace; raises InvalidRequest."""
        return self.resolver.target(service, namespace)

    def caller_zone(self, client_host: str) -> str | None:
        """The zone of the record whose host is ``client_host`` (a request's source address); None —
        the role's ``zone`` setting — when none has one. Asked only under ``zoneAware``: the first
        question builds the cache's host index."""
        if not client_host or not self.resolver.zone_rule.aware:
            return None
        if client_host.startswith("::ffff:") and "." in client_host:  # IPv4 on a dual-stack socket
            client_host = client_host[7:]
        return self.resolver.reader.cache.zone_of_host(client_host) or None

    def entries(self, target: Target, service: str, client_host: str = "") -> tuple[Entry, ...]:
        """The weighted entries of one app for the client at ``client_host`` (empty: no candidate,
        Consul's "no healthy instance")."""
        selection = self.resolver.candidates(target, self.caller_zone(client_host)).selection
        if not selection:
            return ()
        instances = self.resolver.reader.cache.instances(target.namespace, target.app_id)
        tagged = tuple(Candidate(c.cluster, c.weight, tuple(f"{c.cluster}\0{a}" for a in c.addresses))
                       for c in selection)
        # A fixed seed: spread draws only when the list must be cut to max_entries, and the
        # same registry view must give the same answer (blocking queries compare answers).
        spread_list = spread(tagged, random.Random(0), self.max_entries)
        seen: dict[str, int] = {}
        found = []
        for tag in spread_list:
            repeat = seen[tag] = seen.get(tag, 0) + 1
            cluster, _, address = tag.partition("\0")
            host, port = names.split_host_port(address)
            instance = instances.get((cluster, address), "")
            digest = hashlib.blake2s(address.encode(), digest_size=4).hexdigest()
            found.append(Entry(service, target.namespace, cluster, instance, host, port,
                               f"{target.app_id}:{cluster}:{instance or '-'}:{digest}:{repeat}"))
        return tuple(found)

    # -- JSON ----------------------------------------------------------------------------------

    def check(self, entry: Entry, index: int) -> dict[str, Any]:
        """The ``HealthCheck`` of one entry (``/v1/health/state/*`` and an entry's ``Checks``)."""
        return {
            "Node": entry.cluster, "CheckID": f"service:{entry.service_id}", "Name": CHECK_NAME,
            "Status": "passing", "Notes": "", "Output": "the record is in the registry",
            "ServiceID": entry.service_id, "ServiceName": entry.service, "ServiceTags": [], "Type": "",
            "Namespace": entry.namespace, "Partition": "", "Definition": {},
            "CreateIndex": index, "ModifyIndex": index,
        }

    def service_entry(self, entry: Entry, index: int) -> dict[str, Any]:
        """One ``ServiceEntry`` of ``/v1/health/service/:service``."""
        return {
            "Node": {
                "ID": "", "Node": entry.cluster, "Address": entry.host, "Datacenter": entry.cluster,
                "TaggedAddresses": {}, "Meta": {"dapr-etcd-resolver-cluster": entry.cluster},
                "CreateIndex": index, "ModifyIndex": index,
            },
            "Service": {
                "Kind": "", "ID": entry.service_id, "Service": entry.service, "Tags": [],
                "Address": entry.host, "Port": entry.port, "Weights": {"Passing": 1, "Warning": 1},
                "Meta": {self.meta_key: str(entry.port), "dapr-etcd-resolver-cluster": entry.cluster,
                         "dapr-etcd-resolver-instance": entry.instance},
                "EnableTagOverride": False, "Namespace": entry.namespace, "Partition": "",
                "CreateIndex": index, "ModifyIndex": index,
            },
            "Checks": [self.check(entry, index)],
        }

    def services_json(self, entries: Iterable[Entry], index: int) -> list[dict[str, Any]]:
        return [self.service_entry(entry, index) for entry in entries]

    def checks_json(self, entries: Iterable[Entry], index: int) -> list[dict[str, Any]]:
        return [self.check(entry, index) for entry in entries]
