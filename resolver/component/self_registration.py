"""``selfRegister=true``: the component registers its own sidecar, like Dapr's consul resolver.

This is how VMs and self-hosted Dapr join the registry without a publisher: on Init the
sidecar described by Init's ``instance`` is written under ``clusterName`` on a lease of its
own, kept alive while the component runs, re-registered after a lost lease (the shared
:class:`~resolver.registry.writer.RegistryWriter` does that), and deleted on ``Close`` and on
graceful shutdown. It never reconciles the cluster's range: other writers share it.
"""

from __future__ import annotations

import logging

from resolver.errors import InvalidRequest, ValidationError
from resolver.registry import names
from resolver.registry.gateway import EtcdGateway
from resolver.registry.schema import EndpointRecord
from resolver.registry.writer import RegistryWriter

log = logging.getLogger(__name__)

SELF_REGISTRATION_TTL = 15.0


def self_record(cluster: str, app_id: str, namespace: str, address: str, internal_port: int) -> EndpointRecord:
    """The record for Init's ``instance``; errors name the Init field at fault."""
    try:
        names.check_app_id(app_id, "instance.app_id")
        names.check_label(namespace or "default", "instance.namespace")
        names.check_host(address, "instance.address")
        names.check_port(internal_port, "instance.dapr_internal_port")
    except ValidationError as error:
        raise InvalidRequest(error.field, f"selfRegister needs a valid sidecar: {error.message}") from None
    instance = names.sanitize_subdomain(f"{address}-{internal_port}")
    return EndpointRecord(app_id=app_id, namespace=namespace or "default", cluster=cluster,
                          instance=instance, address=address, port=internal_port).validate()


class SelfRegistration:
    def __init__(self, gateway: EtcdGateway, record: EndpointRecord, ttl: float = SELF_REGISTRATION_TTL) -> None:
        self.record = record
        self._writer = RegistryWriter(gateway, record.cluster, ttl, owns_range=False)
        self._writer.upsert(record)

    def start(self) -> SelfRegistration:
        self._writer.start()
        log.info("self-registering %s/%s as %s in cluster %s", self.record.namespace, self.record.app_id,
                 self.record.host_port, self.record.cluster)
        return self

    def stop(self) -> None:
        """Deregister: revoking our lease deletes the record at once."""
        self._writer.stop(withdraw=True)
