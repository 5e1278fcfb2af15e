"""One sidecar's endpoint record on a lease of its own: the writer every self-registration shares.

Two roles register a sidecar that asked to be registered — the pluggable component
(``selfRegister=true``: Init's ``instance``) and the Consul-compatible catalog
(``PUT /v1/agent/service/register``) — and both need the same things: the record written under
the role's ``clusterName`` on its own lease, kept alive while the registration lives,
re-registered after a lost lease (the shared :class:`~resolver.writer.writer.RegistryWriter`
does that), deleted at once when it ends (the lease is revoked), and a
``clusters/{cluster}/members/{instance}`` marker so readers that follow only ``clusters/``
(``cacheScope=onDemand``) find the cluster. It never reconciles the cluster's range: other
writers share it. One class here, so the two roles cannot drift.

etcd *refusing* the write (permission denied, bad credentials) raises
:class:`~resolver.errors.RegistrationRefused` at once — retrying never helps, and a silent OK
would leave the sidecar unregistered forever; etcd merely *unreachable* does not: the writer
keeps retrying in the background.
"""

from __future__ import annotations

import logging

from resolver.errors import RegistrationRefused, RegistryError, RegistryUnavailable
from resolver.etcd.gateway import EtcdGateway
from resolver.records.schema import EndpointRecord, Keys, MemberMarker
from resolver.writer.writer import RegistryWriter

log = logging.getLogger(__name__)

SELF_REGISTRATION_TTL = 15.0


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
    """The record of one sidecar, written on :meth:`start`, withdrawn (lease revoked) on :meth:`stop`."""

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
