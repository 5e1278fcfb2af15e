"""Query parameters of a catalog request, parsed as Consul parses them, into one :class:`Query`.

What consul/api (``api.go`` ``setQueryOptions``) may send, and what each becomes here:

* ``index`` (uint64) and ``wait`` (a Go duration; consul/api sends ``"1000ms"``): a blocking
  query. A bad value is ``400`` naming it, as Consul's ``Invalid index`` / ``Invalid wait time``;
  ``wait`` above the cap is cut to it (Consul cuts at 10 minutes too), counted as limit ``wait``;
  up to 1/16 is added at random as Consul does, the total never above the cap.
* ``ns`` (or ``namespace``): the Dapr namespace to answer from; else the role's ``--namespace``.
* ``filter``: parsed by :mod:`resolver.consul.filters` on ``/v1/health/state/*``; refused on
  ``/v1/health/service`` (Dapr sends one there only if configured to, and its selectors are
  ``Service.*``/``Node.*``, which this catalog does not evaluate).
* ``tag``: no registry entry has tags, so any ``tag`` selects nothing (Consul would answer the
  same for a tag no instance carries). ``passing``: every entry passes, accepted.
* ``hash`` (hash-based blocking) and ``node-meta``: refused with ``400`` naming them — answering
  them as if absent would be a wrong answer.
* ``token``: the read token, like ``X-Consul-Token``.
* Accepted and ignored, since one registry has one consistent view: ``dc``, ``stale``,
  ``consistent``, ``cached``, ``near``, ``partition``, ``peer``, ``sameness-group``,
  ``local-only``, ``max-age``, ``stale-if-error``, ``merge-central-config``. Unknown parameters
  are ignored, as Consul ignores them.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from urllib.parse import parse_qs

from resolver.consul.limits import LIMITS, ConsulLimits
from resolver.errors import InvalidRequest, shown

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
REFUSED = ("hash", "node-meta")


def go_duration(text: str) -> float:
    """Seconds of a Go ``time.ParseDuration`` string (``"1000ms"``, ``"1m30s"``, ``"0"``); ValueError otherwise."""
    if text == "0":
        return 0.0
    position, total = 0, 0.0
    if not text:
        raise ValueError("empty duration")
    while position < len(text):
        found = _PART.match(text, position)
        if found is None or found.group(1) in ("", "."):
            raise ValueError(f"{text!r} is not a Go duration")
        total += float(found.group(1)) * _UNITS[found.group(2)]
        position = found.end()
    return total


@dataclass(frozen=True, slots=True)
class Query:
    index: int  # 0: not blocking
    wait: float  # seconds, jitter included, capped
    namespace: str
    filter: str | None
    tags: tuple[str, ...]
    token: str


def parse_query(raw: str, default_namespace: str, limits: ConsulLimits, rng: random.Random | None = None) -> Query:
    """The query string of one request; raises InvalidRequest naming the parameter."""
    try:
        params = parse_qs(raw, keep_blank_values=True, strict_parsing=False, max_num_fields=200)
    except ValueError as error:
        raise InvalidRequest("query", str(error)) from None

    def one(name: str) -> str | None:
        values = params.get(name)
        return values[-1] if values else None

    for name in REFUSED:
        if name in params:
            raise InvalidRequest(name, f"the {name!r} parameter is not supported by this catalog (docs/consul.md)")
    index = 0
    if (text := one("index")) is not None:
        if not text.isascii() or not text.isdigit() or int(text) >= 2**64:
            raise InvalidRequest("index", f"Invalid index {shown(text)}: give an unsigned integer")
        index = int(text)
    wait = limits.default_wait
    if (text := one("wait")) is not None:
        try:
            wait = go_duration(text)
        except ValueError:
            raise InvalidRequest("wait", f"Invalid wait time {shown(text)}: give a Go duration such as 30s or "
                                 "1000ms") from None
        if wait > limits.max_wait:
            LIMITS.reached("wait", f"wait {text} cut to {limits.max_wait:g}s")
            wait = limits.max_wait
        if wait <= 0:
            wait = limits.default_wait
    # Consul's jitter (up to wait/16), so waiters started together spread out; never past the cap.
    wait = min(limits.max_wait, wait + (rng or random).random() * wait / 16)
    namespace = one("ns") or one("namespace") or default_namespace
    return Query(index=index, wait=wait, namespace=namespace, filter=one("filter"),
                 tags=tuple(params.get("tag", ())), token=one("token") or "")
