"""Instances against a model (Hypothesis, stateful): caps, sharing, Close is final, Init errors.

In-process :class:`Instances` on the session's real etcd; every Init builds a real reader.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from resolver.component.instances import Caller, Instances
from resolver.config import set_layer
from resolver.config.settings import ServeLimits
from resolver.errors import ConfigError, LimitReached, NotInitialized
from resolver.local_etcd import LocalEtcd

NAMES = ["a", "b", "c", "d", "e"]
MAX_INSTANCES, MAX_REGISTRIES = 3, 2


def test_instances_follow_the_model(etcd: LocalEtcd, prefix: str) -> None:
    prefixes = [f"{prefix}/{n}" for n in range(3)]

    class Machine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.instances = Instances([set_layer([f"etcdEndpoints={etcd.endpoint}"])], False,
                                       ServeLimits(MAX_INSTANCES, MAX_REGISTRIES, 4, 1))
            self.model: dict[str, str] = {}
            self.closed: set[str] = set()

        @rule(name=st.sampled_from(NAMES), registry=st.sampled_from(prefixes))
        def init(self, name: str, registry: str) -> None:
            others = {n: p for n, p in self.model.items() if n != name}
            full_instances = name not in self.model and len(self.model) >= MAX_INSTANCES
            full_registries = registry not in others.values() and len(set(others.values())) >= MAX_REGISTRIES
            if full_instances or full_registries:
                with pytest.raises(LimitReached, match="maxInstances" if full_instances else "maxRegistries"):
                    self.instances.init(name, f'{{"prefix": "{registry}"}}', {}, Caller())
                return
            self.instances.init(name, f'{{"prefix": "{registry}"}}', {}, Caller())
            self.model[name] = registry
            self.closed.discard(name)

        @rule(name=st.sampled_from(NAMES), bad=st.sampled_from(['{"etcdTimeout": NaN}', '{"maxInstances": 9}',
                                                                '{"initialSyncWait": "1h"}', "[" * 100]))
        def bad_init(self, name: str, bad: str) -> None:
            with pytest.raises(ConfigError):
                self.instances.init(name, bad, {}, Caller())
            # a failed Init leaves the previous state (or none) in place: checked by the invariant

        @rule(name=st.sampled_from(NAMES))
        def close(self, name: str) -> None:
            self.instances.close(name)
            self.model.pop(name, None)
            self.closed.add(name)

        @invariant()
        def states_match(self) -> None:
            for name in NAMES:
                if name in self.model:
                    assert self.instances.get(name).settings.prefix == self.model[name]
                else:
                    with pytest.raises(NotInitialized, match="was closed" if name in self.closed else "Init first"):
                        self.instances.get(name)
            readers = {id(reader) for reader in self.instances.readers()}
            assert len(readers) == len(set(self.model.values())) <= MAX_REGISTRIES

        def teardown(self) -> None:
            self.instances.close_all()

    run_state_machine_as_test(Machine, settings=settings(max_examples=15, stateful_step_count=12, deadline=None,
                                                         suppress_health_check=list(HealthCheck)))
