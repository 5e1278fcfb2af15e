"""Validation of the names that become etcd key segments (docs/registry-schema.md).

Every segment is validated before any read or write, so nothing from a request, a pod or an
inventory file can escape its prefix: the allowed alphabets contain no ``/``, and app ids
contain no ``.`` because Dapr splits ``id.namespace`` on it.
"""

from __future__ import annotations

import ipaddress
import re

from resolver.errors import ValidationError, shown

APP_ID_MAX = 63
LABEL_MAX = 63
SUBDOMAIN_MAX = 253

_APP_ID = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_]*[A-Za-z0-9])?")
_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
# One pattern for a whole ``cluster/namespace/appId/instance`` key tail (the reader's fast path);
# anything it refuses goes through the per-segment checks, which say what is wrong.
_LABEL_63 = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
ENDPOINT_PATH = re.compile(
    rf"({_LABEL_63})/({_LABEL_63})/([A-Za-z0-9](?:[-A-Za-z0-9_]{{0,61}}[A-Za-z0-9])?)/"
    rf"({_LABEL_63}(?:\.{_LABEL_63})*)")
_HOSTNAME_LABEL = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9]*[A-Za-z0-9])?")


def _check(value: str, field: str, valid: bool, what: str) -> str:
    """The one shape of every name check: empty, or not ``valid``, is an error naming ``field``."""
    if not value:
        raise ValidationError(field, "must not be empty")
    if not valid:
        raise ValidationError(field, f"{shown(value)} is not {what}")
    return value


def check_app_id(value: str, field: str = "id") -> str:
    """Return ``value`` if it is a valid Dapr app id, else raise naming ``field``."""
    return _check(value, field, len(value) <= APP_ID_MAX and _APP_ID.fullmatch(value) is not None,
                  "a valid app id (letters, digits, '-' and '_', starting and ending with a letter or "
                  f"digit, at most {APP_ID_MAX} characters)")


def check_label(value: str, field: str) -> str:
    """Return ``value`` if it is a DNS-1123 label (namespaces, cluster names)."""
    return _check(value, field, len(value) <= LABEL_MAX and _LABEL.fullmatch(value) is not None,
                  "a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter "
                  f"or digit, at most {LABEL_MAX} characters)")


def check_subdomain(value: str, field: str) -> str:
    """Return ``value`` if it is a DNS-1123 subdomain (instance names, e.g. pod names)."""
    valid = (len(value) <= SUBDOMAIN_MAX and _SUBDOMAIN.fullmatch(value) is not None
             and all(len(label) <= LABEL_MAX for label in value.split(".")))
    return _check(value, field, valid, f"a DNS-1123 subdomain (lower-case labels of at most {LABEL_MAX} "
                  f"characters separated by '.', at most {SUBDOMAIN_MAX} characters)")


def check_port(value: object, field: str = "port") -> int:
    """Return ``value`` as an int if it is a TCP port number 1–65535."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be an integer port number, got {type(value).__name__}")
    if not 1 <= value <= 65535:
        raise ValidationError(field, f"{value} is not a port number (1-65535)")
    return value


IPV4_OR_HOSTNAME = re.compile(
    r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"|(?=.{1,253}$)[A-Za-z0-9](?:[-A-Za-z0-9]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[-A-Za-z0-9]*[A-Za-z0-9])?)*\.?")


def check_host(value: str, field: str = "address") -> str:
    """Return ``value`` if it is an IPv4/IPv6 address or a DNS host name (no port, no brackets)."""
    if not value:
        raise ValidationError(field, "must not be empty")
    if ":" not in value and IPV4_OR_HOSTNAME.fullmatch(value):  # fast path: 100k records load in ~1 s
        return value
    try:
        ipaddress.ip_address(value)
    except ValueError:
        labels = value.rstrip(".").split(".")
        if len(value) > SUBDOMAIN_MAX or not all(_HOSTNAME_LABEL.fullmatch(label) for label in labels):
            raise ValidationError(field, f"{shown(value)} is neither an IP address nor a host name") from None
    return value


def join_host_port(host: str, port: int) -> str:
    """``host:port`` with IPv6 hosts in brackets, as daprd expects an address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(address: str) -> tuple[str, int]:
    """Inverse of :func:`join_host_port`."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def sanitize_subdomain(value: str) -> str:
    """Turn an arbitrary string (e.g. ``10.0.0.7-50002`` or an IPv6 address) into a subdomain.

    Used to derive instance names for self-registration: lower-cased, anything outside
    ``[a-z0-9.-]`` becomes ``-``, and labels are trimmed so each starts and ends alphanumeric.
    """
    cleaned = re.sub(r"[^a-z0-9.-]", "-", value.lower())
    labels = [label.strip("-") for label in cleaned.split(".")]
    result = ".".join(label for label in labels if label)
    return result[:SUBDOMAIN_MAX].rstrip(".-") or "instance"
