"""The scheduler against a real store: bindings, waiting reasons, Events, allocation, preemption.

Nodes are declared as Node objects with a Ready status, Jobs and their Tasks are created as the
job controller would (see ``scheduler_objects``), and the allocation invariant is checked after
every step. Main flows run on SQLite and on a MongoDB wire-protocol server.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from swarmapply.api.quantity import parse_cpuset
from swarmapply.api.store import Conflict, Store
from swarmapply.controllers.scheduler import BindingFailed, Scheduler
from swarmapply.controllers.settings import SchedulerSettings
from tests.integration.helpers import in_thread, seconds_until, wait_for
from tests.integration.scheduler_objects import (
    MI,
    add_job,
    add_node,
    add_task,
    assert_allocation_invariant,
    binding,
    checked,
    set_phase,
    task_entry,
)

Object = dict[str, Any]
PREEMPT = SchedulerSettings(strategy="priority", preemption=True)


@pytest.fixture
def store(tmp_path: Path, open_test_store: Callable[[str], Store]) -> Store:
    """SQLite only, for what does not depend on the backend."""
    return open_test_store(f"sqlite:///{tmp_path}/state.db")


@pytest.fixture
def any_store(store_url: str, open_test_store: Callable[[str], Store]) -> Store:
    """Each backend in turn, for the main flows."""
    return open_test_store(store_url)


def step(scheduler: Scheduler) -> int:
    """One pass, then the invariant."""
    bound = scheduler.schedule_once()
    assert_allocation_invariant(scheduler.store)
    return bound


def events(store: Store, kind: str, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events about an object, oldest first."""
    uid = store.get(kind, name)["metadata"]["uid"]
    items = store.list("Event", field_selector=f"involvedObject.uid={uid}").items
    items.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [(e["type"], e["reason"], e["message"]) for e in items]


def scheduled(store: Store, task: str) -> Object | None:
    """The Task's Scheduled condition."""
    for condition in (store.get("Task", task).get("status") or {}).get("conditions") or []:
        if condition["type"] == "Scheduled":
            return dict(condition)
    return None


def allocated(store: Store, node: str) -> Object:
    return dict(store.get("Node", node)["status"]["allocated"])


@contextlib.contextmanager
def running(scheduler: Scheduler) -> Iterator[Scheduler]:
    """Scheduler.run on a thread; on exit, stop it and wait until it has returned."""
    with in_thread(scheduler.run, "Scheduler.run", 5):
        yield scheduler


# -- binding and allocation -----------------------------------------------------------------------


def test_binds_a_whole_job_and_writes_the_allocation_view(any_store: Store) -> None:
    store = any_store
    add_node(store, "n1", 4)
    add_node(store, "n2", 4)
    assert_allocation_invariant(store)
    add_job(store, "web", [task_entry("a", 2, 64 * MI), task_entry("b", 3, 128 * MI)])
    scheduler = Scheduler(store)
    assert step(scheduler) == 2
    # Largest task first: 3 cores on n1; the 2-core task no longer fits beside it.
    assert binding(store, "web-b") == ("n1", "0-2")
    assert binding(store, "web-a") == ("n2", "0-1")
    for name in ("web-a", "web-b"):
        task = checked(store.get("Task", name))
        assert task["status"]["phase"] == "Scheduled"
        assert task["status"]["memory"] == task["spec"]["memory"]
        condition = scheduled(store, name)
        assert condition is not None
        assert (condition["status"], condition["reason"]) == ("True", "Scheduled")
    assert allocated(store, "n1") == {
        "cores": 3,
        "memory": 128 * MI,
        "cpuset": "0-2",
        "tasks": [{"task": "web-b", "job": "web", "cpuset": "0-2", "memory": 128 * MI}],
    }
    assert allocated(store, "n2")["tasks"] == [
        {"task": "web-a", "job": "web", "cpuset": "0-1", "memory": 64 * MI}
    ]
    assert events(store, "Job", "web") == []
    revision = store.revision()
    assert step(scheduler) == 0
    assert store.revision() == revision, "a pass with nothing to do wrote something"


def test_a_finished_task_frees_its_cores_for_a_waiting_job(any_store: Store) -> None:
    store = any_store
    add_node(store, "n1", 4)
    add_job(store, "first", [task_entry("a", 4)])
    scheduler = Scheduler(store)
    assert step(scheduler) == 1
    add_job(store, "second", [task_entry("a", 2), task_entry("b", 2)])
    assert step(scheduler) == 0
    assert binding(store, "second-a") == (None, None)
    assert store.get("Task", "second-a")["status"]["reason"] == "Unschedulable"
    set_phase(store, "first-a", "Running")
    assert_allocation_invariant(store)
    assert step(scheduler) == 0
    set_phase(store, "first-a", "Succeeded")
    assert_allocation_invariant(store)
    assert step(scheduler) == 2
    assert {binding(store, "second-a"), binding(store, "second-b")} == {
        ("n1", "0-1"),
        ("n1", "2-3"),
    }
    condition = scheduled(store, "second-a")
    assert condition is not None and condition["status"] == "True"
    assert "reason" not in store.get("Task", "second-a")["status"]
    view = allocated(store, "n1")
    assert (view["cores"], view["cpuset"]) == (4, "0-3")
    assert [t["task"] for t in view["tasks"]] == ["second-a", "second-b"]
    set_phase(store, "second-a", "Failed")
    step(scheduler)
    assert allocated(store, "n1")["tasks"] == [
        {
            "task": "second-b",
            "job": "second",
            "cpuset": binding(store, "second-b")[1],
            "memory": 64 * MI,
        }
    ]


class _FailingBinding:
    """A store whose binding writes of one Task conflict (as if its agent wrote meanwhile)."""

    def __init__(self, store: Store, task: str) -> None:
        self.store = store
        self.task = task

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def update_status(self, obj: Object) -> Object:
        name = obj["metadata"]["name"]
        if obj["kind"] == "Task" and name == self.task and (obj.get("status") or {}).get("node"):
            raise Conflict("Task", self.task, obj["metadata"]["resourceVersion"], "0")
        return self.store.update_status(obj)


def test_a_job_is_unbound_again_when_one_of_its_bindings_fails(store: Store) -> None:
    add_node(store, "n1", 4)
    add_job(store, "web", [task_entry("a", 2), task_entry("b", 1)])
    before = store.get("Task", "web-a")["metadata"]["resourceVersion"]
    failing = Scheduler(cast(Store, _FailingBinding(store, "web-b")))
    with pytest.raises(BindingFailed, match="job web"):
        failing.schedule_once()
    assert store.get("Task", "web-a")["metadata"]["resourceVersion"] != before  # bound, undone
    assert binding(store, "web-a") == binding(store, "web-b") == (None, None)
    assert_allocation_invariant(store)
    assert step(Scheduler(store)) == 2


def test_a_gang_is_refused_without_placing_any_part(store: Store) -> None:
    for name in ("n1", "n2", "n3"):
        add_node(store, name, 4)
    add_job(store, "big", [task_entry("small", 1), task_entry("huge", 5)])
    scheduler = Scheduler(store)
    assert step(scheduler) == 0
    message = "0/3 nodes can run task big-huge of job big: 3 have too few cores (need 5)"
    for name in ("big-small", "big-huge"):
        status = store.get("Task", name)["status"]
        assert "node" not in status and "cpuset" not in status
        assert (status["phase"], status["reason"], status["message"]) == (
            "Pending",
            "Unschedulable",
            message,
        )
        condition = scheduled(store, name)
        assert condition is not None
        assert (condition["status"], condition["reason"], condition["message"]) == (
            "False",
            "Unschedulable",
            message,
        )
    assert all(allocated(store, n)["cores"] == 0 for n in ("n1", "n2", "n3"))


def test_one_failed_scheduling_event_per_distinct_reason(any_store: Store) -> None:
    store = any_store
    for name in ("n1", "n2", "n3"):
        add_node(store, name, 2)
    add_job(store, "big", [task_entry("a", 3), task_entry("b", 1)])
    scheduler = Scheduler(store)
    step(scheduler)
    first = "0/3 nodes can run task big-a of job big: 3 have too few cores (need 3)"
    assert events(store, "Job", "big") == [("Warning", "FailedScheduling", first)]
    revision = store.revision()
    step(scheduler)
    step(scheduler)
    assert events(store, "Job", "big") == [("Warning", "FailedScheduling", first)]
    assert store.revision() == revision, "a pass with no change wrote something"
    # Cordoning a node changes the reason: exactly one more Event.
    node = store.get("Node", "n3")
    store.update({**node, "spec": {"unschedulable": True}})
    step(scheduler)
    step(scheduler)
    second = (
        "0/3 nodes can run task big-a of job big: 2 have too few cores (need 3), 1 is unschedulable"
    )
    assert events(store, "Job", "big") == [
        ("Warning", "FailedScheduling", first),
        ("Warning", "FailedScheduling", second),
    ]
    condition = scheduled(store, "big-b")
    assert condition is not None and condition["message"] == second


def test_only_ready_schedulable_nodes_get_tasks(store: Store) -> None:
    add_node(store, "a-not-ready", 8, ready=False)
    add_node(store, "b-no-condition", 8, ready=None)
    add_node(store, "c-cordoned", 8, unschedulable=True)
    add_node(store, "d-ready", 2)
    add_job(store, "one", [task_entry("a", 2)])
    add_job(store, "two", [task_entry("a", 2)])
    scheduler = Scheduler(store)
    assert step(scheduler) == 1
    assert binding(store, "one-a") == ("d-ready", "0-1")
    assert binding(store, "two-a") == (None, None)
    assert store.get("Task", "two-a")["status"]["message"] == (
        "0/4 nodes can run task two-a of job two: 1 has too few free cores (need 2), "
        "2 are not Ready, 1 is unschedulable"
    )
    # The node turns Ready: the waiting job goes there.
    node = store.get("Node", "a-not-ready")
    node["status"]["conditions"][0]["status"] = "True"
    store.update_status(node)
    assert step(scheduler) == 1
    assert binding(store, "two-a") == ("a-not-ready", "0-1")


@pytest.mark.parametrize(
    ("pin", "reason"),
    [
        (
            {"node": "n9"},
            "node n9 does not exist (task pinned-a of job pinned is pinned to it)",
        ),
        (
            {"node": "n1", "cpuset": "3-4"},
            "core 4 of node n1 does not exist (task pinned-a of job pinned is pinned to it; "
            "the node has cores 0-3)",
        ),
        (
            {"node": "n1", "cpuset": "1-2"},
            "core 1 of node n1 is not free (task pinned-a of job pinned is pinned to it)",
        ),
    ],
    ids=["node-missing", "cores-missing", "cores-taken"],
)
def test_pins_are_validated_and_the_job_waits_with_the_reason(
    store: Store, pin: dict[str, str], reason: str
) -> None:
    add_node(store, "n1", 4)
    add_job(store, "holder", [task_entry("a", 1, node="n1", cpuset="1")])
    scheduler = Scheduler(store)
    assert step(scheduler) == 1
    cpuset = pin.get("cpuset")
    cores = len(parse_cpuset(cpuset)) if cpuset else 1
    add_job(store, "pinned", [task_entry("a", cores, node=pin["node"], cpuset=cpuset)])
    assert step(scheduler) == 0
    assert store.get("Task", "pinned-a")["status"]["message"] == reason
    assert events(store, "Job", "pinned") == [("Warning", "FailedScheduling", reason)]


def test_a_pin_to_free_cores_is_honoured(store: Store) -> None:
    add_node(store, "n1", 4)
    add_node(store, "n2", 4)
    add_job(
        store,
        "pinned",
        [task_entry("a", 2, node="n2", cpuset="2-3"), task_entry("b", 1, node="n2")],
    )
    assert step(Scheduler(store)) == 2
    assert binding(store, "pinned-a") == ("n2", "2-3")
    assert binding(store, "pinned-b") == ("n2", "0")


def test_a_job_whose_tasks_are_not_all_created_is_not_placed(store: Store) -> None:
    add_node(store, "n1", 4)
    add_job(store, "web", [task_entry("a", 1), task_entry("b", 1)], create_tasks=["a"])
    scheduler = Scheduler(store)
    assert step(scheduler) == 0
    assert store.get("Task", "web-a").get("status") in (None, {})
    assert events(store, "Job", "web") == []
    add_task(store, "web", "b")
    assert step(scheduler) == 2
    assert binding(store, "web-a")[0] == binding(store, "web-b")[0] == "n1"


def test_a_replaced_task_is_placed_alone(store: Store) -> None:
    add_node(store, "n1", 2)
    add_node(store, "n2", 2)
    add_job(store, "web", [task_entry("a", 2), task_entry("b", 2)])
    scheduler = Scheduler(store)
    assert step(scheduler) == 2
    kept = store.get("Task", "web-a")
    gone = binding(store, "web-b")
    store.delete("Task", "web-b")  # e.g. its node failed; the job controller recreates it
    add_task(store, "web", "b")
    assert_allocation_invariant(store)
    assert step(scheduler) == 1
    assert binding(store, "web-b") == gone
    assert (
        store.get("Task", "web-a")["metadata"]["resourceVersion"]
        == kept["metadata"]["resourceVersion"]
    )


def test_starvation_limit_holds_later_jobs_back(store: Store) -> None:
    add_node(store, "n1", 4)
    add_job(store, "running", [task_entry("a", 2)])
    assert step(Scheduler(store)) == 1
    add_job(store, "big", [task_entry("a", 4)])
    add_job(store, "small", [task_entry("a", 2)])
    settings = SchedulerSettings(starvation_seconds=60)
    # big has waited for "a while" as far as this scheduler's clock knows: small waits too.
    late = Scheduler(store, settings, clock=lambda: time.time() + 3600)
    assert step(late) == 0
    message = store.get("Task", "small-a")["status"]["message"]
    assert message == (
        "held back: job big has waited longer than the starvation limit of 60s and is placed first"
    )
    # The reason carries no running figure, so a later pass writes nothing new.
    revision = store.revision()
    assert step(Scheduler(store, settings, clock=lambda: time.time() + 3700)) == 0
    assert store.revision() == revision
    # Within the limit, small is placed although big waits.
    assert step(Scheduler(store, settings)) == 1
    assert binding(store, "small-a")[0] == "n1"
    assert binding(store, "big-a") == (None, None)


# -- preemption -----------------------------------------------------------------------------------


def _fill(store: Store) -> None:
    """n1: lo-a and lo-b (priority 0, 2 cores each); n2: lo-c (priority 1, 4 cores)."""
    add_node(store, "n1", 4)
    add_node(store, "n2", 4)
    add_job(store, "lo-a", [task_entry("x", 2, node="n1", cpuset="0-1")])
    add_job(store, "lo-b", [task_entry("x", 2, node="n1", cpuset="2-3")])
    add_job(
        store, "lo-c", [task_entry("x", 2, node="n2"), task_entry("y", 2, node="n2")], priority=1
    )
    assert step(Scheduler(store)) == 4
    for task in ("lo-a-x", "lo-b-x", "lo-c-x", "lo-c-y"):
        set_phase(store, task, "Running")


def test_preemption_evicts_the_fewest_lower_priority_jobs(any_store: Store) -> None:
    store = any_store
    _fill(store)
    add_job(store, "hi", [task_entry("x", 4)], priority=5)
    assert step(Scheduler(store, PREEMPT)) == 1
    assert binding(store, "hi-x") == ("n2", "0-3")
    names = {t["metadata"]["name"] for t in store.list("Task").items}
    assert names == {"lo-a-x", "lo-b-x", "hi-x"}, "exactly the single victim's tasks go"
    assert store.get("Job", "lo-c")  # the job stays; its controller recreates the tasks
    [(kind, reason, message)] = events(store, "Job", "lo-c")
    assert (kind, reason) == ("Warning", "Preempted")
    assert message == "preempted by job hi (priority 5, above 1)"
    assert events(store, "Job", "hi") == [
        ("Normal", "Preempting", "evicting job lo-c to make room")
    ]
    assert [t["task"] for t in allocated(store, "n2")["tasks"]] == ["hi-x"]
    # The victim's recreated tasks queue again and wait; nobody else is evicted for them.
    add_task(store, "lo-c", "x")
    add_task(store, "lo-c", "y")
    assert step(Scheduler(store, PREEMPT)) == 0
    assert store.get("Task", "lo-c-x")["status"]["reason"] == "Unschedulable"
    assert {t["metadata"]["name"] for t in store.list("Task").items} == names | {"lo-c-x", "lo-c-y"}


def test_preemption_never_evicts_an_equal_or_higher_priority_job(store: Store) -> None:
    _fill(store)
    add_job(store, "peer", [task_entry("x", 4)], priority=0)
    scheduler = Scheduler(store, PREEMPT)
    assert step(scheduler) == 0
    assert len(store.list("Task").items) == 5
    assert [r for _, r, _ in events(store, "Job", "peer")] == ["FailedScheduling"]
    assert all(events(store, "Job", j) == [] for j in ("lo-a", "lo-b", "lo-c"))


def test_without_preemption_nothing_is_evicted(store: Store) -> None:
    _fill(store)
    add_job(store, "hi", [task_entry("x", 4)], priority=5)
    assert step(Scheduler(store, SchedulerSettings(strategy="priority"))) == 0
    assert len(store.list("Task").items) == 5
    assert binding(store, "hi-x") == (None, None)
    assert [r for _, r, _ in events(store, "Job", "hi")] == ["FailedScheduling"]


# -- the loop -------------------------------------------------------------------------------------


def test_run_reacts_to_new_jobs_and_finished_tasks(any_store: Store) -> None:
    store = any_store
    add_node(store, "n1", 4)
    with running(Scheduler(store)):
        add_job(store, "first", [task_entry("a", 3)])
        took = seconds_until(lambda: binding(store, "first-a")[0] == "n1", 5, "first-a bound")
        assert took < 1.5, f"a new job was bound only after {took:.2f}s"
        add_job(store, "second", [task_entry("a", 2)])
        wait_for(
            lambda: (
                (store.get("Task", "second-a").get("status") or {}).get("reason") == "Unschedulable"
            ),
            5,
            "second-a marked Unschedulable",
        )
        assert_allocation_invariant(store)
        set_phase(store, "first-a", "Succeeded")
        took = seconds_until(lambda: binding(store, "second-a")[0] == "n1", 5, "second-a bound")
        assert took < 1.5, f"a freed core was reused only after {took:.2f}s"
        wait_for(
            lambda: [t["task"] for t in allocated(store, "n1")["tasks"]] == ["second-a"],
            5,
            "n1's allocation updated",
        )
        assert_allocation_invariant(store)


def _settled(scheduler: Scheduler, quiet: float) -> None:
    """Wait until the scheduler has run and then done no pass for ``quiet`` seconds."""
    wait_for(lambda: scheduler.passes > 0, 5, "a first pass")
    passes, since = scheduler.passes, time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.02)
        if scheduler.passes != passes:
            passes, since = scheduler.passes, time.monotonic()


def test_batch_window_delays_the_pass(store: Store) -> None:
    add_node(store, "n1", 8)
    window = 0.6
    scheduler = Scheduler(store, SchedulerSettings(batch_window=window))
    with running(scheduler):
        _settled(scheduler, window + 0.5)
        add_job(store, "a", [task_entry("x", 1)])
        add_job(store, "b", [task_entry("x", 1)])
        took = seconds_until(lambda: binding(store, "b-x")[0] is not None, 5, "b-x bound")
        assert window - 0.05 <= took < window + 1.5
        assert binding(store, "a-x")[0] == "n1"
        assert_allocation_invariant(store)


def test_stop_returns_promptly_when_idle(store: Store) -> None:
    add_node(store, "n1", 2)
    scheduler = Scheduler(store, resync=3)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    _settled(scheduler, 0.3)
    stop.set()
    started = time.monotonic()
    thread.join(1.0)
    alive = thread.is_alive()
    thread.join(5)  # let it end before the store is closed
    assert not thread.is_alive()
    assert not alive, f"run returned {time.monotonic() - started:.1f}s after stop"


def test_heartbeats_and_notes_do_not_trigger_passes(store: Store) -> None:
    node = add_node(store, "n1", 2)
    scheduler = Scheduler(store)
    task = {"kind": "Task", "metadata": {"name": "t"}, "spec": {"cores": 1}, "status": {}}
    assert scheduler._matters("ADDED", node)
    beat = {**node, "status": {**node["status"], "heartbeatTime": "2030-01-01T00:00:00Z"}}
    assert not scheduler._matters("MODIFIED", beat)
    assert scheduler._matters("MODIFIED", {**beat, "spec": {"unschedulable": True}})
    assert scheduler._matters("ADDED", task)
    noted = {**task, "status": {"message": "0/1 nodes can run ...", "conditions": []}}
    assert not scheduler._matters("MODIFIED", noted)
    running = {**noted, "status": {"phase": "Running", "message": "started"}}
    assert not scheduler._matters("MODIFIED", running)  # still holds its cores
    assert scheduler._matters("MODIFIED", {**noted, "status": {"phase": "Succeeded"}})
    assert scheduler._matters("DELETED", task)


def test_the_summary_counts_passes_and_bindings(store: Store) -> None:
    add_node(store, "n1", 4)
    add_job(store, "web", [task_entry("a", 2), task_entry("b", 1)])
    scheduler = Scheduler(store)
    assert step(scheduler) == 2
    assert scheduler.summary().startswith("passes 1, tasks bound 2, failed passes 0, last pass ")
