"""Per-instance resolver state: one socket serves every component name daprd sends.

daprd puts the component's name in the ``x-component-instance`` header of every call, and
each name has its own initialized state. A name that was never sent ``Init`` uses the
start-up configuration (``--config`` / ``--set`` / ``DAPR_NR_*``) if there is one; otherwise
its resolves fail with ``FAILED_PRECONDITION``. Init layers its own settings over the
start-up ones and replaces the name's previous state. ``Close`` is final for that name until
its next ``Init`` (daprd closes a component it is done with; silently serving it again from
the start-up configuration would hide the mistake of a client that keeps using it).

Caps (process-level, see :mod:`.limits`): initialized instances (``maxInstances``) and
distinct registries, i.e. distinct etcd settings (``maxRegistries``) — instances with the same
etcd settings share one reader (:class:`~resolver.registry.pool.ReaderPool`), so only a new
registry costs a watch, a cache and its threads. An Init over a cap is refused at once.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from resolver.component import limits
from resolver.component.caller_zone import CallerZone
from resolver.component.self_registration import self_record
from resolver.config import Layer, Settings, init_layers, load_settings
from resolver.config.settings import ServeLimits
from resolver.errors import ConfigValueError, NotInitialized
from resolver.etcd.connection import EtcdConnection
from resolver.reachability import Reachability, enabled
from resolver.records.addresses import AddressPolicy
from resolver.registry.pool import ReaderPool
from resolver.registry.supervised import SupervisedReader
from resolver.resolution.resolver import Resolver
from resolver.writer.sidecar import SelfRegistration

log = logging.getLogger(__name__)

Registry = tuple[EtcdConnection, AddressPolicy]
"""What makes two instances share a reader (see ReaderPool): the etcd settings and the address policy."""

CLOSED_REMEMBERED = 1024
"""Closed instance names remembered (so their resolves say "closed"); the oldest are forgotten."""


@dataclass(frozen=True)
class Caller:
    """Init's ``instance``: the sidecar that loaded the component."""

    app_id: str = ""
    namespace: str = ""
    address: str = ""
    internal_port: int = 0


class InstanceState:
    """An initialized resolver, the reader it borrowed from the pool, and its self-registration."""

    def __init__(self, name: str, settings: Settings, caller: Caller, pool: ReaderPool) -> None:
        self.name = name
        self.settings = settings
        self._pool = pool
        self.registration: SelfRegistration | None = None
        record = None
        if settings.self_register:
            record = self_record(settings.cluster_name, caller.app_id, caller.namespace, caller.address,
                                 caller.internal_port, settings.zone)
        self.reader: SupervisedReader = pool.acquire(settings)
        self.caller_zone = CallerZone(settings, self.reader, caller.app_id, caller.namespace, caller.address,
                                      caller.internal_port)
        # Opt-in (reachability=on): every pod probing would multiply the probe load by the fleet.
        reachability = Reachability(settings, self.reader.cache).start() if enabled(settings, "component") else None
        self.resolver = Resolver(settings, self.reader, caller.namespace, reachability=reachability)
        if record is not None:
            try:
                self.registration = SelfRegistration(self.reader.gateway, record).start()
            except BaseException:
                self.resolver.close()
                pool.release(self.reader)
                raise

    def close(self) -> None:
        if self.registration is not None:
            self.registration.stop()
        self.resolver.close()
        self._pool.release(self.reader)


class Instances:
    def __init__(self, startup_layers: Sequence[Layer], has_startup_config: bool,
                 serve_limits: ServeLimits | None = None) -> None:
        self._startup_layers = list(startup_layers)
        startup_settings = load_settings(self._startup_layers)
        self.limits = serve_limits or startup_settings.serve_limits
        self._pool = ReaderPool()
        self._lock = threading.Lock()
        self._states: dict[str, InstanceState] = {}
        self._reserved: dict[int, tuple[str, Registry]] = {}
        self._tokens = itertools.count()
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._startup: InstanceState | None = None
        if has_startup_config and startup_settings.self_register:
            raise ConfigValueError("selfRegister", "serve's start-up configuration has no sidecar to register (only "
                                   "daprd's Init carries the sidecar's app id and address): set selfRegister=true "
                                   "in the component's metadata instead, so that each Init registers its sidecar")
        if has_startup_config:
            self._startup = InstanceState("", startup_settings, Caller(), self._pool)
            log.info("initialized from start-up configuration: %s", self._startup.settings.explain())

    # -- caps -----------------------------------------------------------------------------

    def _admit(self, name: str, connection: Registry) -> int:
        """Reserve room for ``name`` on ``connection`` under both caps; returns the reservation."""
        with self._lock:
            names = set(self._states) | {reserved for reserved, _ in self._reserved.values()}
            if name not in names and len(names) >= self.limits.max_instances:
                raise limits.refuse("instances", f"this serve process already has {len(names)} component "
                                    f"instances (maxInstances={self.limits.max_instances}); Close unused ones "
                                    "or raise maxInstances at start-up")
            in_use = self._connections_locked(excluding=name)
            if connection not in in_use and len(in_use) >= self.limits.max_registries:
                raise limits.refuse("registries", f"this serve process already reads {len(in_use)} distinct "
                                    f"registries (maxRegistries={self.limits.max_registries}); share etcd "
                                    "settings between instances or raise maxRegistries at start-up")
            token = next(self._tokens)
            self._reserved[token] = (name, connection)
            return token

    def _connections_locked(self, excluding: str) -> set[Registry]:
        """Registries in use, not counting the one ``excluding``'s current state would give up."""
        used = {_registry(state.settings) for key, state in self._states.items() if key != excluding}
        used |= {connection for _, connection in self._reserved.values()}
        if self._startup is not None:
            used.add(_registry(self._startup.settings))
        return used

    # -- lifecycle ------------------------------------------------------------------------

    def init(self, name: str, configuration: str, properties: Mapping[str, str], caller: Caller) -> InstanceState:
        """Build the state first (errors leave the old one serving), then swap it in."""
        settings = load_settings([*self._startup_layers, *init_layers(configuration, properties)])
        token = self._admit(name, _registry(settings))
        try:
            state = InstanceState(name, settings, caller, self._pool)
        finally:
            with self._lock:
                del self._reserved[token]
        with self._lock:
            old = self._states.get(name)
            self._states[name] = state
            self._closed.pop(name, None)
        if old is not None:
            old.close()
        log.info("instance %r initialized for %s/%s: %s", name or "(default)", caller.namespace or "default",
                 caller.app_id or "?", settings.explain())
        return state

    def get(self, name: str) -> InstanceState:
        state = self._states.get(name)
        if state is not None:
            return state
        if name in self._closed:
            raise NotInitialized(f"component instance {name!r} was closed: call Init again to use it")
        if self._startup is None:
            raise NotInitialized(f"component instance {name!r} was not initialized: call Init first "
                                 "(or start serve with --config/--set)")
        return self._startup

    def close(self, name: str) -> None:
        """Close ``name``: its state is dropped and its resolves fail until its next Init."""
        with self._lock:
            state = self._states.pop(name, None)
            self._closed[name] = None
            self._closed.move_to_end(name)
            while len(self._closed) > CLOSED_REMEMBERED:
                self._closed.popitem(last=False)
        if state is not None:
            state.close()
            log.info("instance %r closed", name or "(default)")

    def states(self) -> dict[str, InstanceState]:
        """Initialized instances by name; the start-up state, if any, under ``""``."""
        with self._lock:
            found = dict(self._states)
        if self._startup is not None:
            found.setdefault("", self._startup)
        return found

    def readers(self) -> list[SupervisedReader]:
        return [state.reader for state in self.states().values()]

    def close_all(self) -> None:
        with self._lock:
            states = list(self._states.values())
            self._states.clear()
        if self._startup is not None:
            states.append(self._startup)
            self._startup = None
        for state in states:
            try:
                state.close()
            except Exception:
                log.exception("closing instance %r failed", state.name)
        self._pool.close()


def _registry(settings: Settings) -> Registry:
    return settings.etcd, settings.address_policy
