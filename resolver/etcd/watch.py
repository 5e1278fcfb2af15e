"""What the project's own etcd watch stream delivers, and the rules it follows.

python3-etcd3's own watcher cannot be trusted with a registry: when its stream breaks, its
callback thread dies on a ``NameError`` (``six`` is used but never imported) and the callbacks
are never told, so a watch goes silently dead. It also offers no way to notice a frozen etcd
whose TCP connection stays open. So the project speaks etcd's Watch stream directly, on the
gateway's channel (:mod:`resolver.etcd.multiwatch`, used by both cache scopes):

* one ``WatchCreateRequest`` per watched range from its resume revision, with etcd's require-leader
  option (the ``hasleader`` metadata etcd's Go client sends for ``WithRequireLeader``): a member
  that loses quorum closes the stream instead of answering progress requests from its own
  stale state, so a reader on the minority side of a partition notices;
* a ``progress_request`` every ``progress_interval``; if nothing at all has arrived for two
  intervals the stream is declared dead (:class:`RegistryUnavailable`) — this is how a frozen
  (SIGSTOPped) or partitioned etcd is noticed within seconds;
* ``etcd grpc-proxy`` never answers progress requests. When a stream stays silent but a plain
  read through the same connection succeeds, the server is taken to be such a proxy (logged
  once) and liveness is checked with that read every interval instead — no reconnect cycle;
* a compacted start revision cancels the watcher: the full mirror re-lists, the on-demand scope
  re-reads that range.

Each event carries its ``mod_revision``: the reader resumes after the last event it applied.
A response header's revision is *not* a safe resume point — while a watcher catches up, etcd
sends the store's current revision in every header (and, before 3.5.8 / 3.4.25, even in
progress notifications: etcd-io/etcd#15220), so resuming from it skips the rest of the backlog.
"""

from __future__ import annotations

from dataclasses import dataclass

PUT = 0
DELETE = 1


REQUIRE_LEADER = ("hasleader", "true")
"""gRPC metadata of etcd's ``WithRequireLeader``: the member refuses the stream without a leader."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: int  # PUT or DELETE
    key: bytes
    value: bytes
    lease: int
    mod_revision: int
