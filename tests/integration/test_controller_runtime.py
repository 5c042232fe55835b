"""The controller runtime against a real SQLite store: informers, workers, errors, compaction."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from swarmapply.api.store import NotFound, Store, WatchEvent
from swarmapply.controllers.informer import Handlers, Informer, diff_snapshot
from swarmapply.controllers.runtime import Controller, SecondaryKind, owner_keys
from swarmapply.controllers.workqueue import WorkQueue
from swarmapply.errors import PermanentError, TemporaryError
from tests.integration.helpers import Running, wait_for


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """SQLite only (the ``store`` fixture opens it): the runtime is the same on every backend."""
    return f"sqlite:///{tmp_path}/state.db"


def job(name: str, x: Any = 0) -> dict[str, Any]:
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"x": x},
    }


def set_x(store: Store, name: str, x: Any) -> None:
    obj = store.get("Job", name)
    obj["spec"]["x"] = x
    store.update(obj)


def copy_reconcile(store: Store) -> Callable[[str], None]:
    def reconcile(key: str) -> None:
        try:
            obj = store.get("Job", key)
        except NotFound:
            return
        if obj.get("status", {}).get("x") != obj["spec"]["x"]:
            obj["status"] = {**obj.get("status", {}), "x": obj["spec"]["x"]}
            store.update_status(obj)

    return reconcile


def converged(store: Store, names: set[str] | None = None) -> bool:
    items = store.list("Job").items
    if names is not None and {o["metadata"]["name"] for o in items} != names:
        return False
    return all(o.get("status", {}).get("x") == o["spec"]["x"] for o in items)


def caught_up(controller: Controller, store: Store) -> bool:
    """Every informer's cache equals the store and its handlers have run for the latest change.

    (Informer revisions only move with their own kind, so compare with the objects' versions.)
    """
    for informer in controller.informers.values():
        items = store.list(informer.kind).items
        newest = max((int(o["metadata"]["resourceVersion"]) for o in items), default=0)
        if informer.list() != items or informer.last_revision < newest:
            return False
    return True


def quiet(controller: Controller, store: Store) -> bool:
    return caught_up(controller, store) and controller.queue.idle()


# -- pure core -------------------------------------------------------------------------------


def test_diff_snapshot() -> None:
    def o(name: str, rv: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "resourceVersion": rv}}

    cache = {"a": o("a", "1"), "b": o("b", "2"), "c": o("c", "3")}
    changes = diff_snapshot(cache, [o("b", "2"), o("c", "9"), o("d", "10")])
    assert [(c.type, (c.old or c.new or {})["metadata"]["name"]) for c in changes] == [
        ("DELETED", "a"),
        ("MODIFIED", "c"),
        ("ADDED", "d"),
    ]


def test_owner_keys_maps_a_task_to_its_job() -> None:
    task = {
        "metadata": {"ownerReferences": [{"kind": "Job", "name": "j"}, {"kind": "X", "name": "y"}]}
    }
    assert list(owner_keys("Job")(task)) == ["j"]
    assert list(owner_keys("Job")({"metadata": {}})) == []


# -- informer --------------------------------------------------------------------------------


def test_informer_sees_changes_in_order_and_cache_equals_list(store: Store) -> None:
    store.create(job("pre", 1))
    seen: list[tuple[str, str, Any]] = []
    lock = threading.Lock()

    def record(type_: str) -> Callable[..., None]:
        def handler(*objs: dict[str, Any]) -> None:
            obj = objs[-1]
            with lock:
                seen.append((type_, obj["metadata"]["name"], obj["spec"]["x"]))

        return handler

    informer = Informer(
        store,
        "Job",
        handlers=[Handlers(record("ADDED"), record("MODIFIED"), record("DELETED"))],
        watch_timeout=0.2,
    )
    stop = threading.Event()
    thread = threading.Thread(target=informer.run, args=(stop,))
    thread.start()
    try:
        assert informer.wait_for_sync(5)
        store.create(job("a", 1))
        store.create(job("b", 1))
        set_x(store, "a", 2)
        store.delete("Job", "b")
        set_x(store, "pre", 3)
        wait_for(lambda: informer.last_revision >= store.revision(), what="informer caught up")
        assert seen == [
            ("ADDED", "pre", 1),
            ("ADDED", "a", 1),
            ("ADDED", "b", 1),
            ("MODIFIED", "a", 2),
            ("DELETED", "b", 1),
            ("MODIFIED", "pre", 3),
        ]
        assert informer.list() == store.list("Job").items
        assert informer.get("a") == store.get("Job", "a")
        assert informer.get("b") is None
    finally:
        stop.set()
        thread.join(2)
    assert not thread.is_alive()


def test_informer_retries_temporary_errors(store: Store) -> None:
    store.create(job("a", 1))

    class Flaky:
        def __init__(self) -> None:
            self.failures = 3

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def list(self, kind: str, *args: Any, **kwargs: Any) -> Any:
            if self.failures:
                self.failures -= 1
                raise TemporaryError("store briefly unavailable")
            return store.list(kind, *args, **kwargs)

    informer = Informer(Flaky(), "Job", retry_base=0.001)  # type: ignore[arg-type]
    stop = threading.Event()
    thread = threading.Thread(target=informer.run, args=(stop,))
    thread.start()
    try:
        assert informer.wait_for_sync(5)
        assert informer.failures == 3
        assert informer.keys() == ["a"]
    finally:
        stop.set()
        thread.join(2)


def test_informer_resync_reenqueues_every_key(store: Store) -> None:
    for name in ("a", "b"):
        store.create(job(name))
    resynced: list[str] = []
    informer = Informer(
        store,
        "Job",
        handlers=[Handlers(on_update=lambda old, new: resynced.append(new["metadata"]["name"]))],
        resync=0.05,
    )
    stop = threading.Event()
    thread = threading.Thread(target=informer.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: resynced.count("a") >= 2 and resynced.count("b") >= 2, what="resyncs")
    finally:
        stop.set()
        thread.join(2)


# -- controller ------------------------------------------------------------------------------


def test_controller_converges_many_objects_and_again_after_updates(store: Store) -> None:
    names = {f"job-{i:03d}" for i in range(60)}
    for i, name in enumerate(sorted(names)[:30]):
        store.create(job(name, i))
    controller = Controller("copier", store, "Job", copy_reconcile(store), workers=4)
    with Running(controller):
        for i, name in enumerate(sorted(names)[30:]):
            store.create(job(name, i))
        wait_for(lambda: converged(store, names), what="first convergence")
        for name in sorted(names)[::3]:
            set_x(store, name, "changed")
        wait_for(lambda: converged(store, names), what="convergence after updates")
        wait_for(lambda: quiet(controller, store), what="quiet")
        stats = controller.stats()
        assert stats.reconciles >= 60
        assert stats.errors == 0
        assert stats.successes == stats.reconciles
        assert stats.queue_depth == 0
        assert stats.latency_count == stats.reconciles
        assert stats.latency_max > 0 and stats.latency_sum > 0
        assert stats.latency_p50 <= stats.latency_p99 <= stats.latency_max


def test_each_key_is_processed_once_per_burst_of_changes(store: Store) -> None:
    calls: list[str] = []
    gate = threading.Event()
    blocked = threading.Event()

    def reconcile(key: str) -> None:
        calls.append(key)
        if key == "a" and not gate.is_set():
            blocked.set()
            assert gate.wait(5)

    controller = Controller("dedupe", store, "Job", reconcile, workers=3)
    with Running(controller):
        store.create(job("a"))
        assert blocked.wait(5)
        for i in range(10):
            set_x(store, "a", i)  # ten changes while "a" is being reconciled
        store.create(job("b"))
        for i in range(10):
            set_x(store, "b", i)
        wait_for(lambda: caught_up(controller, store), what="informer caught up")
        gate.set()
        wait_for(lambda: quiet(controller, store), what="quiet")
        assert calls.count("a") == 2  # once for the create, once for the whole burst
        assert "b" in calls  # (how often depends on how the informer batches b's changes)


def test_temporary_errors_are_retried_with_backoff_then_succeed(store: Store) -> None:
    attempts: list[float] = []
    inner = copy_reconcile(store)

    def reconcile(key: str) -> None:
        attempts.append(time.monotonic())
        if len(attempts) <= 4:
            raise TemporaryError("try again")
        inner(key)

    controller = Controller("flaky", store, "Job", reconcile, workers=2)
    store.create(job("a", 7))
    with Running(controller):
        wait_for(lambda: converged(store, {"a"}), what="convergence")
        wait_for(lambda: quiet(controller, store), what="quiet")
        stats = controller.stats()
        assert stats.temporary_errors == 4
        assert stats.successes >= 1
        assert controller.queue.num_requeues("a") == 0  # forgotten after success
    gaps = [b - a for a, b in itertools.pairwise(attempts[:5])]
    for gap, backoff in zip(gaps, [0.005, 0.01, 0.02, 0.04], strict=True):
        assert gap >= backoff * 0.9


def test_unexpected_errors_are_counted_and_requeued(store: Store) -> None:
    calls: list[str] = []

    def reconcile(key: str) -> None:
        calls.append(key)
        if len(calls) == 1:
            raise KeyError("bug")

    controller = Controller("buggy", store, "Job", reconcile)
    store.create(job("a"))
    with Running(controller):
        wait_for(lambda: len(calls) >= 2 and quiet(controller, store), what="retry")
        stats = controller.stats()
        assert stats.unexpected_errors == 1
        assert stats.successes == 1


def test_permanent_error_records_an_event_and_is_not_requeued(store: Store) -> None:
    calls: list[str] = []

    class Broken(PermanentError):
        pass

    def reconcile(key: str) -> None:
        calls.append(key)
        if key == "bad":
            raise Broken("spec.x is not a number")

    controller = Controller("strict", store, "Job", reconcile)
    bad = store.create(job("bad", "x"))
    with Running(controller):
        store.create(job("good"))
        wait_for(lambda: len(store.list("Event").items) == 1, what="an Event")
        wait_for(lambda: quiet(controller, store) and "good" in calls, what="quiet")
        assert calls.count("bad") == 1
        assert controller.stats().permanent_errors == 1
    (event,) = store.list("Event").items
    assert event["metadata"]["name"].startswith("bad-")
    assert event["involvedObject"] == {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Job",
        "name": "bad",
        "uid": bad["metadata"]["uid"],
    }
    assert event["type"] == "Warning"
    assert event["reason"] == "ReconcileFailed"
    assert event["message"] == "spec.x is not a number"
    assert event["source"] == {"component": "strict"}
    assert event["count"] == 1
    assert event["firstTimestamp"] == event["lastTimestamp"]


def test_secondary_kind_enqueues_its_owner(store: Store) -> None:
    calls: list[str] = []
    controller = Controller(
        "owner",
        store,
        "Job",
        calls.append,
        secondaries=[SecondaryKind("Task", owner_keys("Job"))],
    )
    owner = store.create(job("j"))
    with Running(controller):
        wait_for(lambda: calls.count("j") == 1 and quiet(controller, store), what="first")
        store.create(
            {
                "apiVersion": "swarmapply.io/v1",
                "kind": "Task",
                "metadata": {
                    "name": "j-0",
                    "ownerReferences": [
                        {
                            "apiVersion": "swarmapply.io/v1",
                            "kind": "Job",
                            "name": "j",
                            "uid": owner["metadata"]["uid"],
                        }
                    ],
                },
                "spec": {},
            }
        )
        wait_for(lambda: calls.count("j") == 2 and quiet(controller, store), what="via task")


class PausableStore:
    """A store whose watches can be held, so that compaction overtakes them."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.paused = threading.Event()
        self.blocked = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def watch(
        self,
        kind: str | None,
        since: int,
        *,
        stop: threading.Event | None = None,
        timeout: float | None = None,
    ) -> Iterator[WatchEvent]:
        inner = self._store.watch(kind, since, stop=stop, timeout=timeout)
        while True:
            while self.paused.is_set() and not (stop is not None and stop.is_set()):
                self.blocked.set()
                time.sleep(0.005)
            try:
                event = next(inner)
            except StopIteration:
                return
            yield event


def test_relists_after_compaction_without_losing_objects(store: Store) -> None:
    paused = PausableStore(store)
    names = {f"j{i}" for i in range(20)}
    for name in names:
        store.create(job(name, 1))
    controller = Controller(
        "compact",
        paused,
        "Job",
        copy_reconcile(store),
        workers=3,  # type: ignore[arg-type]
    )
    with Running(controller):
        wait_for(lambda: converged(store, names), what="convergence")
        paused.paused.set()
        set_x(store, "j0", 2)  # wakes a watch that is waiting for changes
        assert paused.blocked.wait(5)
        for name in ("j1", "j2", "j3"):
            store.delete("Job", name)
        for name in ("j4", "j5", "j6"):
            set_x(store, name, 5)
        for name in ("n1", "n2", "n3"):
            store.create(job(name, 9))
        store.compact(store.revision())
        paused.paused.clear()
        expected = (names - {"j1", "j2", "j3"}) | {"n1", "n2", "n3"}
        wait_for(lambda: controller.primary.relists >= 1, what="a relist")
        wait_for(lambda: converged(store, expected), what="convergence after relist")
        wait_for(lambda: quiet(controller, store), what="quiet")
        assert controller.primary.list() == store.list("Job").items
        assert set(controller.primary.keys()) == expected


def test_shuts_down_within_a_second(store: Store) -> None:
    for i in range(20):
        store.create(job(f"j{i}", i))
    gate = threading.Event()

    def reconcile(key: str) -> None:
        gate.wait(0.2)  # an in-flight reconcile that takes a while

    controller = Controller("slow", store, "Job", reconcile, workers=2, queue=WorkQueue())
    stop = threading.Event()
    thread = threading.Thread(target=controller.run, args=(stop,))
    thread.start()
    assert controller.wait_started(5)
    wait_for(lambda: controller.queue.processing > 0, what="reconciles in flight")
    started = time.monotonic()
    stop.set()
    thread.join(2)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1.0
    reconciles = controller.stats().reconciles
    assert reconciles < 20  # no draining of the remaining keys
