"""A ``PUT /v1/agent/service/register`` body → a validated :class:`Registration`, or 400 naming the field.

What Dapr's consul resolver sends with ``selfRegister: true`` (components-contrib
``getRegistrationConfig``), through consul/api's ``AgentServiceRegistration``::

    {"ID": "{appId}-{host}-{daprHTTPPort}", "Name": "{appId}", "Address": "{host}", "Port": {appPort},
     "Meta": {"DAPR_PORT": "{daprInternalPort}", …configuration.meta},
     "Check": null,
     "Checks": [{"CheckID": "daprHealth:{ID}", "Name": "Dapr Health Status", "Interval": "15s",
                 "HTTP": "http://{host}:{daprHTTPPort}/v1.0/healthz?appid={appId}"}]}

That becomes one endpoint record in the role's own cluster: app id ``Name``, address
``Address``, port ``Meta[daprPortMetaKey]`` (the sidecar's internal gRPC port — ``Port`` is the
*app's* port, which no caller dials; it is checked and kept for the answer only), namespace
``Meta["dapr-etcd-resolver-namespace"]`` or ``Namespace``, else the role's ``--namespace``.

Validated like an inventory entry (:class:`~resolver.publisher.inventory.EntryValidator`'s rules:
names, ports, and the address policy with ``clusterCIDRs`` and ``allowLoopback``), strictly:

* Field names are matched in any letter case, as Consul's Go decoder matches them.
* Fields with no registry equivalent but harmless to drop are accepted and ignored (``Tags``,
  ``TaggedAddresses``, ``EnableTagOverride``, ``Weights``, ``Partition``, ``Locality``); fields
  whose meaning would be silently lost are refused when not empty (``Kind``, ``Ports``,
  ``SocketPath``, ``Proxy``, ``Connect``, ``AI``); anything else is an unknown field. All ``400``.
* Checks: HTTP only (``TTL``, ``TCP``, ``GRPC``, script … are refused), at most
  :data:`MAX_CHECKS`, each to ``http(s)://`` **the registration's own Address** (any port) and
  nowhere else — the role runs the check, so a check URL is a request the role makes on the
  caller's behalf; pointing it elsewhere would make the role a proxy into its own network.
  Methods ``GET`` and ``HEAD`` only, no body, no credentials in the URL.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from resolver.consul.params import go_duration
from resolver.errors import ValidationError, shown
from resolver.records import names
from resolver.records.addresses import AddressPolicy, parse_host
from resolver.records.schema import EndpointRecord
from resolver.records.strict import decode_object

NAMESPACE_META = "dapr-etcd-resolver-namespace"
"""The ``Meta`` key that names the record's Dapr namespace (else ``Namespace``, else the role's)."""
MAX_CHECKS = 4
MIN_INTERVAL, MAX_INTERVAL = 1.0, 60.0
"""A check's ``Interval`` is raised to 1 s (Consul's own minimum) and cut to 60 s (a dead sidecar
must be noticed within a minute whatever its registration says)."""
DEFAULT_TIMEOUT = 10.0
"""Consul's default check timeout; never longer than the interval."""
MAX_THRESHOLD = 100
SERVICE_ID = re.compile(r"[A-Za-z0-9._:@\[\]-]{1,256}")
_META_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")  # Consul's own rule for service meta keys
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")

_IGNORED = frozenset({"tags", "taggedaddresses", "enabletagoverride", "weights", "partition", "locality"})
_REFUSED = {"kind": "Kind", "ports": "Ports", "socketpath": "SocketPath", "proxy": "Proxy", "connect": "Connect",
            "ai": "AI"}
_SERVICE = (frozenset({"id", "name", "port", "address", "meta", "check", "checks", "namespace"})
            | _IGNORED | frozenset(_REFUSED))
_CHECK_USED = frozenset({"checkid", "name", "interval", "timeout", "http", "header", "method", "tlsskipverify",
                         "tlsservername", "status", "notes", "successbeforepassing", "failuresbeforewarning",
                         "failuresbeforecritical", "deregistercriticalserviceafter", "serviceid", "body"})
_CHECK_KINDS = frozenset({"scriptargs", "args", "dockercontainerid", "shell", "ttl", "tcp", "tcpusetls", "udp",
                          "grpc", "grpcusetls", "h2ping", "h2pingusetls", "aliasnode", "aliasservice", "osservice"})


@dataclass(frozen=True, slots=True)
class HttpCheck:
    """One HTTP check the role runs for a registration."""

    check_id: str
    url: str
    scheme: str
    host: str  # the registration's Address, as parsed (an IP literal or a host name)
    port: int
    target: str  # path and query
    method: str
    headers: tuple[tuple[str, str], ...]
    interval: float
    timeout: float
    tls_skip_verify: bool
    tls_server_name: str
    passing_at_start: bool  # Status "passing"; Consul's default is critical until the first pass
    successes_before_passing: int
    failures_before_critical: int
    deregister_after: float  # DeregisterCriticalServiceAfter in seconds; 0: never


@dataclass(frozen=True, slots=True)
class Registration:
    service_id: str
    record: EndpointRecord
    app_port: int
    checks: tuple[HttpCheck, ...]


def _empty(value: Any) -> bool:
    return value is None or value is False or value in (0, "", [], {})


def _fields(obj: dict[str, Any], allowed: frozenset[str], where: str) -> dict[str, Any]:
    """Lower-cased keys → values; an unknown or repeated (in another case) key is a ValidationError."""
    found: dict[str, Any] = {}
    for key, value in obj.items():
        lower = key.lower().replace("_", "")
        if lower not in allowed:
            raise ValidationError(f"{where}{key}"[:80], "unknown field (docs/consul.md lists what is accepted)")
        if lower in found:
            raise ValidationError(f"{where}{key}"[:80], "given twice (field names are matched in any case)")
        found[lower] = value
    return found


def _string(fields: dict[str, Any], name: str, field: str, limit: int = 1024) -> str:
    value = fields.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if len(value) > limit or not value.isprintable():
        raise ValidationError(field, f"{shown(value)} must be printable and at most {limit} characters")
    return value


def _integer(fields: dict[str, Any], name: str, field: str, low: int, high: int) -> int:
    value = fields.get(name, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(field, f"{shown(value)} is not an integer between {low} and {high}")
    return value


def _duration(fields: dict[str, Any], name: str, field: str) -> float:
    text = _string(fields, name, field, 32)
    if not text:
        return 0.0
    try:
        return go_duration(text)
    except ValueError:
        raise ValidationError(field, f"{shown(text)} is not a Go duration such as 15s or 500ms") from None


def _same_host(a: str, b: str) -> bool:
    parsed_a, parsed_b = parse_host(a), parse_host(b)
    if isinstance(parsed_a, str) or isinstance(parsed_b, str):
        return parsed_a == parsed_b
    return ipaddress.ip_address(parsed_a) == ipaddress.ip_address(parsed_b)


def parse_check(obj: Any, where: str, address: str) -> HttpCheck:
    """One element of ``Checks`` (or ``Check``); ``where`` prefixes the field names in errors."""
    if not isinstance(obj, dict):
        raise ValidationError(where.rstrip("."), f"must be an object, got {type(obj).__name__}")
    fields = _fields(obj, _CHECK_USED | _CHECK_KINDS, where)
    for kind in sorted(_CHECK_KINDS):
        if not _empty(fields.get(kind)):
            raise ValidationError(f"{where}{kind}", "only HTTP checks are run by this catalog (or none)")
    url = _string(fields, "http", f"{where}HTTP", 2048)
    if not url:
        raise ValidationError(f"{where}HTTP", "a check needs an HTTP URL (only HTTP checks are supported)")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise ValidationError(f"{where}HTTP", f"{shown(url)} is not a URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError(f"{where}HTTP", f"{shown(url)}: only http:// and https:// checks are run")
    if parts.username is not None or parts.password is not None:
        raise ValidationError(f"{where}HTTP", f"{shown(url)}: credentials in the URL are refused")
    host = parts.hostname or ""
    try:
        same = _same_host(host, address)
    except ValidationError:
        same = False
    if not same:
        raise ValidationError(f"{where}HTTP", f"{shown(url)} checks {shown(host)}, not the registration's Address "
                              f"{shown(address)}: the role checks a service only at its own address")
    method = (_string(fields, "method", f"{where}Method", 16) or "GET").upper()
    if method not in ("GET", "HEAD"):
        raise ValidationError(f"{where}Method", f"{shown(method)}: only GET and HEAD checks are run")
    if not _empty(fields.get("body")):
        raise ValidationError(f"{where}Body", "a check with a body is not run (GET and HEAD only)")
    interval = min(MAX_INTERVAL, max(MIN_INTERVAL, _duration(fields, "interval", f"{where}Interval") or 10.0))
    timeout = min(interval, max(0.5, _duration(fields, "timeout", f"{where}Timeout") or DEFAULT_TIMEOUT))
    status = _string(fields, "status", f"{where}Status", 16)
    if status not in ("", "passing", "warning", "critical"):
        raise ValidationError(f"{where}Status", f"{shown(status)} is not passing, warning or critical")
    return HttpCheck(
        check_id=_string(fields, "checkid", f"{where}CheckID", 256), url=url, scheme=parts.scheme, host=host,
        port=port, target=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""), method=method,
        headers=_headers(fields.get("header"), f"{where}Header"), interval=interval, timeout=timeout,
        tls_skip_verify=fields.get("tlsskipverify") is True,
        tls_server_name=_string(fields, "tlsservername", f"{where}TLSServerName", 253),
        passing_at_start=status == "passing",
        successes_before_passing=_integer(fields, "successbeforepassing", f"{where}SuccessBeforePassing", 0,
                                          MAX_THRESHOLD),
        failures_before_critical=_integer(fields, "failuresbeforecritical", f"{where}FailuresBeforeCritical", 0,
                                          MAX_THRESHOLD),
        deregister_after=_duration(fields, "deregistercriticalserviceafter",
                                   f"{where}DeregisterCriticalServiceAfter"))


def _headers(value: Any, field: str) -> tuple[tuple[str, str], ...]:
    if _empty(value):
        return ()
    if not isinstance(value, dict) or len(value) > 16:
        raise ValidationError(field, "must be an object of at most 16 header names, each a list of strings")
    found: list[tuple[str, str]] = []
    for name, values in value.items():
        if not _HEADER_NAME.fullmatch(name) or name.lower() in ("host", "content-length", "transfer-encoding"):
            raise ValidationError(f"{field}.{name}"[:80], "not a header name this catalog sends")
        if not isinstance(values, list) or not all(isinstance(v, str) and v.isprintable() and len(v) <= 1024
                                                   for v in values):
            raise ValidationError(f"{field}.{name}"[:80], "must be a list of printable strings")
        found.extend((name, v) for v in values)
    return tuple(found)


def _meta(value: Any, meta_key: str) -> dict[str, str]:
    if value is None:
        value = {}
    if not isinstance(value, dict) or len(value) > 64:
        raise ValidationError("Meta", "must be an object of at most 64 string values")
    for key, item in value.items():
        if not _META_KEY.fullmatch(key):
            raise ValidationError(f"Meta.{key}"[:80], "a Meta key is 1-128 letters, digits, '_' or '-'")
        if not isinstance(item, str) or len(item) > 512:
            raise ValidationError(f"Meta.{key}", "a Meta value is a string of at most 512 characters")
    if meta_key not in value:
        raise ValidationError(f"Meta.{meta_key}", "missing: the sidecar's Dapr internal gRPC port (what the resolver "
                              "answers; Dapr's consul resolver sets it with selfRegister)")
    return value


def parse_registration(body: bytes, *, cluster: str, namespace: str, meta_key: str,
                       policy: AddressPolicy) -> Registration:
    """Raises :class:`ValidationError` naming the field at fault (answered ``400``)."""
    fields = _fields(decode_object(body, "body", max_depth=8), _SERVICE, "")
    for name, shown_name in _REFUSED.items():
        if not _empty(fields.get(name)):
            raise ValidationError(shown_name, "not supported by this catalog (only plain "
                                  "services with HTTP checks are registered)")
    app_id = names.check_app_id(_string(fields, "name", "Name", 128), "Name")
    service_id = _string(fields, "id", "ID", 256) or app_id
    if not SERVICE_ID.fullmatch(service_id):
        raise ValidationError("ID", f"{shown(service_id)}: 1-256 letters, digits and . _ : @ [ ] -")
    address = _string(fields, "address", "Address", 253)
    if not address:
        raise ValidationError("Address", "required: the sidecar's address (this catalog has no node address to "
                              "fall back to)")
    try:
        parse_host(address)
    except ValidationError as error:
        raise ValidationError("Address", error.message) from None
    refusal = policy.host_refusal(cluster, address)
    if refusal is not None:
        raise ValidationError("Address", f"refused by the address policy: {refusal}")
    app_port = _integer(fields, "port", "Port", 0, 65535)
    meta = _meta(fields.get("meta"), meta_key)
    port_text = meta[meta_key]
    port = int(port_text) if port_text.isascii() and port_text.isdigit() and len(port_text) <= 5 else 0
    names.check_port(port if port else -1, f"Meta.{meta_key}")
    record_namespace = _namespace(meta.get(NAMESPACE_META, ""), _string(fields, "namespace", "Namespace", 63),
                                  namespace)
    checks = [fields["check"]] if not _empty(fields.get("check")) else []
    checks += fields.get("checks") or []
    if not isinstance(fields.get("checks") or [], list) or len(checks) > MAX_CHECKS:
        raise ValidationError("Checks", f"must be a list of at most {MAX_CHECKS} checks")
    parsed = tuple(parse_check(check, f"Checks[{number}].", address) for number, check in enumerate(checks))
    record = EndpointRecord(app_id=app_id, namespace=record_namespace, cluster=cluster,
                            instance=instance_name(service_id), address=address, port=port).validate()
    return Registration(service_id, record, app_port, parsed)


def _namespace(from_meta: str, from_field: str, default: str) -> str:
    if from_meta and from_field and from_meta != from_field:
        raise ValidationError("Namespace", f"{shown(from_field)} differs from Meta.{NAMESPACE_META} "
                              f"{shown(from_meta)}: give one")
    field = f"Meta.{NAMESPACE_META}" if from_meta else "Namespace"
    return names.check_label(from_meta or from_field or default, field)


def instance_name(service_id: str) -> str:
    """The record's instance (a DNS subdomain) for a service ID; distinct IDs give distinct names.

    An ID that is already a subdomain is used as it is; any other (Dapr's ``orders-10.0.0.7-3500``
    is one; ``orders-::1-3500`` is not) is sanitized and given a digest of the ID, so two IDs
    that sanitize alike (``a_b`` and ``a-b``) never share a key.
    """
    clean = names.sanitize_subdomain(service_id)
    if clean == service_id:
        return clean
    digest = hashlib.blake2s(service_id.encode(), digest_size=4).hexdigest()
    return f"{clean[:200].rstrip('.-')}-{digest}"
