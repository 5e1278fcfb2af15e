"""``selfRegister=true``: the component registers its own sidecar, like Dapr's consul resolver.

This is how VMs and self-hosted Dapr join the registry without a publisher: on Init the
sidecar described by Init's ``instance`` is written under ``clusterName`` on a lease of its
own, kept alive while the component runs, re-registered after a lost lease (the shared
:class:`~resolver.writer.writer.RegistryWriter` does that), and deleted on ``Close`` and on
graceful shutdown. It never reconciles the cluster's range: other writers share it.

daprd treats a failed Init as fatal, so Init distinguishes two failures: etcd *refusing* the
registration (permission denied, bad credentials — retrying never helps, and a silent OK
would leave the sidecar unregistered forever) fails Init; etcd merely *unreachable* does not —
Init succeeds and the writer keeps retrying in the background.
"""

from __future__ import annotations

import logging

from resolver.errors import InvalidRequest, RegistrationRefused, RegistryError, RegistryUnavailable, ValidationError
from resolver.etcd.gateway import EtcdGateway
from resolver.records import names
from resolver.records.schema import EndpointRecord, Keys, MemberMarker
from resolver.writer.writer import RegistryWriter

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


def check_write_permission(gateway: EtcdGateway, key: str, value: bytes) -> None:
    """Ask etcd whether we may write ``key``, without writing it.

    A transaction whose comparison can never hold (version < 0) runs no operation, but etcd
    checks the permissions of *every* operation of both branches before evaluating it, so a
    read-only user gets PERMISSION_DENIED and bad credentials fail authentication — while an
    existing registration of the same sidecar is left untouched.
    Raises :class:`RegistrationRefused`; an unreachable etcd raises :class:`RegistryUnavailable`.
    """
    try:
        gateway.may_put(key, value)
    except RegistryUnavailable:
        raise
    except RegistryError as error:
        raise RegistrationRefused(f"selfRegister: etcd refused to register {key}: {error}; grant this user "
                                  "write access to its cluster's range (see etcd-rbac) or set selfRegister=false"
                                  ) from None


class SelfRegistration:
    def __init__(self, gateway: EtcdGateway, record: EndpointRecord, ttl: float = SELF_REGISTRATION_TTL) -> None:
        self.record = record
        key = record.key(Keys(gateway.connection.prefix))
        try:
            check_write_permission(gateway, key, record.to_json())
        except RegistryUnavailable as error:
            log.warning("selfRegister: etcd is unreachable (%s); %s/%s will be registered when it is back",
                        error, record.namespace, record.app_id)
        keys = Keys(gateway.connection.prefix)
        member = MemberMarker(record.cluster, record.instance, record.app_id, record.namespace).to_json()
        # the marker lets readers that follow only clusters/ (cacheScope=onDemand) find this cluster
        self._writer = RegistryWriter(gateway, record.cluster, ttl, owns_range=False,
                                      member=(keys.member(record.cluster, record.instance), member))
        self._writer.upsert(record)

    def start(self) -> SelfRegistration:
        self._writer.start()
        log.info("self-registering %s/%s as %s in cluster %s", self.record.namespace, self.record.app_id,
                 self.record.host_port, self.record.cluster)
        return self

    def stop(self) -> None:
        """Deregister: revoking our lease deletes the record at once."""
        self._writer.stop(withdraw=True)
