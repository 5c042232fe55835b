"""Leader election and the controller manager against real stores (SQLite and MongoDB).

Every candidate gets its own store connection, as separate processes would. A shared
:class:`Terms` records every leadership term, so each test also checks that no two terms of
one Lease ever overlapped. Lease 1.0 s, renew 0.2 s: the renew deadline is about 0.73 s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest

from swarmapply.api.store import Store, StoreUnavailable
from swarmapply.controllers.leader import ElectorStats, LeaderElector
from swarmapply.controllers.manager import ControllerManager, Runnable, run_controllers
from swarmapply.controllers.settings import ControllerSettings
from tests.integration.helpers import wait_for

LEASE = "controller-test"
DURATION = 1.0
RENEW = 0.2
SETTINGS = ControllerSettings(lease_duration=DURATION, renew_interval=RENEW)


@pytest.fixture
def stores(store_url: str, open_test_store: Callable[[str], Store]) -> Callable[[], Store]:
    """Opens another connection to the test's store on each call; all closed after the test."""
    return partial(open_test_store, store_url)


class CuttableStore:
    """A store whose connection can be cut: every call then raises StoreUnavailable."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.cut = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.cut:
                raise StoreUnavailable("connection cut by the test")
            return attribute(*args, **kwargs)

        return call


class BarrierStore(CuttableStore):
    """Holds the first call of ``method`` of every candidate at a barrier: they race at once."""

    def __init__(self, store: Store, method: str, barrier: threading.Barrier) -> None:
        super().__init__(store)
        self._method = method
        self._barrier = barrier
        self._waited = False

    def __getattr__(self, name: str) -> Any:
        call = super().__getattr__(name)
        if name != self._method or self._waited:
            return call

        def raced(*args: Any, **kwargs: Any) -> Any:
            self._waited = True
            self._barrier.wait()
            return call(*args, **kwargs)

        return raced


@dataclass
class Term:
    identity: str
    started: float
    stop_seen: float | None = None
    ended: float | None = None


@dataclass
class Terms:
    """Every leadership term of the test, and whether two ever overlapped."""

    terms: list[Term] = field(default_factory=list)
    active: set[str] = field(default_factory=set)
    overlaps: list[set[str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def lead(self, identity: str) -> Callable[[threading.Event], None]:
        def lead(term_stop: threading.Event) -> None:
            with self.lock:
                term = Term(identity, time.monotonic())
                self.terms.append(term)
                self.active.add(identity)
                if len(self.active) > 1:
                    self.overlaps.append(set(self.active))
            term_stop.wait()
            term.stop_seen = time.monotonic()
            with self.lock:
                self.active.discard(identity)
                term.ended = time.monotonic()

        return lead

    def of(self, identity: str) -> list[Term]:
        with self.lock:
            return [term for term in self.terms if term.identity == identity]


class Candidate:
    """One elector campaigning on its own thread, with its own (cuttable) store connection."""

    def __init__(self, store: CuttableStore, identity: str, terms: Terms) -> None:
        self.store = store
        self.elector = LeaderElector(
            store,  # type: ignore[arg-type]
            LEASE,
            identity,
            lease_duration=DURATION,
            renew_interval=RENEW,
        )
        self.identity = identity
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self.elector.run, args=(self.stop, terms.lead(identity)), daemon=True
        )
        self.thread.start()

    @property
    def stats(self) -> ElectorStats:
        return self.elector.stats()

    def leads(self, timeout: float = 5.0) -> bool:
        return self.elector.wait_until(lambda s: s.is_leader, timeout)

    def halt(self, timeout: float = 5.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.identity} did not stop"


@pytest.fixture
def terms() -> Iterator[Terms]:
    recorded = Terms()
    yield recorded
    assert recorded.overlaps == [], "two candidates led at the same time"


@pytest.fixture
def candidates(stores: Callable[[], Store], terms: Terms) -> Iterator[Callable[..., Candidate]]:
    started: list[Candidate] = []

    def start(identity: str, store: CuttableStore | None = None) -> Candidate:
        started.append(Candidate(store or CuttableStore(stores()), identity, terms))
        return started[-1]

    yield start
    for candidate in started:
        candidate.store.cut = False
        candidate.halt()


def lease_spec(store: Store) -> dict[str, Any]:
    spec: dict[str, Any] = store.get("Lease", LEASE)["spec"]
    return spec


def test_exactly_one_leads_and_a_graceful_stop_hands_over_at_once(
    stores: Callable[[], Store], candidates: Callable[..., Candidate], terms: Terms
) -> None:
    a, b = candidates("a"), candidates("b")
    wait_for(lambda: a.stats.is_leader or b.stats.is_leader, what="a leader")
    for _ in range(25):  # sampled over a few renewals
        assert [a.stats.is_leader, b.stats.is_leader].count(True) == 1
        time.sleep(0.02)
    leader, follower = (a, b) if a.stats.is_leader else (b, a)
    assert follower.stats.holder == leader.identity
    started = time.monotonic()
    leader.halt()
    assert follower.leads()
    assert time.monotonic() - started < RENEW + 0.4
    (old_term,) = terms.of(leader.identity)
    assert old_term.stop_seen is not None
    wait_for(lambda: bool(terms.of(follower.identity)), what="the follower's term")
    assert old_term.ended is not None and old_term.ended <= terms.of(follower.identity)[0].started
    assert leader.stats.released == 1 and leader.stats.lost == 0
    spec = lease_spec(stores())
    assert spec["holderIdentity"] == follower.identity
    assert spec["leaseTransitions"] == 1


def test_a_crashed_leader_is_replaced_after_the_lease_duration(
    stores: Callable[[], Store], candidates: Callable[..., Candidate], terms: Terms
) -> None:
    a = candidates("a")
    assert a.leads()
    b = candidates("b")
    b.elector.wait_until(lambda s: s.holder == "a", 5)
    time.sleep(RENEW * 2)  # b has seen a renew
    cut = time.monotonic()
    a.store.cut = True  # a can neither renew nor release: as if it had died
    assert b.leads(DURATION + 2 * RENEW + 1.0)
    took = time.monotonic() - cut
    assert DURATION - RENEW - 0.05 <= took <= DURATION + 2 * RENEW + 0.3
    (a_term,) = terms.of("a")
    assert a_term.stop_seen is not None, "the lost leader's lead() was not told to stop"
    assert a_term.stop_seen - cut <= a.elector.renew_deadline + 0.1
    assert a.stats.lost == 1 and not a.stats.is_leader
    a.store.cut = False  # a comes back and finds b leading
    a.elector.wait_until(lambda s: s.holder == "b", 5)
    assert not a.stats.is_leader
    assert lease_spec(stores())["leaseTransitions"] == 1


def test_lease_transitions_count_changes_of_holder(
    stores: Callable[[], Store], candidates: Callable[..., Candidate]
) -> None:
    store = stores()
    a = candidates("a")
    assert a.leads()
    first = lease_spec(store)
    assert first["leaseTransitions"] == 0 and first["leaseDurationSeconds"] == 1
    time.sleep(RENEW * 2)
    renewed = lease_spec(store)
    assert renewed["renewTime"] > first["renewTime"]
    assert renewed["acquireTime"] == first["acquireTime"]
    assert renewed["leaseTransitions"] == 0

    b = candidates("b")
    b.elector.wait_until(lambda s: s.holder == "a", 5)
    a.halt()
    assert b.leads()
    second = lease_spec(store)
    assert second["holderIdentity"] == "b" and second["leaseTransitions"] == 1
    assert second["acquireTime"] > first["acquireTime"]

    c = candidates("c")
    c.elector.wait_until(lambda s: s.holder == "b", 5)
    b.store.cut = True
    assert c.leads(DURATION + 2 * RENEW + 1.0)
    third = lease_spec(store)
    assert third["holderIdentity"] == "c" and third["leaseTransitions"] == 2
    assert c.stats.transitions == 2  # it saw b, then itself


def test_candidates_racing_to_create_the_lease(
    stores: Callable[[], Store], candidates: Callable[..., Candidate]
) -> None:
    barrier = threading.Barrier(4, timeout=10)
    racers = [candidates(f"r{i}", BarrierStore(stores(), "create", barrier)) for i in range(4)]
    wait_for(lambda: any(r.stats.is_leader for r in racers), what="a leader")
    wait_for(lambda: all(r.stats.holder for r in racers), what="all to see the holder")
    leaders = [r for r in racers if r.stats.is_leader]
    assert len(leaders) == 1
    assert {r.stats.holder for r in racers} == {leaders[0].identity}
    assert all(r.thread.is_alive() for r in racers)
    assert lease_spec(stores())["leaseTransitions"] == 0


def test_candidates_racing_for_an_expired_lease(
    stores: Callable[[], Store], candidates: Callable[..., Candidate]
) -> None:
    store = stores()
    store.create(
        {
            "apiVersion": "swarmapply.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE},
            "spec": {
                "holderIdentity": "ghost",
                "leaseDurationSeconds": 1,
                "renewTime": "2020-01-01T00:00:00Z",
                "leaseTransitions": 3,
            },
        }
    )
    barrier = threading.Barrier(3, timeout=10)
    racers = [candidates(f"r{i}", BarrierStore(stores(), "update", barrier)) for i in range(3)]
    time.sleep(DURATION / 2)  # the old renewTime is ignored: each waits a lease duration
    assert not any(r.stats.is_leader for r in racers)
    wait_for(lambda: any(r.stats.is_leader for r in racers), what="a leader")
    time.sleep(RENEW)
    assert [r.stats.is_leader for r in racers].count(True) == 1
    assert lease_spec(store)["leaseTransitions"] == 4


def test_store_errors_while_following_are_retried(
    candidates: Callable[..., Candidate],
) -> None:
    a = candidates("a")
    assert a.leads()
    b = candidates("b")
    b.elector.wait_until(lambda s: s.holder == "a", 5)
    b.store.cut = True
    time.sleep(RENEW * 2.5)
    assert b.thread.is_alive() and not b.stats.is_leader
    b.store.cut = False
    a.halt()
    assert b.leads()


def test_a_leader_whose_work_ends_releases_and_campaigns_again(
    stores: Callable[[], Store],
) -> None:
    calls: list[float] = []

    def lead(term_stop: threading.Event) -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("boom")

    elector = LeaderElector(stores(), LEASE, "solo", lease_duration=DURATION, renew_interval=RENEW)
    stop = threading.Event()
    thread = threading.Thread(target=elector.run, args=(stop, lead), daemon=True)
    thread.start()
    try:
        assert elector.wait_until(lambda s: s.terms >= 3, 5)
        assert elector.stats().released >= 2
        assert calls[1] - calls[0] >= RENEW - 0.01  # it waits a renew interval between terms
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert lease_spec(stores())["holderIdentity"] == ""


# -- the manager -----------------------------------------------------------------------------


@dataclass
class FakeController:
    name: str
    manager: str
    running: dict[str, list[str]]
    lock: threading.Lock

    def run(self, stop: threading.Event) -> None:
        with self.lock:
            self.running.setdefault(self.name, []).append(self.manager)
        try:
            stop.wait()
        finally:
            with self.lock:
                self.running[self.name].remove(self.manager)


class Fleet:
    """Records which manager runs which fake controller."""

    def __init__(self) -> None:
        self.running: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        self.max_instances = 0

    def factory(self, name: str, manager: str) -> Callable[[Store, ControllerSettings], Runnable]:
        def build(store: Store, settings: ControllerSettings) -> Runnable:
            assert settings is SETTINGS
            return FakeController(name, manager, self.running, self.lock)

        return build

    def where(self, name: str) -> list[str]:
        with self.lock:
            instances = list(self.running.get(name, []))
        self.max_instances = max(self.max_instances, len(instances))
        return instances


def test_two_managers_run_each_controller_exactly_once(stores: Callable[[], Store]) -> None:
    fleet = Fleet()
    managers: dict[str, tuple[ControllerManager, threading.Event, threading.Thread]] = {}
    for who in ("m1", "m2"):
        manager = ControllerManager(
            stores(),
            None,
            SETTINGS,
            factories={name: fleet.factory(name, who) for name in ("a", "b")},
            identity=who,
        )
        stop = threading.Event()
        thread = threading.Thread(target=manager.run, args=(stop,), daemon=True)
        thread.start()
        managers[who] = (manager, stop, thread)
    try:
        wait_for(lambda: len(fleet.where("a")) == 1 and len(fleet.where("b")) == 1)
        for _ in range(20):
            assert len(fleet.where("a")) == 1 and len(fleet.where("b")) == 1
            time.sleep(0.02)
        (owner,) = fleet.where("a")
        other = "m2" if owner == "m1" else "m1"
        assert managers[owner][0].running().count("a") == 1
        _, stop, thread = managers[owner]
        stop.set()
        thread.join(5)
        assert not thread.is_alive(), "the stopped manager did not return"
        wait_for(lambda: fleet.where("a") == [other] and fleet.where("b") == [other], 2.0)
        assert managers[other][0].running() == ["a", "b"]
    finally:
        for _, stop, thread in managers.values():
            stop.set()
            thread.join(5)
    assert fleet.max_instances == 1
    assert fleet.where("a") == [] and fleet.where("b") == []


def test_a_failing_controller_does_not_stop_the_others(
    stores: Callable[[], Store], caplog: pytest.LogCaptureFixture
) -> None:
    fleet = Fleet()
    builds: list[str] = []

    def broken(store: Store, settings: ControllerSettings) -> Runnable:
        builds.append("bad")
        if len(builds) % 2:
            raise RuntimeError("cannot build")
        return FailingController()

    stop = threading.Event()
    thread = threading.Thread(
        target=run_controllers,
        args=(stores(), ["good", "bad"], SETTINGS, stop),
        kwargs={"factories": {"good": fleet.factory("good", "m"), "bad": broken}},
        daemon=True,
    )
    with caplog.at_level(logging.INFO, logger="swarmapply"):
        thread.start()
        try:
            wait_for(lambda: len(builds) >= 4, what="the broken controller to be retried")
            assert fleet.where("good") == ["m"]
        finally:
            stop.set()
            thread.join(5)
    assert not thread.is_alive()
    messages = [r.getMessage() for r in caplog.records]
    assert "controller bad: could not be created" in messages
    assert "controller bad: stopped by an error" in messages
    assert fleet.where("good") == []


class FailingController:
    name = "bad"

    def run(self, stop: threading.Event) -> None:
        raise RuntimeError("crashed")


def test_unknown_controller_names_are_refused(stores: Callable[[], Store]) -> None:
    fleet = Fleet()
    with pytest.raises(ValueError, match="unknown controller 'c'; known: a, b"):
        run_controllers(
            stores(),
            ["a", "c"],
            SETTINGS,
            threading.Event(),
            factories={"a": fleet.factory("a", "m"), "b": fleet.factory("b", "m")},
        )


def test_without_election_every_controller_runs(stores: Callable[[], Store]) -> None:
    fleet = Fleet()
    store = stores()
    manager = ControllerManager(
        store, ["a"], SETTINGS, factories={"a": fleet.factory("a", "m")}, elect=False
    )
    stop = threading.Event()
    thread = threading.Thread(target=manager.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: fleet.where("a") == ["m"])
        assert manager.electors == {}
        assert store.list("Lease").items == []
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
