"""Parsers for configuration values, and the small value types they produce.

Every parser takes whatever a source carries (a string from ``--set``, the environment or
Init properties; a JSON/YAML value from Init's configuration or a file) and either returns
a typed value or raises :class:`ValueError` with a message that :mod:`.settings` prefixes
with the key's name. Keeping the parsers free of key names lets several keys share them.

The traffic-policy keys, whose parsers nest (``policies`` holds the other three per app), are
in :mod:`.traffic`; structured text (``policies`` as a string, Init's configuration JSON) is
decoded by the one strict decoder every untrusted document goes through
(:mod:`resolver.records.strict`).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from resolver.errors import ValidationError, shown
from resolver.etcd.connection import EtcdEndpoint
from resolver.records import names, strict
from resolver.records.addresses import AddressPolicy

MAX_VALUE_CHARS = 64 * 1024
"""Longest value any key accepts (the whole Init request is capped at 64 KiB anyway)."""
MAX_DEPTH = 16
"""Deepest nesting of a structured value (``policies`` needs 3); checked before parsing."""
MAX_NODES = 100_000
"""Most scalars/containers in one structured value (also stops YAML alias bombs)."""


@dataclass(frozen=True)
class ClusterCIDRs:
    """``clusterCIDRs``: per-cluster address allowlists (see :mod:`resolver.records.addresses`)."""

    text: str = ""
    cidrs: Mapping[str, tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]] = field(default_factory=dict)
    hostname_clusters: frozenset[str] = frozenset()

    def __hash__(self) -> int:
        return hash(self.text)


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
                    f"unknown placeholder {{{match.group(1)[:40]}}} in {shown(text)}; "
                    f"allowed: {', '.join('{' + p + '}' for p in self.PLACEHOLDERS)}"
                )
            self._parts.append((False, text[position : match.start()]))
            self._parts.append((True, match.group(1)))
            position = match.end()
        self._parts.append((False, text[position:]))
        leftover = self._TOKEN.sub("", text)
        if "{" in leftover or "}" in leftover:
            raise ValueError(f"unbalanced brace in {shown(text)}")
        if "{port}" not in text:
            raise ValueError(f"{shown(text)} must contain {{port}}: daprd needs host:port")

    def format(self, **values: str | int) -> str:
        return "".join(str(values[part]) if is_placeholder else part for is_placeholder, part in self._parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def check_structure(value: object, *, finite: bool = True) -> None:
    """Refuse values nested deeper than :data:`MAX_DEPTH` or larger than :data:`MAX_NODES`
    (and, with ``finite``, NaN or infinite numbers anywhere in them).

    Iterative, so a hostile value can never reach Python's recursion limit here, and it
    counts visits (not distinct objects), so YAML aliases cannot multiply work unnoticed.
    """
    stack: list[tuple[object, int]] = [(value, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ValueError(f"too large: more than {MAX_NODES} values")
        if finite and isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{item} is not a finite number")
        if isinstance(item, Mapping | list | tuple):
            if depth >= MAX_DEPTH:
                raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
            children = list(item.keys()) + list(item.values()) if isinstance(item, Mapping) else list(item)
            stack.extend((child, depth + 1) for child in children)


def load_json(text: str) -> object:
    """A JSON value from untrusted text, through the one strict decoder (:mod:`resolver.records.strict`).

    Length and depth are checked before parsing; duplicate keys, NaN and Infinity are refused
    (a ``policies`` value must not mean one thing here and another to the next tool that reads
    it); the message is the decoder's, which :mod:`.settings` prefixes with the key's name.
    """
    if len(text) > MAX_VALUE_CHARS:
        raise ValueError(f"longer than {MAX_VALUE_CHARS} characters")
    try:
        value = strict.decode_json(text, "value", max_depth=MAX_DEPTH)
    except ValidationError as error:
        raise ValueError(error.message) from None
    check_structure(value)
    return value


def parse_string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type_name(value)}")
    if len(value) > MAX_VALUE_CHARS:
        raise ValueError(f"longer than {MAX_VALUE_CHARS} characters")
    return value.strip()


def parse_secret(value: object) -> str:
    """Like :func:`parse_string`, but the error never echoes the value."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type_name(value)}")
    if len(value) > MAX_VALUE_CHARS:
        raise ValueError(f"longer than {MAX_VALUE_CHARS} characters")
    return value


def parse_optional_label(value: object) -> str:
    text = parse_string(value)
    return str(checked(names.check_label, text)) if text else ""


_LABEL_VALUE = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


def parse_label_value(value: object) -> str:
    """A Kubernetes label value (``zone``: what ``topology.kubernetes.io/zone`` holds), or ""."""
    text = parse_string(value)
    if text and not _LABEL_VALUE.fullmatch(text):
        raise ValueError(f"{shown(text)} is not a Kubernetes label value (at most 63 of A-Z a-z 0-9 - _ ., "
                         "alphanumeric at both ends)")
    return text


def parse_cluster_domain(value: object) -> str:
    return str(checked(names.check_subdomain, parse_string(value).rstrip(".")))


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = parse_string(value).lower() if isinstance(value, str) else None
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {shown(value)}")


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", re.ASCII)
_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+", re.ASCII)
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
ASCII_INTEGER = re.compile(r"[0-9]+", re.ASCII)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def format_duration(seconds: float) -> str:
    """``0.5`` → ``500ms``, ``90`` → ``1m30s``, ``3600`` → ``1h`` (for ranges in messages)."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours:g}h" if hours else "") + (f"{minutes:g}m" if minutes else "") + (f"{secs:g}s" if secs else "")
    return text or "0"


def _seconds(value: object) -> float:
    """Seconds from ``500ms``, ``15s``, ``2m``, ``1m30s``, a bare number, or a JSON/YAML number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise ValueError(f"{value} is not a finite number")
        return seconds
    text = parse_string(value)
    if len(text) > 32:
        raise ValueError(f"{shown(text)} is not a duration like 500ms, 15s or 2m")
    if _NUMBER.fullmatch(text):
        return float(text)  # a bare number is seconds, as the configuration reference says
    if not _DURATION.fullmatch(text):
        raise ValueError(f"{shown(text)} is not a duration like 500ms, 15s, 2m or a number of seconds")
    return sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))


def duration(low: float, high: float) -> Callable[[object], float]:
    """A parser for a duration key whose accepted range is ``low``…``high`` seconds."""

    def parse(value: object) -> float:
        seconds = _seconds(value)
        if not low <= seconds <= high:
            raise ValueError(f"{shown(value)} is out of range: accepted {format_duration(low)} to "
                             f"{format_duration(high)}")
        return seconds

    parse.range = (low, high)  # type: ignore[attr-defined]  # read by the documentation test
    return parse


def parse_duration(value: object) -> float:
    """Any duration from 0 to 168h (keys with a narrower documented range use :func:`duration`)."""
    return duration(0.0, 7 * 24 * 3600.0)(value)


def integer(low: int, high: int) -> Callable[[object], int]:
    """A parser for a count key (ASCII digits or a JSON/YAML integer) within ``low``…``high``."""

    def parse(value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = parse_string(value)
            if not ASCII_INTEGER.fullmatch(text) or len(text) > 12:
                raise ValueError(f"expected a whole number (ASCII digits), got {shown(value)}")
            number = int(text)
        if not low <= number <= high:
            raise ValueError(f"{number} is out of range: accepted {low} to {high}")
        return number

    parse.range = (low, high)  # type: ignore[attr-defined]
    return parse


def parse_endpoints(value: object) -> tuple[EtcdEndpoint, ...]:
    items = string_list(value)
    if not items:
        raise ValueError("at least one etcd endpoint is required")
    endpoints = []
    for item in items:
        secure = item.startswith("https://")
        rest = re.sub(r"^https?://", "", item).rstrip("/")
        host, sep, port_text = rest.rpartition(":")
        if not sep or not ASCII_INTEGER.fullmatch(port_text) or len(port_text) > 5:
            raise ValueError(f"{shown(item)} is not host:port or https://host:port")
        host = host.strip("[]")
        port = checked(names.check_port, int(port_text))
        endpoints.append(EtcdEndpoint(checked(names.check_host, host), port, secure))
    return tuple(endpoints)


def parse_prefix(value: object) -> str:
    text = parse_string(value).rstrip("/")
    if not text.startswith("/") or "//" in text or re.search(r"\s", text):
        raise ValueError(f"{shown(text)} must start with '/' and contain no empty segments or spaces")
    return text


def parse_template(value: object) -> Template:
    return Template(parse_string(value))


def choice(*options: str) -> Callable[[object], str]:
    """A parser of one of ``options`` (any case), returned as spelt in ``options``."""
    def parse(value: object) -> str:
        text = parse_string(value)
        for option in options:
            if option.lower() == text.lower():
                return option
        raise ValueError(f"expected {', '.join(options[:-1])} or {options[-1]}, got {shown(text)}")

    return parse


parse_fallback = choice("dns", "none")
CACHE_SCOPES = ("all", "onDemand")
parse_cache_scope = choice(*CACHE_SCOPES)


def parse_cluster_cidrs(value: object) -> ClusterCIDRs:
    """``cluster-1=10.1.0.0/16,cluster-1=fd00:1::/48,cluster-2=hostnames`` (or a list of entries)."""
    text = ",".join(string_list(value))
    cidrs, hostname_clusters = AddressPolicy.parse_cluster_cidrs(text)
    return ClusterCIDRs(text, cidrs, hostname_clusters)


def string_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value if item.strip()]
    raise ValueError(f"expected a comma-separated string or a list of strings, got {type_name(value)}")


def checked(check: Callable[[Any, str], Any], value: Any) -> Any:
    """Run a :mod:`names` check, turning its ValidationError into the ValueError parsers raise."""
    try:
        return check(value, "value")
    except ValidationError as error:
        raise ValueError(error.message) from None
