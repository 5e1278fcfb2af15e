"""The agent side of the catalog: services registered with ``PUT /v1/agent/service/register``.

Like a Consul agent, the role keeps each registration in memory, runs its HTTP checks itself
(:mod:`~resolver.consul.checks`) at the registration's interval, and the service is in the
catalog only while every check passes. "In the catalog" here means one endpoint record in etcd,
in the role's own ``clusterName`` range, written by the writer the component's
``selfRegister`` uses (:class:`~resolver.writer.sidecar.SelfRegistration`) on a lease of its
own, kept alive at a third of ``--registration-ttl``:

* a check turning critical **revokes** the lease (the record is gone at once, not after a TTL);
  when the check passes again the record is written again on a new lease — the registration
  itself stays, as in Consul, until it is deregistered or ``DeregisterCriticalServiceAfter``
  passes;
* a dead role (killed, or cut off from etcd) stops keeping the leases alive: etcd withdraws
  every record within one TTL;
* ``deregister`` and :meth:`Agent.leave` (graceful shutdown) revoke at once, and answer only
  after etcd did. A Consul client agent leaving the cluster (``leave_on_terminate``, its
  default) takes its services out of the catalog the same way.

Registrations live in this process only: a restarted role has none (Consul's agent would reload
them from its data directory). Dapr registers at Init, so a sidecar whose role restarted is
registered again when the sidecar restarts — see docs/consul.md for running the role beside
daprd under the same supervisor.
"""

from __future__ import annotations

import logging
import threading
import time

from resolver.consul.checks import CheckState, run_check
from resolver.consul.limits import LIMITS, ConsulLimits
from resolver.consul.registration import Registration, parse_registration
from resolver.errors import LimitReached, RegistrationRefused, RegistryUnavailable
from resolver.etcd.gateway import EtcdGateway
from resolver.observability import metrics
from resolver.records.addresses import AddressPolicy
from resolver.records.schema import Keys
from resolver.writer.sidecar import SelfRegistration, check_write_permission

log = logging.getLogger(__name__)


class Registered:
    """One registration: its check thread, and its record's writer while every check passes."""

    def __init__(self, registration: Registration, agent: Agent) -> None:
        self.registration = registration
        self._agent = agent
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._writer: SelfRegistration | None = None
        now = time.monotonic()
        self._states = [CheckState(check, now) for check in registration.checks]
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"consul-check {registration.service_id[:40]}")

    @property
    def passing(self) -> bool:
        return all(state.passing for state in self._states)

    @property
    def written(self) -> bool:
        return self._writer is not None

    def start(self) -> Registered:
        if self.passing:  # no check, or every check said Status: passing
            self._apply()
        if self._states:
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop checking and withdraw the record (revoke its lease); returns once etcd did."""
        self._stopped.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop()

    def _run(self) -> None:
        due = [0.0] * len(self._states)  # every check runs at once, then every interval
        while not self._stopped.is_set():
            now = time.monotonic()
            for number, state in enumerate(self._states):
                if due[number] > now or self._stopped.is_set():
                    continue
                due[number] = now + state.check.interval
                was = state.passing
                outcome = run_check(state.check, self._agent.cluster, self._agent.policy)
                state.record(outcome, time.monotonic())
                if not outcome.passing:
                    metrics.CONSUL_CHECK_FAILURES.labels(outcome.reason).inc()
                if was != state.passing:
                    level = logging.INFO if state.passing else logging.WARNING
                    log.log(level, "service %s: check %s is %s: %s", self.registration.service_id,
                            state.check.check_id or state.check.url, "passing" if state.passing else "critical",
                            outcome.output)
                else:
                    log.debug("service %s: %s", self.registration.service_id, outcome.output)
            self._apply()
            if self._stopped.is_set():
                return  # replaced or deregistered meanwhile: the ID may already name a newer registration
            if any(state.expired(time.monotonic()) for state in self._states):
                log.warning("service %s: critical for longer than DeregisterCriticalServiceAfter: deregistering",
                            self.registration.service_id)
                self._agent.deregister(self.registration.service_id)
                return
            self._stopped.wait(max(0.05, min(due) - time.monotonic()))

    def _apply(self) -> None:
        """Make etcd follow the checks: a record while all pass, none otherwise."""
        passing = self.passing
        with self._lock:
            if self._stopped.is_set() or passing == (self._writer is not None):
                return
            if passing:
                try:
                    self._writer = SelfRegistration(self._agent.gateway, self.registration.record,
                                                    self._agent.limits.registration_ttl).start()
                except RegistrationRefused as error:
                    log.error("service %s: %s", self.registration.service_id, error)
                    return  # tried again after the next passing check
                writer = None
            else:
                writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop()
        self._agent.count()


class Agent:
    """The registrations of this role, capped at ``max_registrations`` (thread-safe)."""

    def __init__(self, gateway: EtcdGateway, cluster: str, namespace: str, meta_key: str, policy: AddressPolicy,
                 limits: ConsulLimits) -> None:
        self.gateway = gateway
        self.cluster = cluster
        self.namespace = namespace
        self.meta_key = meta_key
        self.policy = policy
        self.limits = limits
        self._lock = threading.Lock()
        self._services: dict[str, Registered] = {}

    def parse(self, body: bytes) -> Registration:
        """Validate a register body; ValidationError names the field."""
        return parse_registration(body, cluster=self.cluster, namespace=self.namespace, meta_key=self.meta_key,
                                  policy=self.policy)

    def register(self, registration: Registration) -> None:
        """Add or replace a registration (the same one again changes nothing, as re-registering in Consul).

        Raises :class:`~resolver.errors.LimitReached` over the cap, and
        :class:`~resolver.errors.RegistrationRefused` when etcd refuses this role's writes.
        """
        service_id = registration.service_id
        key = registration.record.key(Keys(self.gateway.connection.prefix))
        try:
            check_write_permission(self.gateway, key, registration.record.to_json())
        except RegistryUnavailable as error:
            log.warning("service %s: etcd is unreachable (%s); registered when it is back", service_id, error)
        with self._lock:
            previous = self._services.get(service_id)
            if previous is not None and previous.registration == registration:
                return
            if previous is None and len(self._services) >= self.limits.max_registrations:
                LIMITS.reached("registrations", f"{len(self._services)} services registered")
                raise LimitReached(f"{len(self._services)} services are registered with this role (cap "
                                           f"{self.limits.max_registrations}, --max-registrations)")
            current = self._services[service_id] = Registered(registration, self)
        if previous is not None:
            previous.stop()
        record = registration.record
        log.info("registered service %s: %s/%s at %s in cluster %s, %d check(s)", service_id, record.namespace,
                 record.app_id, record.host_port, record.cluster, len(registration.checks))
        current.start()
        self.count()

    def deregister(self, service_id: str) -> bool:
        """Remove a registration and its record; False if there is none by that ID."""
        with self._lock:
            found = self._services.pop(service_id, None)
        if found is None:
            return False
        found.stop()
        log.info("deregistered service %s", service_id)
        self.count()
        return True

    def leave(self) -> None:
        """Graceful shutdown: withdraw every record (as a Consul agent leaving takes its services out)."""
        with self._lock:
            services, self._services = list(self._services.values()), {}
        for registered in services:
            registered.stop()
        if services:
            log.info("withdrew the records of %d registered service(s)", len(services))
        self.count()

    def count(self) -> None:
        with self._lock:
            services = list(self._services.values())
        written = sum(1 for registered in services if registered.written)
        metrics.CONSUL_REGISTRATIONS.labels("passing").set(written)
        metrics.CONSUL_REGISTRATIONS.labels("critical").set(len(services) - written)

    def __len__(self) -> int:
        with self._lock:
            return len(self._services)
