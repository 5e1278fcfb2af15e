"""The traffic-policy keys (``policy``, ``clusterWeights``, ``failoverOrder``, ``policies``): types and parsers.

These four keys say how cross-cluster traffic is spread (README "Cross-cluster traffic
policies") and are read together by
:mod:`resolver.resolution.policy`; ``policies`` nests the other three per app, so their parsers
call each other. The generic parsers they build on (strings, lists, the strict JSON of a
``policies`` string) are :mod:`.values`'; the same contract holds: a typed value or a
:class:`ValueError` that :mod:`.settings` prefixes with the key's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from resolver.config.values import (
    ASCII_INTEGER,
    check_structure,
    checked,
    load_json,
    parse_string,
    string_list,
    type_name,
)
from resolver.errors import shown
from resolver.records import names

MAX_WEIGHT = 1_000_000


class PolicyName(StrEnum):
    """Cross-cluster traffic policies (README "Cross-cluster traffic policies")."""

    LOCALITY = "Locality"
    FAILOVER = "FailOver"
    ACTIVE_ACTIVE = "ActiveActive"


@dataclass(frozen=True)
class AppPolicy:
    """A per-app override from ``policies``; ``None`` fields inherit the global setting."""

    policy: PolicyName | None = None
    cluster_weights: Mapping[str, int] | None = None
    failover_order: tuple[str, ...] | None = None


def parse_policy(value: object) -> PolicyName:
    text = parse_string(value)
    for policy in PolicyName:
        if policy.value.lower() == text.lower():
            return policy
    raise ValueError(f"unknown policy {shown(text)}; expected one of {', '.join(p.value for p in PolicyName)}")


def parse_cluster_list(value: object) -> tuple[str, ...]:
    return tuple(checked(names.check_label, item) for item in string_list(value))


def parse_weights(value: object) -> Mapping[str, int]:
    """``cluster-1=100,cluster-3=50`` or a mapping ``{cluster: weight}``."""
    pairs: list[tuple[object, object]] = []
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        for item in string_list(value):
            cluster_text, sep, weight_text = item.partition("=")
            if not sep:
                raise ValueError(f"{shown(item)} is not cluster=weight")
            pairs.append((cluster_text.strip(), weight_text.strip()))
    weights: dict[str, int] = {}
    for cluster, raw_weight in pairs:
        if not isinstance(cluster, str):
            raise ValueError(f"cluster name {shown(cluster)} is not a string")
        name = str(checked(names.check_label, cluster))
        weight = raw_weight
        if isinstance(raw_weight, str) and ASCII_INTEGER.fullmatch(raw_weight) and len(raw_weight) <= 12:
            weight = int(raw_weight)  # ASCII digits only: "٣" is not 3
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"weight of {name!r} must be an integer 0-{MAX_WEIGHT} (ASCII digits), "
                             f"got {shown(raw_weight)}")
        weights[name] = weight
    return weights


def parse_policies(value: object) -> Mapping[str, AppPolicy]:
    """Per-app overrides: ``{"namespace/app": {"policy": …, "clusterWeights": …, "failoverOrder": …}}``."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        value = load_json(value)
    else:
        check_structure(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a JSON object keyed by \"namespace/app\", got {type_name(value)}")
    policies: dict[str, AppPolicy] = {}
    for app_key, override in value.items():
        namespace, sep, app_id = str(app_key).partition("/")
        if not sep:
            raise ValueError(f"key {shown(app_key)} is not \"namespace/app\"")
        checked(names.check_label, namespace)
        checked(names.check_app_id, app_id)
        policies[f"{namespace}/{app_id}"] = _parse_app_policy(app_key, override)
    return policies


def _parse_app_policy(app_key: str, override: object) -> AppPolicy:
    if not isinstance(override, Mapping):
        raise ValueError(f"[{shown(app_key)}] must be an object, got {type_name(override)}")
    fields: dict[str, Any] = {}
    parsers = {"policy": parse_policy, "clusterWeights": parse_weights, "failoverOrder": parse_cluster_list}
    attributes = {"policy": "policy", "clusterWeights": "cluster_weights", "failoverOrder": "failover_order"}
    for name, raw in override.items():
        if name not in parsers:
            raise ValueError(f"[{shown(app_key)}]: unknown key {shown(name)}; allowed: {', '.join(parsers)}")
        try:
            fields[attributes[name]] = parsers[name](raw)
        except ValueError as error:
            raise ValueError(f"[{shown(app_key)}].{name}: {error}") from None
    return AppPolicy(**fields)
