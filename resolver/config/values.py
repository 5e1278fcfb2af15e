"""Parsers for configuration values, and the small value types they produce.

Every parser takes whatever a source carries (a string from ``--set``, the environment or
Init properties; a JSON/YAML value from Init's configuration or a file) and either returns
a typed value or raises :class:`ValueError` with a message that :mod:`.settings` prefixes
with the key's name. Keeping the parsers free of key names lets several keys share them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from resolver.errors import ValidationError
from resolver.registry import names

MAX_WEIGHT = 1_000_000


class PolicyName(StrEnum):
    """Cross-cluster traffic policies (DESIGN §5)."""

    LOCALITY = "Locality"
    FAILOVER = "FailOver"
    ACTIVE_ACTIVE = "ActiveActive"


@dataclass(frozen=True)
class EtcdEndpoint:
    """One etcd client URL: ``host:port`` (plain) or ``https://host:port`` (TLS)."""

    host: str
    port: int
    secure: bool = False

    def __str__(self) -> str:
        return f"{'https' if self.secure else 'http'}://{names.join_host_port(self.host, self.port)}"


@dataclass(frozen=True)
class EtcdConnection:
    """Everything that identifies one etcd connection; hashable so readers can be shared."""

    endpoints: tuple[EtcdEndpoint, ...]
    prefix: str
    timeout: float
    username: str = ""
    password: str = ""
    ca_cert: str = ""
    client_cert: str = ""
    client_key: str = ""

    def __repr__(self) -> str:  # never show the password in logs
        return (f"EtcdConnection(endpoints={','.join(map(str, self.endpoints))}, prefix={self.prefix!r}, "
                f"user={self.username or '-'}, tls={'yes' if self.tls else 'no'})")

    @property
    def tls(self) -> bool:
        return bool(self.ca_cert) or any(endpoint.secure for endpoint in self.endpoints)


@dataclass(frozen=True)
class AppPolicy:
    """A per-app override from ``policies``; ``None`` fields inherit the global setting."""

    policy: PolicyName | None = None
    cluster_weights: Mapping[str, int] | None = None
    failover_order: tuple[str, ...] | None = None


class Template:
    """The fallback address format, e.g. ``{id}-dapr.{namespace}.svc.{clusterDomain}:{port}``.

    Placeholders are substituted by a fixed list, not ``str.format``, so a template can never
    reach attributes (``{id.__class__}``) and an unknown placeholder is an error at Init.
    """

    PLACEHOLDERS = ("id", "namespace", "clusterDomain", "port")
    _TOKEN = re.compile(r"\{([^{}]*)\}")

    def __init__(self, text: str) -> None:
        self.text = text
        self._parts: list[tuple[bool, str]] = []
        position = 0
        for match in self._TOKEN.finditer(text):
            if match.group(1) not in self.PLACEHOLDERS:
                raise ValueError(
                    f"unknown placeholder {{{match.group(1)}}} in {text!r}; "
                    f"allowed: {', '.join('{' + p + '}' for p in self.PLACEHOLDERS)}"
                )
            self._parts.append((False, text[position : match.start()]))
            self._parts.append((True, match.group(1)))
            position = match.end()
        self._parts.append((False, text[position:]))
        leftover = self._TOKEN.sub("", text)
        if "{" in leftover or "}" in leftover:
            raise ValueError(f"unbalanced brace in {text!r}")
        if "{port}" not in text:
            raise ValueError(f"{text!r} must contain {{port}}: daprd needs host:port")

    def format(self, **values: str | int) -> str:
        return "".join(str(values[part]) if is_placeholder else part for is_placeholder, part in self._parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def parse_string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_type_name(value)}")
    return value.strip()


def parse_secret(value: object) -> str:
    """Like :func:`parse_string`, but the error never echoes the value."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_type_name(value)}")
    return value


def parse_optional_label(value: object) -> str:
    text = parse_string(value)
    return str(_checked(names.check_label, text)) if text else ""


def parse_cluster_domain(value: object) -> str:
    return str(_checked(names.check_subdomain, parse_string(value).rstrip(".")))


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = parse_string(value).lower() if isinstance(value, str) else None
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Seconds from ``500ms``, ``15s``, ``2m``, ``1m30s`` or ``0``; bare numbers are seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = parse_string(value)
        if text == "0":
            return 0.0
        if not text or _DURATION_PART.sub("", text) != "":
            raise ValueError(f"{text!r} is not a duration like 500ms, 15s or 2m")
        seconds = sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    if seconds < 0 or seconds > 7 * 24 * 3600:
        raise ValueError(f"{value!r} is out of range (0 to 168h)")
    return seconds


def parse_endpoints(value: object) -> tuple[EtcdEndpoint, ...]:
    items = _string_list(value)
    if not items:
        raise ValueError("at least one etcd endpoint is required")
    endpoints = []
    for item in items:
        secure = item.startswith("https://")
        rest = re.sub(r"^https?://", "", item).rstrip("/")
        host, sep, port_text = rest.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"{item!r} is not host:port or https://host:port")
        host = host.strip("[]")
        port = _checked(names.check_port, int(port_text))
        endpoints.append(EtcdEndpoint(_checked(names.check_host, host), port, secure))
    return tuple(endpoints)


def parse_prefix(value: object) -> str:
    text = parse_string(value).rstrip("/")
    if not text.startswith("/") or "//" in text or re.search(r"\s", text):
        raise ValueError(f"{text!r} must start with '/' and contain no empty segments or spaces")
    return text


def parse_template(value: object) -> Template:
    return Template(parse_string(value))


def parse_fallback(value: object) -> str:
    text = parse_string(value).lower()
    if text not in ("dns", "none"):
        raise ValueError(f"expected dns or none, got {text!r}")
    return text


def parse_policy(value: object) -> PolicyName:
    text = parse_string(value)
    for policy in PolicyName:
        if policy.value.lower() == text.lower():
            return policy
    raise ValueError(f"unknown policy {text!r}; expected one of {', '.join(p.value for p in PolicyName)}")


def parse_cluster_list(value: object) -> tuple[str, ...]:
    return tuple(_checked(names.check_label, item) for item in _string_list(value))


def parse_weights(value: object) -> Mapping[str, int]:
    """``cluster-1=100,cluster-3=50`` or a mapping ``{cluster: weight}``."""
    pairs: list[tuple[object, object]] = []
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        for item in _string_list(value):
            cluster_text, sep, weight_text = item.partition("=")
            if not sep:
                raise ValueError(f"{item!r} is not cluster=weight")
            pairs.append((cluster_text.strip(), weight_text.strip()))
    weights: dict[str, int] = {}
    for cluster, raw_weight in pairs:
        if not isinstance(cluster, str):
            raise ValueError(f"cluster name {cluster!r} is not a string")
        name = str(_checked(names.check_label, cluster))
        weight = int(raw_weight) if isinstance(raw_weight, str) and raw_weight.isdigit() else raw_weight
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"weight of {name!r} must be an integer 0-{MAX_WEIGHT}, got {raw_weight!r}")
        weights[name] = weight
    return weights


def parse_policies(value: object) -> Mapping[str, AppPolicy]:
    """Per-app overrides: ``{"namespace/app": {"policy": …, "clusterWeights": …, "failoverOrder": …}}``."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except ValueError as error:
            raise ValueError(f"not valid JSON: {error}") from None
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a JSON object keyed by \"namespace/app\", got {_type_name(value)}")
    policies: dict[str, AppPolicy] = {}
    for app_key, override in value.items():
        namespace, sep, app_id = str(app_key).partition("/")
        if not sep:
            raise ValueError(f"key {app_key!r} is not \"namespace/app\"")
        _checked(names.check_label, namespace)
        _checked(names.check_app_id, app_id)
        policies[f"{namespace}/{app_id}"] = _parse_app_policy(app_key, override)
    return policies


def _parse_app_policy(app_key: str, override: object) -> AppPolicy:
    if not isinstance(override, Mapping):
        raise ValueError(f"[{app_key!r}] must be an object, got {_type_name(override)}")
    fields: dict[str, Any] = {}
    parsers = {"policy": parse_policy, "clusterWeights": parse_weights, "failoverOrder": parse_cluster_list}
    attributes = {"policy": "policy", "clusterWeights": "cluster_weights", "failoverOrder": "failover_order"}
    for name, raw in override.items():
        if name not in parsers:
            raise ValueError(f"[{app_key!r}]: unknown key {name!r}; allowed: {', '.join(parsers)}")
        try:
            fields[attributes[name]] = parsers[name](raw)
        except ValueError as error:
            raise ValueError(f"[{app_key!r}].{name}: {error}") from None
    return AppPolicy(**fields)


def _string_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value if item.strip()]
    raise ValueError(f"expected a comma-separated string or a list of strings, got {_type_name(value)}")


def _checked(check: Callable[[Any, str], Any], value: Any) -> Any:
    """Run a :mod:`names` check, turning its ValidationError into the ValueError parsers raise."""
    try:
        return check(value, "value")
    except ValidationError as error:
        raise ValueError(error.message) from None
