"""``status``: every cluster the registry knows — alive, syncing, stale, gone or in conflict.

What an operator needs at 3 a.m. is what is *wrong*, so a cluster is listed not only while its
publisher is alive (``info``) but also after it vanished (its lease-less ``lastseen`` record
remains: ``cluster-1  GONE  last seen 12:03:41 (lease expired)``), and a cluster whose name a
publisher of another identity tried to take is marked ``CONFLICT``. Lease time left comes from
etcd (the ``info`` key's lease); the last renewal age from the ``heartbeat`` the leading
publisher rewrites every leaseTTL/3. Unknown keys under ``clusters/{cluster}/`` are ignored
(a newer publisher may write more). ``--output json`` prints the same, for scripts.
``--reachability HOST:PORT`` adds what a DNS bridge or consul role finds reachable
(:mod:`resolver.cli.reachability_view`): that is a property of the asker, not of the registry.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from resolver.cli.common import note_key_range, settings_from
from resolver.cli.inspect_cmds import print_table
from resolver.cli.reachability_view import fetch, print_reachability
from resolver.errors import InvalidRecord
from resolver.etcd.gateway import EtcdGateway
from resolver.records.schema import ClusterInfo, ConflictMarker, Heartbeat, Keys, LastSeen, RegistryIdentity


@dataclass
class ClusterState:
    """Everything the registry says about one cluster, and the verdict."""

    cluster: str
    state: str = "OK"  # OK | SYNCING | STALE | GONE | CONFLICT (appended to another state: "OK,CONFLICT")
    publisher: str = ""
    cluster_uid: str = ""
    version: str = ""
    started_at: float = 0.0
    synced_at: float = 0.0
    endpoints: int = 0
    records: int | None = None
    lease_ttl: float = 0.0
    lease_remaining: int | None = None
    heartbeat_at: float = 0.0
    heartbeat_seq: int | None = None
    last_seen: dict[str, Any] | None = None
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) if at else "-"


def _ago(at: float, now: float) -> str:
    if not at:
        return "-"
    seconds = max(0.0, now - at)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def _lease_ttl(gateway: EtcdGateway, lease: int) -> int | None:
    if not lease:
        return None
    return gateway.lease_ttl(lease)


def _record_count(gateway: EtcdGateway, keys: Keys, cluster: str) -> int:
    return gateway.count_prefix(keys.cluster_apps(cluster))


def gather(gateway: EtcdGateway, keys: Keys, now: float) -> tuple[RegistryIdentity | None, list[ClusterState]]:
    """Read the registry identity and the ``clusters/`` range and judge each cluster."""
    note_key_range(keys.identity())
    identity_raw = gateway.get(keys.identity())
    identity = None
    if identity_raw is not None:
        try:
            identity = RegistryIdentity.from_json(identity_raw)
        except InvalidRecord as error:
            print(f"warning: skipping {keys.identity()}: {error}", file=sys.stderr)
    states: dict[str, ClusterState] = {}
    info_leases: dict[str, int] = {}
    note_key_range(keys.clusters)
    _, pages = gateway.list_prefix(keys.clusters)
    for page in pages:
        for raw_key, value, lease in page:
            key = raw_key.decode("utf-8", errors="replace")
            try:
                cluster, leaf = keys.parse_cluster_key(key)
            except InvalidRecord as error:
                print(f"warning: skipping {key}: {error}", file=sys.stderr)
                continue
            state = states.setdefault(cluster, ClusterState(cluster))
            try:
                _apply(state, leaf, value)
            except InvalidRecord as error:
                state.invalid.append(f"{leaf}: {error}")
                print(f"warning: skipping {key}: {error}", file=sys.stderr)
                continue
            if leaf == "info":
                info_leases[cluster] = lease
    for cluster, state in states.items():
        _judge(state, now, has_info=cluster in info_leases)
        if cluster in info_leases:
            state.lease_remaining = _lease_ttl(gateway, info_leases[cluster])
            state.records = _record_count(gateway, keys, cluster)
    return identity, [states[name] for name in sorted(states)]


def _apply(state: ClusterState, leaf: str, value: bytes) -> None:
    if leaf == "info":
        info = ClusterInfo.from_json(value, state.cluster)
        state.publisher, state.cluster_uid, state.version = info.publisher, info.cluster_uid, info.version
        state.started_at, state.synced_at, state.endpoints = info.started_at, info.synced_at, info.endpoints
        state.lease_ttl = info.lease_ttl
    elif leaf == "heartbeat":
        beat = Heartbeat.from_json(value, state.cluster)
        state.heartbeat_at, state.heartbeat_seq = beat.at, beat.seq
        state.lease_ttl = state.lease_ttl or beat.lease_ttl
        state.cluster_uid = state.cluster_uid or beat.cluster_uid
    elif leaf == "lastseen":
        seen = LastSeen.from_json(value)
        state.last_seen = {"at": seen.at, "publisher": seen.publisher, "clusterUid": seen.cluster_uid,
                           "endpoints": seen.endpoints, "reason": seen.reason}
    elif leaf.startswith("conflict/"):
        marker = ConflictMarker.from_json(value)
        state.conflicts.append({"clusterUid": marker.cluster_uid, "publisher": marker.publisher, "at": marker.at})
    # leader and any key a newer release adds: nothing to judge


def _judge(state: ClusterState, now: float, has_info: bool) -> None:
    if not has_info:
        state.state = "GONE" if state.last_seen is not None else "UNKNOWN"
    elif state.heartbeat_at and state.lease_ttl and now - state.heartbeat_at > state.lease_ttl:
        state.state = "STALE"
    elif not state.synced_at:
        state.state = "SYNCING"
    if state.conflicts:
        state.state += ",CONFLICT"


def _notes(state: ClusterState, now: float) -> str:
    notes = []
    seen = state.last_seen
    if state.state.startswith("GONE") and seen is not None:
        why = "withdrawn" if seen.get("reason") == "withdrawn" else "lease expired"
        notes.append(f"last seen {_clock(seen['at'])} ({why}), {seen['endpoints']} endpoints, "
                     f"publisher {seen['publisher'] or '-'}")
    if state.state.startswith("STALE"):
        notes.append(f"no renewal for {now - state.heartbeat_at:.0f}s (lease TTL {state.lease_ttl:g}s): readers "
                     "leave it out of answers")
    if state.state.startswith("UNKNOWN"):
        notes.append("no info and no lastseen record (a publisher of an older release, or leftovers)")
    for conflict in state.conflicts:
        notes.append(f"conflict: publisher {conflict['publisher'] or '-'} of identity "
                     f"{conflict['clusterUid'][:12]} refused at {_clock(conflict['at'])} (another identity holds "
                     "this cluster name: rename one cluster or stop the wrong publisher)")
    if state.invalid:
        notes.append(f"{len(state.invalid)} invalid key(s) skipped")
    return "; ".join(notes)


def _table(identity: RegistryIdentity | None, states: list[ClusterState], prefix: str, now: float) -> None:
    if identity is not None:
        print(f"registry {prefix}: identity {identity.id} (created {_clock(identity.created_at)})")
    else:
        print(f"registry {prefix}: no identity key (run `dapr-etcd-resolver registry init` once as the etcd "
              "administrator)")
    if not states:
        print("no clusters have published under this prefix")
        return
    print_table(("CLUSTER", "STATE", "PUBLISHER", "IDENTITY", "LEASE LEFT", "RENEWED", "SYNCED", "ENDPOINTS",
                 "NOTES"), [
        (s.cluster, s.state, s.publisher or "-", s.cluster_uid[:12] or "-",
         "-" if s.lease_remaining is None else ("expired" if s.lease_remaining < 0 else f"{s.lease_remaining}s"),
         _ago(s.heartbeat_at, now), _ago(s.synced_at, now) if s.synced_at else ("not yet" if s.publisher else "-"),
         "-" if s.records is None else (str(s.records) if s.records == s.endpoints else f"{s.records} (info says "
                                                                                           f"{s.endpoints})"),
         _notes(s, now) or "-")
        for s in states
    ])


def cmd_status(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    keys = Keys(settings.prefix)
    gateway = EtcdGateway(settings.etcd)
    now = time.time()
    try:
        identity, states = gather(gateway, keys, now)
    finally:
        gateway.close()
    views = {source: fetch(source) for source in getattr(args, "reachability", [])}
    if getattr(args, "output", "table") == "json":
        print(json.dumps({
            "prefix": settings.prefix,
            "registry": None if identity is None else {"id": identity.id, "createdAt": identity.created_at},
            "clusters": [{**{_camel(k): v for k, v in asdict(s).items()}, "notes": _notes(s, now)} for s in states],
            **({"reachability": views} if views else {}),
        }, indent=2))
    else:
        _table(identity, states, settings.prefix, now)
        for source, page in views.items():
            print_reachability(page, source, now)
    return 0


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest).replace("Ttl", "TTL")
