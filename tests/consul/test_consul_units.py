"""The catalog's parsers and its index, without etcd: the grammar, Go durations, monotonicity."""

from __future__ import annotations

import random
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolver.consul.filters import service_names
from resolver.consul.index import ChangeFeed
from resolver.consul.limits import ConsulLimits
from resolver.consul.params import go_duration, parse_query
from resolver.errors import InvalidRequest


def test_the_resolvers_filter_and_the_documented_extras() -> None:
    assert service_names('ServiceName=="a" or ServiceName=="b"') == ("a", "b")
    assert service_names('ServiceName == "a" or (ServiceName == `b` or ServiceName=="a")') == ("a", "b")
    assert service_names(r'ServiceName=="q\"x"') == ('q"x',)


@given(st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True), min_size=1, max_size=30))
def test_every_filter_the_resolver_can_send_parses_back(names: list[str]) -> None:
    text = " or ".join(f'ServiceName=="{name}"' for name in names)  # watcher.go getServiceNameFilter
    assert service_names(text) == tuple(dict.fromkeys(names))


@given(st.text(max_size=60))
def test_any_text_parses_or_fails_naming_the_filter(text: str) -> None:
    try:
        service_names(text)
    except InvalidRequest as error:
        assert str(error).startswith("filter: ")


@pytest.mark.parametrize(("text", "seconds"), [("0", 0), ("1000ms", 1), ("1m30s", 90), ("1.5h", 5400),
                                               ("250us", 0.00025), ("10µs", 0.00001), (".5s", 0.5)])
def test_go_durations(text: str, seconds: float) -> None:
    assert go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "1d", "-1s", "1 s", "1e3s", "."])
def test_not_go_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        go_duration(text)


def test_query_parameters() -> None:
    limits = ConsulLimits(max_wait=600, default_wait=300)
    rng = random.Random(1)
    query = parse_query("index=42&wait=1000ms&ns=prod&filter=x&tag=a&token=t&cached&stale&dc=x", "default",
                        limits, rng)
    assert (query.index, query.namespace, query.filter, query.tags, query.token) == (42, "prod", "x", ("a",), "t")
    assert 1.0 <= query.wait <= 1.0 + 1 / 16
    assert parse_query("index=1&wait=100h", "default", limits, rng).wait == 600  # Consul's cap, jitter included
    assert 300 <= parse_query("index=1", "default", limits, rng).wait <= 600
    assert parse_query("", "ns1", limits).namespace == "ns1"
    for bad, field in (("index=-1", "index"), ("index=18446744073709551616", "index"), ("wait=5", "wait"),
                       ("hash=x", "hash"), ("node-meta=a:b", "node-meta")):
        with pytest.raises(InvalidRequest) as raised:
            parse_query(bad, "default", limits)
        assert raised.value.field == field


class _Cache:
    version = 0


def test_index_grows_with_every_view_change_even_when_the_clock_steps_back() -> None:
    cache = _Cache()
    clock = iter([5_000, 4_000, 3_000, 9_000])
    feed = ChangeFeed(cache, clock=lambda: next(clock))
    assert feed.current() == 5_000
    assert feed.current() == 5_000  # no change, no new index
    cache.version += 1
    assert feed.current() == 5_001  # the clock went back: previous + 1
    cache.version += 1
    assert feed.current() == 5_002
    cache.version += 1
    assert feed.current() == 9_000  # the clock again


def test_waiters_wake_on_a_change_and_on_stop() -> None:
    cache = _Cache()
    feed = ChangeFeed(cache, poll_seconds=0.005).start()
    try:
        index = feed.current()
        threading.Timer(0.1, lambda: setattr(cache, "version", 1)).start()
        started = time.monotonic()
        assert feed.wait_past(index, 60) > index
        assert time.monotonic() - started < 60 / 4  # woken by the change, not by the wait running out
        assert feed.wait_past(feed.current(), 0.05) == feed.current()  # a timeout returns the same index
    finally:
        feed.stop()
    started = time.monotonic()
    feed.wait_past(feed.current(), 60)
    assert time.monotonic() - started < 60 / 4  # a stopped feed releases waiters at once
