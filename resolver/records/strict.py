"""The one strict decoder for every untrusted document: registry values, configuration, inventories.

Why one decoder, and why strict: a document that means one thing to one parser and another to
the next is an attack surface and a debugging trap. ``{"address": "10.0.0.1", "address":
"169.254.169.254"}`` is the first address to a validator that stops at the first key and the
second to Python's ``json`` (the last key wins); ``NaN`` and ``1e999`` are not JSON at all but
Python accepts them. So every document anybody else wrote — a registry value written by some
cluster, Init's configuration, a ``--config`` file, a ``policies`` value, an inventory — goes
through the functions here and is refused, with a :class:`~resolver.errors.ValidationError`
naming the document and the offending key, when it:

* repeats a key in one object or mapping (JSON and YAML alike; a YAML error also gives the line);
* contains ``NaN``, ``Infinity`` or a number that overflows to infinity;
* is not UTF-8, not JSON (or YAML) at all, or nested deeper than asked (or than the parser can
  follow — never a :class:`RecursionError` traceback);
* is not an object where one is required (:func:`decode_object`).

Callers turn that one error into their own: a reader's :class:`~resolver.errors.InvalidRecord`,
a :class:`~resolver.errors.ConfigValueError` naming the key, an inventory error naming the file.

The second half reads the *fields* of a registry value (:func:`record_object` and the
``*_field`` helpers): every record format in :mod:`.schema` and :mod:`.coordination` shares
them, so a value's size cap, number ranges and string bounds are defined once.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from resolver.errors import InvalidRecord, ValidationError

SHOWN_KEY_CHARS = 40
"""An offending key is echoed cut to this many characters: a hostile document may have huge keys."""
_YAML_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Refused(ValueError):
    """Raised from inside the JSON parser's hooks; its message is shown as is (not "not valid JSON")."""


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a finite number (JSON has no {name})")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:SHOWN_KEY_CHARS]} is not a finite number (it overflows)")
    return value


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # the common case costs one length comparison
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise _Refused(f"duplicate key {duplicate[:SHOWN_KEY_CHARS]!r}")
    return obj


_STRICT = json.JSONDecoder(object_pairs_hook=_unique_object, parse_float=_finite_float,
                           parse_constant=_refuse_constant)
raw_decode = _STRICT.raw_decode
"""The strict decoder's ``raw_decode``: hooks raise :class:`ValueError`, a deep value :class:`RecursionError`.

Only for a hot path that falls back to :func:`decode_json` for its error message (the registry
reader decodes 100k endpoint records at a cold start; see :func:`.schema.endpoint_entry`).
"""


def json_depth(text: str) -> int:
    """The deepest ``[``/``{`` nesting of JSON text, found by a scan that respects strings.

    Lets a caller refuse a deep document before parsing it: the parser itself would recurse.
    """
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def decode_json(text: str | bytes, document: str, *, max_depth: int | None = None) -> Any:
    """Strictly decode one JSON document of any type; :class:`ValidationError` naming ``document`` if not.

    ``max_depth`` refuses deeper nesting before parsing (the error says the limit); without it
    the parser's own limit applies, reported the same way.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValidationError(document, f"not valid JSON: not UTF-8 ({error.reason} at byte {error.start})"
                                  ) from None
    if max_depth is not None and json_depth(text) > max_depth:
        raise ValidationError(document, f"nested deeper than {max_depth} levels")
    try:
        return _STRICT.decode(text)
    except RecursionError:
        raise ValidationError(document, "nested deeper than the JSON parser can follow") from None
    except _Refused as error:
        raise ValidationError(document, str(error)) from None
    except ValueError as error:
        raise ValidationError(document, f"not valid JSON: {str(error)[:120]}") from None


def decode_object(text: str | bytes, document: str, *, max_depth: int | None = None) -> dict[str, Any]:
    """:func:`decode_json` for documents that must be a JSON object (every registry value is one)."""
    value = decode_json(text, document, max_depth=max_depth)
    if not isinstance(value, dict):
        raise ValidationError(document, f"expected a JSON object, got {type(value).__name__}")
    return value


# --- YAML ------------------------------------------------------------------------------------------

class _DuplicateYamlKey(ValueError):
    """A mapping repeats a key; raised from inside the loader, turned into a ValidationError below."""


def _construct_unique_mapping(loader: yaml.constructor.SafeConstructor, node: yaml.MappingNode,
                              deep: bool = False) -> dict[Any, Any]:
    """``SafeConstructor.construct_mapping`` that refuses a key written twice in one mapping.

    A key a merge (``<<: *base``) brings in may be overridden — that is what merging is for —
    so only the keys written in the mapping itself are compared, and only when the mapping came
    out smaller than its node: the common case costs one pass over the key nodes, no key is built twice.
    """
    written = [key_node for key_node, _ in node.value if key_node.tag != _YAML_MERGE_TAG]
    mapping = yaml.constructor.SafeConstructor.construct_mapping(loader, node, deep=deep)
    if len(mapping) != len(node.value):
        seen: set[Any] = set()
        for key_node in written:
            key = loader.construct_object(key_node, deep=True)  # already built: a cache hit
            if key in seen:
                line = key_node.start_mark.line + 1 if key_node.start_mark is not None else 0
                raise _DuplicateYamlKey(f"duplicate key {str(key)[:SHOWN_KEY_CHARS]!r} at line {line}")
            seen.add(key)
    return mapping


FAST_SAFE_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML was built with it (manylinux wheels are): ~4× faster."""


_STRICT_LOADERS: dict[type[Any], type[Any]] = {}


def strict_loader(base: type[Any] = FAST_SAFE_LOADER) -> type[Any]:
    """A subclass of the safe loader ``base`` that refuses duplicate mapping keys (one class per base)."""
    loader = _STRICT_LOADERS.get(base)
    if loader is None:
        made = type(f"Strict{base.__name__}", (base,), {"construct_mapping": _construct_unique_mapping})
        loader = _STRICT_LOADERS.setdefault(base, made)
    return loader


def load_yaml(text: str | bytes, document: str, *, base: type[Any] = FAST_SAFE_LOADER) -> Any:
    """Safely and strictly load one YAML (or JSON) document; :class:`ValidationError` naming ``document`` if not.

    ``base`` is the safe loader to make strict: libyaml's by default; the pure-Python one where
    its errors say more (libyaml reports deep nesting only as a "flow level") or to measure it
    (``bench/inventory_reload.py``). Size and nesting limits are the caller's: the limits of a
    configuration file are not an inventory's.
    """
    try:
        return yaml.load(text, Loader=strict_loader(base))  # noqa: S506 - a safe loader, made stricter
    except _DuplicateYamlKey as error:
        raise ValidationError(document, str(error)) from None
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0] if str(error) else "parse error"
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValidationError(document, f"not valid YAML{where}: {first[:120]}") from None
    except RecursionError:
        raise ValidationError(document, "nested deeper than the YAML parser can follow") from None


# --- the fields of a registry value ---------------------------------------------------------------

MAX_RECORD_BYTES = 4096
"""Registry values larger than this are refused: a record is ~200 bytes; 4 KiB leaves room."""
MAX_TIMESTAMP = 1e11
"""Timestamps (unix seconds) above this (the year 5138) are refused rather than trusted."""
MAX_FIELD = 253
"""The longest free-text field (a publisher name, a version, a clusterUid, a zone) a value may carry."""


def record_object(raw: bytes) -> dict[str, Any]:
    """A registry value as a JSON object, size-capped and strictly decoded; :class:`InvalidRecord` if not."""
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidRecord("value", f"{len(raw)} bytes is larger than the {MAX_RECORD_BYTES}-byte limit")
    try:
        return decode_object(raw, "value")
    except ValidationError as error:
        raise InvalidRecord(error.field, error.message) from None


def string_field(obj: dict[str, Any], field: str, required: bool = True) -> str:
    """A string field; absent is "" unless ``required``."""
    if field not in obj:
        if required:
            raise InvalidRecord(field, "missing")
        return ""
    value = obj[field]
    if not isinstance(value, str):
        raise InvalidRecord(field, f"expected a string, got {type(value).__name__}")
    return value


def bounded_field(obj: dict[str, Any], field: str, required: bool = False) -> str:
    """A string field of at most :data:`MAX_FIELD` characters (absent: "" unless ``required``)."""
    value = string_field(obj, field, required=required)
    if len(value) > MAX_FIELD:
        raise InvalidRecord(field, f"longer than {MAX_FIELD} characters")
    return value


def number_field(obj: dict[str, Any], field: str, high: float) -> float:
    """A finite number in ``[0, high]`` (absent or null: 0); anything else is an invalid record."""
    value = obj.get(field)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRecord(field, f"expected a number, got {type(value).__name__}")
    if not 0 <= value <= high:  # compares huge ints exactly; never converts them first
        raise InvalidRecord(field, f"{str(value)[:40]} is outside 0-{high:g}")
    return float(value)


def dump_record(obj: dict[str, Any]) -> bytes:
    """The registry's canonical encoding: compact and key-sorted, so equal values are equal bytes."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
