"""Per-instance resolver state: one socket serves every component name daprd sends.

daprd puts the component's name in the ``x-component-instance`` header of every call, and
each name has its own initialized state. A name that was never sent ``Init`` uses the
start-up configuration (``--config`` / ``--set`` / ``DAPR_NR_*``) if there is one; otherwise
its resolves fail with ``FAILED_PRECONDITION``. Init layers its own settings over the
start-up ones and replaces the name's previous state; ``Close`` drops it again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from resolver.component.self_registration import SelfRegistration, self_record
from resolver.config import Layer, Settings, init_layers, load_settings
from resolver.errors import NotInitialized
from resolver.registry.pool import ReaderPool
from resolver.registry.reader import RegistryReader
from resolver.resolution.resolver import Resolver

log = logging.getLogger(__name__)


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
                                 caller.internal_port)
        self.reader: RegistryReader = pool.acquire(settings.etcd)
        self.resolver = Resolver(settings, self.reader, caller.namespace)
        if record is not None:
            self.registration = SelfRegistration(self.reader.gateway, record).start()

    def close(self) -> None:
        if self.registration is not None:
            self.registration.stop()
        self._pool.release(self.reader)


class Instances:
    def __init__(self, startup_layers: Sequence[Layer], has_startup_config: bool) -> None:
        self._startup_layers = list(startup_layers)
        self._pool = ReaderPool()
        self._lock = threading.Lock()
        self._states: dict[str, InstanceState] = {}
        self._startup: InstanceState | None = None
        if has_startup_config:
            self._startup = InstanceState("", load_settings(self._startup_layers), Caller(), self._pool)
            log.info("initialized from start-up configuration: %s", self._startup.settings.explain())

    def init(self, name: str, configuration: str, properties: Mapping[str, str], caller: Caller) -> InstanceState:
        """Build the state first (errors leave the old one serving), then swap it in."""
        settings = load_settings([*self._startup_layers, *init_layers(configuration, properties)])
        state = InstanceState(name, settings, caller, self._pool)
        with self._lock:
            old = self._states.get(name)
            self._states[name] = state
        if old is not None:
            old.close()
        log.info("instance %r initialized for %s/%s: %s", name or "(default)", caller.namespace or "default",
                 caller.app_id or "?", settings.explain())
        return state

    def get(self, name: str) -> InstanceState:
        state = self._states.get(name) or self._startup
        if state is None:
            raise NotInitialized(f"component instance {name!r} was not initialized: call Init first "
                                 "(or start serve with --config/--set)")
        return state

    def close(self, name: str) -> None:
        with self._lock:
            state = self._states.pop(name, None)
        if state is not None:
            state.close()
            log.info("instance %r closed", name or "(default)")

    def readers(self) -> list[RegistryReader]:
        states = [*self._states.values(), *([self._startup] if self._startup else [])]
        return [state.reader for state in states]

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
