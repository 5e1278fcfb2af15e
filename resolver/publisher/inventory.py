"""Parsing and validating an inventory document (YAML or JSON) into endpoint records.

An inventory is a list of entries, or ``{endpoints: [...]}``::

    - {appId: billing, namespace: default, instance: vm-billing-1, address: 192.168.7.10, port: 50002, zone: z1}

Why so strict (each rule answers a failure seen in the field or in a fuzzer; docs/operations.md):

* *What counts as "empty"*. An empty or comment-only file, ``~``, ``{}`` or ``endpoints:``
  with nothing after it is what a truncate-then-write editor, a half-copied ConfigMap or a
  typo leaves behind — never an operator's wish to withdraw a cluster. Those raise
  :class:`NoEndpoints` and the source keeps the last good state (with a warning). Only an
  explicit empty list — ``[]`` or ``endpoints: []`` — empties the cluster.
* *YAML aliases are refused* (an alias bomb turns 418 bytes into megabytes); the check runs
  only when the text contains ``&`` or ``*``.
* *Per-field validation*, with messages naming the entry (numbered from 1, as an editor shows
  lines of a list) and the field: ``appId: 12345`` is a type error, not "missing"; ``zone``
  is a Kubernetes label value (≤ 63 of ``[A-Za-z0-9._-]``, alphanumeric at both ends);
  ``node`` a DNS-1123 subdomain (EKS node names have dots); ``address`` a canonical IP
  literal or a valid DNS host name (``999.1.0.1`` and ``10.1.0.256`` are refused, not
  published as host names) that the address policy accepts.
* *A key written twice is refused* — ``{appId: a, address: 10.0.0.1, address: 10.0.0.2}`` names
  the key (and its line): the one strict decoder of every untrusted document
  (:mod:`resolver.records.strict`) reads inventories too, as it reads registry values.
* *Speed*: ``.json`` inventories parse with the standard library's decoder (100,000 entries in
  well under the 2 s budget, see ``bench/inventory_reload.py``); YAML uses libyaml's C loader
  where PyYAML has it (the pure-Python loader is ~4× slower still).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from resolver.errors import InventoryError, NoEndpoints, ValidationError
from resolver.observability import metrics
from resolver.publisher.pods import refusal_code
from resolver.records import names, strict
from resolver.records.addresses import DEFAULT_POLICY, AddressPolicy, parse_host
from resolver.records.schema import EndpointRecord

log = logging.getLogger(__name__)

SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's loader when PyYAML was built with it (manylinux wheels are)."""
FIELDS = ("appId", "namespace", "instance", "address", "port", "zone", "node")
_FIELD_SET = frozenset(FIELDS)
DEFAULT_PORT = 50002
_ZONE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_CANONICAL_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")
ZONE_MAX = 63


@dataclass
class Inventory:
    """The valid records of a document and what was wrong with the rest (one line each)."""

    records: list[EndpointRecord]
    problems: list[str] = field(default_factory=list)
    refused: int = 0


def load_document(text: str, source: str, as_json: bool = False) -> Any:
    """The parsed document; raises :class:`InventoryError` naming ``source`` when it is not usable.

    Both formats go through the one strict decoder of untrusted documents
    (:mod:`resolver.records.strict`): an entry that writes a key twice is refused, naming the
    key (and, in YAML, its line), instead of silently publishing whichever value came last.
    """
    try:
        if as_json:
            return strict.decode_json(text, source)
        if "&" in text or "*" in text:
            _refuse_aliases(text, source)
        return strict.load_yaml(text, source, base=SafeLoader)
    except ValidationError as error:
        raise InventoryError(f"{source}: {error.message}") from None


def _refuse_aliases(text: str, source: str) -> None:
    """Refuse YAML anchors and aliases (an alias bomb turns 418 bytes into megabytes).

    A document that does not even parse is left to the loader, which says where it breaks.
    """
    try:
        for event in yaml.parse(text, Loader=SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                line = event.start_mark.line + 1 if event.start_mark is not None else 0
                raise InventoryError(f"{source}: YAML anchors and aliases are not allowed (line {line}): "
                                     "write every entry out in full")
    except yaml.YAMLError:
        return


def entries_of(document: Any, source: str) -> list[Any]:
    """The entry list of a document; explicit ``[]`` is a real (empty) list, the rest raise."""
    if document is None:
        raise NoEndpoints(f"{source}: the document is empty (no entries, only comments, or ~)")
    if isinstance(document, dict):
        if not document:
            raise NoEndpoints(f"{source}: the document is {{}} (no endpoints: key)")
        if "endpoints" not in document:
            raise NoEndpoints(f"{source}: no endpoints: key (found {', '.join(sorted(map(str, document))[:5])})")
        document = document["endpoints"]
        if document is None:
            raise NoEndpoints(f"{source}: endpoints: has no list (write endpoints: [] to publish nothing)")
    if not isinstance(document, list):
        raise InventoryError(f"{source}: expected a list of endpoints, got {type(document).__name__}")
    return document


def _string(entry: dict[str, Any], name: str, required: bool) -> str:
    value = entry.get(name)
    if value is None:
        if required:
            raise ValidationError(name, "missing")
        return ""
    if not isinstance(value, str):
        raise ValidationError(name, f"expected a string, got {type(value).__name__} {str(value)[:40]!r}")
    return value


def _check_zone(zone: str, _: str) -> str:
    if len(zone) > ZONE_MAX or not _ZONE.fullmatch(zone):
        raise ValidationError("zone", f"{zone[:40]!r}{'...' if len(zone) > 40 else ''} is not a Kubernetes label "
                                      f"value (at most {ZONE_MAX} of A-Z a-z 0-9 . _ -, alphanumeric at both ends)")
    return zone


def _check_address(address: str, _: str) -> str:
    if not _CANONICAL_IPV4.fullmatch(address):  # the common case needs no ipaddress object
        parse_host(address)
    return address


class EntryValidator:
    """Validates entries of one document; values seen valid before are not checked again.

    App ids, namespaces, zones and nodes repeat across thousands of entries: remembering the
    valid ones keeps a 100,000-entry inventory well under the 2 s budget.
    """

    def __init__(self, cluster: str, previous: dict[tuple[Any, ...], EndpointRecord] | None = None) -> None:
        names.check_label(cluster, "cluster")
        self.cluster = cluster
        self._valid: dict[str, set[str]] = {name: set() for name in ("appId", "namespace", "zone", "node")}
        self._previous = previous or {}
        self.seen: dict[tuple[Any, ...], EndpointRecord] = {}
        """Entries of this document that validated, by content: the next reload reuses them."""

    def cached_record(self, entry: Any) -> EndpointRecord:
        """:meth:`record`, without re-validating an entry the previous load already validated."""
        try:
            # Types too: True == 1 and 1.0 == 1 in Python, but only the int is a valid port.
            identity = tuple((k, v, type(v)) for k, v in entry.items()) if type(entry) is dict else None
            found = self._previous.get(identity) if identity is not None else None
        except TypeError:  # an unhashable value (a list): validation names it
            identity = found = None
        record = found or self.record(entry)
        if identity is not None:
            self.seen[identity] = record
        return record

    def _checked(self, name: str, value: str, check: Callable[[str, str], str]) -> str:
        seen = self._valid.get(name)
        if seen is not None and value in seen:
            return value
        check(value, name)
        if seen is not None and len(seen) < 100_000:
            seen.add(value)
        return value

    def record(self, entry: Any) -> EndpointRecord:
        """One entry → a valid record; :class:`ValidationError` names the field."""
        if not isinstance(entry, dict):
            raise ValidationError("entry", f"expected a mapping of {', '.join(FIELDS)}, got {type(entry).__name__}")
        if len(entry) > len(FIELDS) or not _FIELD_SET.issuperset(entry):
            unknown = [str(key) for key in entry if key not in _FIELD_SET]
            raise ValidationError(unknown[0][:40], f"unknown field; allowed: {', '.join(FIELDS)}")
        app_id = self._checked("appId", _string(entry, "appId", True), names.check_app_id)
        namespace = self._checked("namespace", _string(entry, "namespace", True), names.check_label)
        instance = names.check_subdomain(_string(entry, "instance", True), "instance")
        address = _check_address(_string(entry, "address", True), "address")
        zone, node = _string(entry, "zone", False), _string(entry, "node", False)
        if zone:
            self._checked("zone", zone, _check_zone)
        if node:
            self._checked("node", node, names.check_subdomain)
        port = names.check_port(entry.get("port", DEFAULT_PORT), "port")
        return EndpointRecord(app_id=app_id, namespace=namespace, cluster=self.cluster, instance=instance,
                              address=address, port=port, zone=zone, node=node)


def parse_entries(entries: list[Any], cluster: str, source: str, policy: AddressPolicy = DEFAULT_POLICY,
                  validator: EntryValidator | None = None) -> Inventory:
    """Validate every entry; bad ones are reported (entry numbers from 1) and skipped.

    Pass the previous load's :attr:`EntryValidator.seen` in a new validator to skip entries
    that did not change (a one-line edit of a 100,000-entry inventory re-validates one entry).
    """
    result = Inventory([])
    validator = validator or EntryValidator(cluster)
    seen: dict[tuple[str, str, str], int] = {}
    for number, entry in enumerate(entries, start=1):
        try:
            record = validator.cached_record(entry)
        except ValidationError as error:
            metrics.PUBLISHER_SKIPPED.labels("invalid_inventory_entry").inc()
            result.problems.append(f"{source} entry {number}: {error.field}: {error.message}")
            continue
        why = policy.host_refusal(cluster, record.address)
        if why is not None:
            metrics.PUBLISHER_REFUSED.labels(refusal_code(why)).inc()
            result.refused += 1
            result.problems.append(f"{source} entry {number} ({record.instance}): address not published: {why}")
            continue
        identity = (record.namespace, record.app_id, record.instance)
        if identity in seen:
            metrics.PUBLISHER_SKIPPED.labels("duplicate_inventory_entry").inc()
            result.problems.append(f"{source} entry {number}: duplicate of entry {seen[identity]} "
                                   f"({'/'.join(identity)})")
            continue
        seen[identity] = number
        result.records.append(record)
    return result


def parse_inventory(text: str, cluster: str, source: str = "inventory", as_json: bool = False,
                    policy: AddressPolicy = DEFAULT_POLICY) -> list[EndpointRecord]:
    """Valid records of a document (problems logged); raises :class:`InventoryError` when unusable."""
    inventory = parse_entries(entries_of(load_document(text, source, as_json), source), cluster, source, policy)
    for problem in inventory.problems[:20]:
        log.warning("%s", problem)
    if len(inventory.problems) > 20:
        log.warning("%s: %d more entries skipped", source, len(inventory.problems) - 20)
    return inventory.records
