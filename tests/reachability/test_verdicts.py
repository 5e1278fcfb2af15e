"""Verdicts against a model: the state machine of docs/reachability.md, checked on random round sequences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.reachability.verdicts import Change, State, Thresholds, Verdicts

OWN, OTHER = "cluster-1", "cluster-2"
ADDRESSES = ("10.2.0.1:50002", "10.2.0.2:50002", "10.2.0.3:50002", "10.2.0.4:50002")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


rounds = st.lists(st.lists(st.booleans(), min_size=1, max_size=4), max_size=40)


@settings(max_examples=300, deadline=None)
@given(rounds, st.integers(1, 4), st.integers(1, 4))
def test_cluster_verdict_follows_the_model(sequence: list[list[bool]], bad_after: int, good_after: int) -> None:
    """Unreachable after N all-failed rounds in a row, back after M rounds with any success, never
    for the caller's own cluster; the gate's view always equals the records' states."""
    clock = Clock()
    verdicts = Verdicts(OWN, Thresholds(bad_after, good_after, eject_after=100), clock=clock, monotonic=clock)
    model_state, bad, good = State.REACHABLE, 0, 0
    for oks in sequence:
        clock.now += 5
        results = {a: (None if ok else "refused") for a, ok in zip(ADDRESSES, oks, strict=False)}
        verdicts.record_round(OTHER, results, known=len(ADDRESSES))
        verdicts.record_round(OWN, results, known=len(ADDRESSES))
        if any(oks):
            bad, good = 0, good + 1
            if model_state is State.UNREACHABLE and good >= good_after:
                model_state = State.REACHABLE
        else:
            bad, good = bad + 1, 0
            if model_state is State.REACHABLE and bad >= bad_after:
                model_state = State.UNREACHABLE
        assert verdicts.clusters[OTHER].state is model_state
        assert verdicts.clusters[OWN].state is State.REACHABLE
        assert verdicts.view.unreachable == ({OTHER} if model_state is State.UNREACHABLE else set())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ADDRESSES), st.booleans()), max_size=60), st.integers(1, 3),
       st.integers(0, 100))
def test_ejection_never_exceeds_the_cap_and_needs_consecutive_failures(
        probes: list[tuple[str, bool]], eject_after: int, percent: int) -> None:
    clock = Clock()
    verdicts = Verdicts(OWN, Thresholds(eject_after=eject_after, max_ejected_percent=percent, ejection_time=60),
                        clock=clock, monotonic=clock)
    healthy = "10.2.0.9:50002"  # keeps every round good: failures count against endpoints, not the cluster
    streak: dict[str, int] = {}
    cap = 0 if percent == 0 else max(1, 100 * percent // 100)
    for address, ok in probes:
        clock.now += 1
        before = verdicts.ejected_now(OTHER)
        verdicts.record_round(OTHER, {healthy: None, address: None if ok else "refused"}, known=100)
        streak[address] = 0 if ok else streak.get(address, 0) + 1
        ejected = verdicts.ejected_now(OTHER)
        assert len(ejected) <= cap
        for newly in ejected - before:
            assert streak[newly] >= eject_after


def test_an_ejection_ends_and_a_repeat_lasts_longer() -> None:
    clock = Clock()
    verdicts = Verdicts(OWN, Thresholds(eject_after=2, ejection_time=30, max_ejected_percent=50), clock=clock,
                        monotonic=clock)
    bad, good = ADDRESSES[0], ADDRESSES[1]
    for _ in range(2):
        verdicts.record_round(OTHER, {bad: "refused", good: None}, known=4)
    assert verdicts.ejected_now(OTHER) == {bad}
    clock.now += 29
    assert not verdicts.expire()
    clock.now += 2
    assert [c.what for c in verdicts.expire()] == ["returned"]
    assert not verdicts.ejected_now(OTHER)
    verdicts.record_round(OTHER, {bad: "refused", good: None}, known=4)  # one more failure is enough now
    assert verdicts.ejected_now(OTHER) == {bad}
    assert verdicts.endpoints[OTHER][bad].ejected_until == clock.now + 60  # 30 s × the second ejection


def test_failures_in_a_bad_round_are_the_clusters_not_the_endpoints() -> None:
    verdicts = Verdicts(OWN, Thresholds(unreachable_after=5, eject_after=1, max_ejected_percent=100))
    verdicts.record_round(OTHER, {a: "timed out" for a in ADDRESSES}, known=4)
    assert not verdicts.ejected_now(OTHER)
    assert verdicts.clusters[OTHER].bad_rounds == 1


def test_forgotten_clusters_stop_gating_and_fail_open_needs_every_other_cluster() -> None:
    verdicts = Verdicts(OWN, Thresholds(unreachable_after=1))
    verdicts.record_round(OTHER, {ADDRESSES[0]: "timed out"}, known=1)
    verdicts.record_round(OWN, {"10.1.0.1:50002": None}, known=1)
    assert verdicts.all_others_unreachable()
    verdicts.record_round("cluster-3", {"10.3.0.1:50002": None}, known=1)
    assert not verdicts.all_others_unreachable()
    version = verdicts.version
    verdicts.forget({OWN, "cluster-3"})
    assert verdicts.view.unreachable == frozenset() and verdicts.version > version


def test_a_round_of_suspects_alone_does_not_count_against_the_cluster() -> None:
    verdicts = Verdicts(OWN, Thresholds(unreachable_after=1))
    verdicts.record_round(OTHER, {ADDRESSES[0]: "refused"}, known=4, suspects=frozenset({ADDRESSES[0]}))
    assert verdicts.clusters[OTHER].bad_rounds == 0 and not verdicts.view.unreachable
    verdicts.record_round(OTHER, {ADDRESSES[0]: "refused", ADDRESSES[1]: "refused"}, known=4,
                          suspects=frozenset({ADDRESSES[0]}))
    assert verdicts.view.unreachable == {OTHER}  # a fresh draw failed too


def test_an_ejected_endpoint_that_leaves_the_registry_is_reported_gone() -> None:
    changes: list[Change] = []
    verdicts = Verdicts(OWN, Thresholds(eject_after=1, max_ejected_percent=50), on_change=changes.append)
    verdicts.record_round(OTHER, {ADDRESSES[0]: "refused", ADDRESSES[1]: None}, known=4)
    assert verdicts.ejected_now(OTHER) == {ADDRESSES[0]}
    verdicts.prune(OTHER, {ADDRESSES[1]})
    assert changes[-1].what == "gone" and not verdicts.ejected_now(OTHER)
