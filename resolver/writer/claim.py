"""Claiming a cluster name with one compare-and-put, so two identities cannot both pass.

A publisher checks, before writing anything, that no live key of its cluster names another
cluster identity (:func:`resolver.publisher.cluster_ownership.find_conflict`). That read can race: two
publishers of different clusters given the same name, started at the same instant, both find
the name free and both publish. Their first ``info`` write therefore is a compare-and-put
against the value just read: exactly one of two racing writes succeeds, and the other
publisher, reading again, finds the winner's ``clusterUid`` and refuses. A replica of the same
identity (no leader election) simply retries its put.
"""

from __future__ import annotations

from collections.abc import Callable

from resolver.errors import InvalidRecord, RegistryUnavailable
from resolver.etcd.gateway import EtcdGateway
from resolver.etcd.range_reads import get_with_meta
from resolver.records.schema import IdentityClaim

ClaimCheck = Callable[[], BaseException | None]
"""Returns an error when this writer must not touch the cluster (another identity holds it)."""

CLAIM_ATTEMPTS = 5


def holder(raw: bytes | None) -> str:
    """The ``clusterUid`` a value names ("" for none: absent, a previous release, or unreadable).

    Decoded by the schema's :class:`~resolver.records.schema.IdentityClaim`, as the publisher's
    conflict check reads it: the write guard and the read guard must agree on who holds a name.
    """
    if not raw:
        return ""
    try:
        return IdentityClaim.from_json(raw).cluster_uid
    except InvalidRecord:
        return ""


def claim_key(gateway: EtcdGateway, key: str, value: bytes, uid: str, lease: Callable[[], int],
              who_holds: ClaimCheck) -> BaseException | None:
    """Put ``value`` at ``key`` unless the value there names another identity; return that conflict.

    ``who_holds`` builds the conflict (naming both identities) from etcd's current state; when
    the other holder vanished meanwhile it returns None and the claim is tried again. Raises
    :class:`RegistryUnavailable` (retried by the writer) if ``key`` keeps changing under us.
    """
    for _ in range(CLAIM_ATTEMPTS):
        raw, _, mod_revision = get_with_meta(gateway, key)
        if holder(raw) not in ("", uid):
            problem = who_holds()
            if problem is not None:
                return problem
            continue
        if gateway.put_if_unchanged(key, value, lease(), mod_revision):
            return None
    raise RegistryUnavailable(f"{key} changed {CLAIM_ATTEMPTS} times while this publisher claimed it; retrying")
