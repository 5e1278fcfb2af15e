"""Small etcd reads and comparisons the writer needs to converge on etcd rather than on memory.

Kept apart from :mod:`resolver.writer.writer` so the writer reads as policy (what to put
back, when) and this as mechanics (how to ask etcd cheaply, and what counts as "the same").
"""

from __future__ import annotations

import json
from typing import Any

from resolver.errors import RegistryError, ValidationError
from resolver.etcd.gateway import EtcdGateway
from resolver.records.schema import EndpointRecord
from resolver.records.strict import decode_object

LEASE_PAGE = 20_000
"""Keys per page of a keys-only read (no values: 100k keys cost a few MB, not 30)."""


def too_large(error: RegistryError) -> bool:
    """Did etcd (or gRPC in front of it) refuse a request for its size? Splitting it may help."""
    text = str(error)
    return "too large" in text or "RESOURCE_EXHAUSTED" in text or "larger than max" in text


def same_record(raw: bytes, record: EndpointRecord) -> bool:
    """Does etcd's value say what ``record`` says (``updatedAt`` aside)? Policy-free on purpose:
    whether an address may be served is the reader's decision, not a reason to rewrite."""
    try:
        found = decode_object(raw, "value")  # the readers' decoder: what they refuse is never "the same"
    except ValidationError:
        return False
    found.pop("updatedAt", None)
    wanted = json.loads(record.to_json())
    wanted.pop("updatedAt", None)
    return bool(found == wanted)


def record_leases(gateway: EtcdGateway, prefix: str) -> set[int]:
    """Lease ids of the keys under ``prefix``: a keys-only paged read, so it is quick."""
    start = prefix.encode()
    end = start[:-1] + bytes([start[-1] + 1])
    leases: set[int] = set()
    after = start
    while True:
        def page(client: Any, after: bytes = after) -> Any:
            return client.get_range_response(after, end, keys_only=True, limit=LEASE_PAGE)

        response = gateway.call("list", page)
        leases.update(int(kv.lease) for kv in response.kvs if kv.lease)
        if not response.more or not response.kvs:
            return leases
        after = response.kvs[-1].key + b"\0"


def get_with_meta(gateway: EtcdGateway, key: str) -> tuple[bytes | None, int, int]:
    """``(value, lease id, mod_revision)`` of one key; ``(None, 0, 0)`` when absent.

    The mod_revision is what :meth:`EtcdGateway.put_if_unchanged` compares against.
    """
    def get(client: Any) -> tuple[bytes | None, int, int]:
        value, meta = client.get(key)
        if value is None:
            return None, 0, 0
        return value, int(meta.lease_id), int(meta.mod_revision)
    return gateway.call("get", get, key)
