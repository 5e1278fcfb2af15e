"""The registry's identity: one random id per etcd history, created once by the administrator.

etcd derives its cluster id from the member configuration, so an etcd re-created with an empty
data directory (disaster recovery, ``helm uninstall/install``, a test environment) looks like the
same cluster — and once its revision passes a reader's resume point, the reader would resume on
a different history: deleted records resolving forever, new ones never seen. A lease-less key
holding a random id makes the history observable: readers read it with every list and check it
on every resume; seen before and now missing or different means a new history, so they re-list.

Creating it is the administrator's bootstrap (``dapr-etcd-resolver registry init``, also run by
``etcd-rbac --apply`` and the demo): publisher roles may write only their own cluster's ranges.
Creation is a create-if-absent transaction, so running it twice, or from two places, is safe.
A *restored* snapshot keeps the old id — restore with ``--bump-revision --mark-compacted`` so
every watcher re-lists.
"""

from __future__ import annotations

from resolver.errors import InvalidRecord
from resolver.etcd.gateway import EtcdGateway
from resolver.records.schema import Keys, RegistryIdentity


def read_identity(gateway: EtcdGateway, keys: Keys) -> RegistryIdentity | None:
    """The registry's identity, or None when it has none (or an unreadable one)."""
    raw = gateway.get(keys.identity())
    if raw is None:
        return None
    try:
        return RegistryIdentity.from_json(raw)
    except InvalidRecord:
        return None


def ensure_identity(gateway: EtcdGateway, keys: Keys) -> tuple[RegistryIdentity, bool]:
    """Create the identity key if absent; ``(identity, created)``. Idempotent and race-free."""
    fresh = RegistryIdentity.new()
    created = gateway.create_if_absent(keys.identity(), fresh.to_json(), lease=0)
    if created:
        return fresh, True
    current = read_identity(gateway, keys)
    if current is None:
        raise InvalidRecord("identity", f"{keys.identity()} exists but is not a registry identity; delete it "
                                        "and run 'dapr-etcd-resolver registry init' again")
    return current, False
