"""Cluster identity: one cluster name, one owner (README "The publisher", "One cluster name, one owner").

Every publisher carries a *cluster identity* (``clusterUid``), written into the cluster's
``info`` and leader keys. Two publishers claiming one cluster name — a copy-pasted overlay, a
second cluster installed with the first one's values — would otherwise silently fight (each
reconciling the other's records away) or, with leader election, one cluster would simply
never be published. A publisher that finds its name held by a *live* publisher of another
identity never touches the records: it leaves a conflict marker and exits non-zero.

Where the identity comes from:

* ``--cluster-uid`` always wins;
* Kubernetes source: the ``kube-system`` namespace's UID (stable for the cluster's life,
  identical for every replica; needs ``get`` on namespaces). If it cannot be read, the
  publisher runs without the guard and warns once, saying how to set it;
* file source: ``/etc/machine-id`` (where present) plus the inventory's absolute path —
  stable across container recreation on one machine, never the host name (containers get
  random ones).

Records of the previous release carry no identity: they count as compatible, so a rolling
upgrade has no gap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resolver.errors import ClusterConflict, ConfigError, InvalidRecord, ValidationError
from resolver.etcd.gateway import EtcdGateway
from resolver.records import names
from resolver.records.schema import IdentityClaim, Keys

log = logging.getLogger(__name__)

MACHINE_ID = Path("/etc/machine-id")
_UID = re.compile(r"[a-z0-9]([-a-z0-9.]{0,126}[a-z0-9])?")
"""A DNS-1123 subdomain of at most 128 characters: it names the conflict marker's key."""
NAMESPACE_READ_TIMEOUT = (5.0, 10.0)


def check_cluster_uid(value: str) -> str:
    try:
        valid = bool(_UID.fullmatch(value)) and names.check_subdomain(value, "--cluster-uid") == value
    except ValidationError:
        valid = False
    if not valid:
        raise ConfigError("--cluster-uid", f"{value[:80]!r} is not a lower-case DNS-1123 subdomain of at most 128 "
                          "characters (a Kubernetes UID is one)")
    return value


def file_cluster_uid(inventory: Path, machine_id: Path = MACHINE_ID) -> str:
    """Stable for one inventory on one machine: hash of ``/etc/machine-id`` and the absolute path."""
    try:
        machine = machine_id.read_text(encoding="utf-8").strip()
    except OSError:
        machine = ""
    digest = hashlib.sha256(f"{machine}\0{inventory.absolute()}".encode()).hexdigest()
    return f"file-{digest[:32]}"


def kube_cluster_uid(read_namespace: Callable[..., Any]) -> str:
    """The ``kube-system`` namespace UID, or "" (with one warning) when it cannot be read."""
    try:
        response = read_namespace("kube-system", _preload_content=False, _request_timeout=NAMESPACE_READ_TIMEOUT)
        uid = str((json.loads(response.data).get("metadata") or {}).get("uid") or "")
        if _UID.fullmatch(uid):
            return uid
        why = "it has no usable metadata.uid"
    except Exception as error:
        why = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")
    log.warning("cannot read the kube-system namespace's UID (%s): running WITHOUT the one-cluster-one-name "
                "guard; grant get on namespaces to the publisher's ClusterRole or pass --cluster-uid", why)
    return ""


def _claims(gateway: EtcdGateway, cluster: str) -> list[IdentityClaim]:
    """The identities the live info, leader and heartbeat keys of ``cluster`` hold its name for.

    A value the strict decoder refuses claims nothing: readers skip it too, and only a
    credential that may write this cluster's range could have put it there.
    """
    keys = Keys(gateway.connection.prefix)
    found: list[IdentityClaim] = []
    for key, holder_field in ((keys.info(cluster), "publisher"), (keys.leader(cluster), "identity"),
                              (keys.heartbeat(cluster), "publisher")):
        raw = gateway.get(key)
        if raw is None:
            continue
        try:
            claim = IdentityClaim.from_json(raw, holder_field)
        except InvalidRecord:
            continue
        if claim.cluster_uid:
            found.append(claim)
    return found


def find_conflict(gateway: EtcdGateway, cluster: str, cluster_uid: str) -> ClusterConflict | None:
    """A conflict when a live key of ``cluster`` names another identity; None when compatible.

    Without an identity of our own (the guard is off) nothing conflicts; keys without an
    identity (the previous release) are compatible.
    """
    if not cluster_uid:
        return None
    for claim in _claims(gateway, cluster):
        if claim.cluster_uid != cluster_uid:
            return ClusterConflict(cluster, cluster_uid, claim.cluster_uid, claim.holder)
    return None
