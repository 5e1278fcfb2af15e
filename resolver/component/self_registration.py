"""``selfRegister=true``: the component registers its own sidecar, like Dapr's consul resolver.

This is how VMs and self-hosted Dapr join the registry without a publisher: on Init the
sidecar described by Init's ``instance`` is written under ``clusterName`` on a lease of its
own, kept alive while the component runs, re-registered after a lost lease, and deleted on
``Close`` and on graceful shutdown — by :class:`~resolver.writer.sidecar.SelfRegistration`, the
writer the Consul-compatible catalog's ``PUT /v1/agent/service/register`` shares. This module
turns Init's ``instance`` into the record.

daprd treats a failed Init as fatal, so Init distinguishes two failures: etcd *refusing* the
registration (permission denied, bad credentials — retrying never helps, and a silent OK
would leave the sidecar unregistered forever) fails Init; etcd merely *unreachable* does not —
Init succeeds and the writer keeps retrying in the background.
"""

from __future__ import annotations

from resolver.errors import InvalidRequest, ValidationError
from resolver.records import names
from resolver.records.schema import EndpointRecord


def self_record(cluster: str, app_id: str, namespace: str, address: str, internal_port: int,
                zone: str = "") -> EndpointRecord:
    """The record for Init's ``instance`` (with the ``zone`` setting, so zone-aware callers can
    prefer it); errors name the Init field at fault."""
    try:
        names.check_app_id(app_id, "instance.app_id")
        names.check_label(namespace or "default", "instance.namespace")
        names.check_host(address, "instance.address")
        names.check_port(internal_port, "instance.dapr_internal_port")
    except ValidationError as error:
        raise InvalidRequest(error.field, f"selfRegister needs a valid sidecar: {error.message}") from None
    instance = names.sanitize_subdomain(f"{address}-{internal_port}")
    return EndpointRecord(app_id=app_id, namespace=namespace or "default", cluster=cluster,
                          instance=instance, address=address, port=internal_port, zone=zone).validate()
