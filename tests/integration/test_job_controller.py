"""The job controller against real stores (SQLite, and a MongoDB wire-protocol server)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from swarmapply.api.admission import admit, validate_object
from swarmapply.api.store import Conflict, NotFound, Store
from swarmapply.controllers import job_tasks as jt
from swarmapply.controllers.job import JobController, TaskNameConflict, build
from swarmapply.controllers.settings import ControllerSettings
from swarmapply.controllers.workqueue import WorkQueue
from tests.integration.helpers import Running, wait_for

JOB_YAML = """
apiVersion: swarmapply.io/v1
kind: Job
metadata: {{name: {name}}}
spec:
  restartPolicy: {policy}
  {extra}
  tasks:
  - {{name: a, image: busybox, memory: 10m, command: sleep 100}}
  - {{name: b, image: busybox, memory: 20m, cores: 2}}
"""


def admitted_job(name: str = "web", policy: str = "Never", extra: str = "") -> dict[str, Any]:
    (obj,) = admit([("job.yaml", JOB_YAML.format(name=name, policy=policy, extra=extra))])
    return obj.obj


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def tasks_of(store: Store, job: str = "web") -> dict[str, dict[str, Any]]:
    return {
        t["metadata"]["name"]: t for t in store.list("Task", field_selector=f"spec.job={job}").items
    }


def phase(store: Store, job: str = "web") -> str | None:
    try:
        return store.get("Job", job).get("status", {}).get("phase")
    except NotFound:
        return None


def events(store: Store, reason: str | None = None) -> list[dict[str, Any]]:
    return [e for e in store.list("Event").items if reason is None or e["reason"] == reason]


def set_task_status(store: Store, name: str, **status: Any) -> None:
    """Write a Task's status as the scheduler or a node agent would."""
    task = store.get("Task", name)
    task["status"] = {**task.get("status", {}), **status}
    store.update_status(task)


def bind(store: Store, name: str, node: str = "n1", cpuset: str = "0") -> None:
    set_task_status(store, name, phase="Scheduled", node=node, cpuset=cpuset, memory=10485760)


def settings() -> ControllerSettings:
    return ControllerSettings(workers=2, resync=None)


# ------------------------------------------------------------------------ main flows


def test_apply_creates_owned_tasks_and_the_job_follows_its_tasks(store: Store) -> None:
    job = store.create(admitted_job())
    controller = build(store, settings())
    with Running(controller):
        tasks = wait_for(lambda: len(tasks_of(store)) == 2 and tasks_of(store), what="tasks")
        assert set(tasks) == {"web-a", "web-b"}
        for name, task in tasks.items():
            assert validate_object(task) == []
            assert task["metadata"]["ownerReferences"] == [
                {
                    "apiVersion": "swarmapply.io/v1",
                    "kind": "Job",
                    "name": "web",
                    "uid": job["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
            assert task["metadata"]["labels"]["swarmapply.io/task"] == name[-1]
            assert task["spec"]["network"] == "web"
        assert tasks["web-b"]["spec"]["cores"] == 2
        assert tasks["web-a"]["spec"]["command"] == ["sleep", "100"]
        wait_for(lambda: phase(store) == "Pending", what="Pending")

        message = "0/5 nodes can run task web-b: not enough free cores"
        bind(store, "web-a")
        set_task_status(
            store,
            "web-b",
            conditions=[
                {
                    "type": "Scheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                }
            ],
        )
        wait_for(lambda: store.get("Job", "web")["status"].get("message") == message, what="why")
        assert store.get("Job", "web")["status"]["reason"] == "Unschedulable"

        bind(store, "web-b", cpuset="1-2")
        wait_for(lambda: phase(store) == "Scheduled", what="Scheduled")
        set_task_status(store, "web-a", phase="Running", startTime="2026-03-01T12:00:00Z")
        set_task_status(store, "web-b", phase="Running", startTime="2026-03-01T12:00:01Z")
        wait_for(lambda: phase(store) == "Running", what="Running")
        set_task_status(store, "web-a", phase="Succeeded", exitCode=0)
        set_task_status(store, "web-b", phase="Succeeded", exitCode=0)
        wait_for(lambda: phase(store) == "Succeeded", what="Succeeded")
        wait_for(lambda: controller.queue.idle(), what="idle")
    final = store.get("Job", "web")
    assert validate_object(final) == []
    status = final["status"]
    assert status["tasksSucceeded"] == 2 and status["restarts"] == 0
    assert status["startTime"] <= status["completionTime"]
    assert status["observedGeneration"] == final["metadata"]["generation"]
    assert [
        e["reason"]
        for e in sorted(events(store), key=lambda e: int(e["metadata"]["resourceVersion"]))
    ] == [
        "Created",
        "Running",
        "Completed",
    ]
    assert events(store, "Created")[0]["message"] == "Created tasks web-a, web-b"
    assert all(e["type"] == "Normal" for e in events(store))


def test_failed_tasks_are_restarted_until_the_backoff_limit(store: Store) -> None:
    store.create(admitted_job(policy="OnFailure", extra="backoffLimit: 2"))
    controller = build(store, settings())
    with Running(controller):
        wait_for(lambda: len(tasks_of(store)) == 2, what="tasks")
        current = "web-a"
        for attempt in (1, 2):
            bind(store, current)
            set_task_status(store, current, phase="Failed", exitCode=1)
            new = jt.task_name("web", "a", attempt)
            wait_for(lambda n=new: set(tasks_of(store)) == {n, "web-b"}, what=f"attempt {attempt}")
            wait_for(
                lambda a=attempt: store.get("Job", "web")["status"].get("restarts") == a,
                what="restarts",
            )
            task = tasks_of(store)[new]
            assert task["metadata"]["annotations"]["swarmapply.io/attempt"] == str(attempt)
            assert "status" not in task  # a fresh, Pending attempt
            current = new
        bind(store, current)
        set_task_status(store, current, phase="Failed", exitCode=2)
        wait_for(lambda: phase(store) == "Failed", what="Failed")
        wait_for(lambda: controller.queue.idle(), what="idle")
    status = store.get("Job", "web")["status"]
    assert status["reason"] == "BackoffLimitExceeded"
    assert "exit code 2" in status["message"]
    assert status["restarts"] == 2 and status["tasksFailed"] == 1
    # The failed attempt stays for its status; the job's other, still live task is deleted
    # so that a failed job holds no cores.
    assert set(tasks_of(store)) == {current}
    [stopped] = events(store, "TasksStopped")
    assert stopped["message"] == "Deleted tasks web-b: the job failed"
    assert len(events(store, "Replaced")) == 2
    assert len(events(store, "BackoffLimitExceeded")) == 1


def test_editing_the_job_updates_pending_tasks_and_deletes_removed_ones(store: Store) -> None:
    store.create(admitted_job())
    controller = build(store, settings())
    with Running(controller):
        wait_for(lambda: len(tasks_of(store)) == 2, what="tasks")
        while True:  # the controller writes the status meanwhile: retry on Conflict
            job = store.get("Job", "web")
            job["spec"]["tasks"] = [{**job["spec"]["tasks"][0], "image": "busybox:2"}]
            try:
                store.update(job)
                break
            except Conflict:
                continue
        wait_for(lambda: set(tasks_of(store)) == {"web-a"}, what="web-b deleted")
        wait_for(
            lambda: tasks_of(store)["web-a"]["spec"]["image"] == "busybox:2", what="web-a updated"
        )
        wait_for(lambda: store.get("Job", "web")["status"].get("tasksTotal") == 1, what="status")
        assert store.get("Job", "web")["status"]["observedGeneration"] == 2


def test_ttl_deletes_the_finished_job_and_its_tasks(store: Store) -> None:
    store.create(admitted_job(extra="ttlSecondsAfterFinished: 0"))
    controller = build(store, settings())
    with Running(controller):
        wait_for(lambda: len(tasks_of(store)) == 2, what="tasks")
        for name in ("web-a", "web-b"):
            bind(store, name)
            set_task_status(store, name, phase="Succeeded", exitCode=0)
        wait_for(lambda: phase(store) is None and not tasks_of(store), what="job deleted")
    assert len(events(store, "Completed")) == 1


# -------------------------------------------------------------- reconcile, step by step


@pytest.fixture
def sqlite(tmp_path: Path, open_test_store: Callable[[str], Store]) -> Store:
    return open_test_store(f"sqlite:///{tmp_path}/state.db")


def test_ttl_requeues_until_due_then_deletes(sqlite: Store) -> None:
    clock = Clock()
    queue = WorkQueue()
    reconciler = JobController(sqlite, clock=clock, queue=queue)
    sqlite.create(admitted_job(extra="ttlSecondsAfterFinished: 60"))
    reconciler.reconcile("web")
    for name in ("web-a", "web-b"):
        set_task_status(sqlite, name, phase="Succeeded", node="n1")
    reconciler.reconcile("web")
    assert phase(sqlite) == "Succeeded"
    assert queue.delayed == 1  # requeued for when the TTL runs out
    clock.now += timedelta(seconds=59)
    reconciler.reconcile("web")
    assert phase(sqlite) == "Succeeded"
    clock.now += timedelta(seconds=1)
    revision = sqlite.revision()
    reconciler.reconcile("web")
    assert phase(sqlite) is None and tasks_of(sqlite) == {}
    assert not [e for e in events(sqlite) if int(e["metadata"]["resourceVersion"]) > revision]
    queue.shutdown()


def test_reconciling_again_writes_nothing(sqlite: Store) -> None:
    reconciler = JobController(sqlite)
    sqlite.create(admitted_job())
    reconciler.reconcile("web")
    revision = sqlite.revision()
    reconciler.reconcile("web")
    reconciler.reconcile("web")
    assert sqlite.revision() == revision
    assert len(events(sqlite)) == 1


def test_a_task_name_held_by_someone_else_is_a_permanent_error(sqlite: Store) -> None:
    sqlite.create(
        {
            "apiVersion": "swarmapply.io/v1",
            "kind": "Task",
            "metadata": {"name": "web-a"},
            "spec": {"job": "other", "image": "busybox", "cores": 1, "memory": 1},
        }
    )
    sqlite.create(admitted_job())
    with pytest.raises(TaskNameConflict, match=r'Task "web-a" .*Job "web".*owned by nobody'):
        JobController(sqlite).reconcile("web")
    assert set(tasks_of(sqlite)) == {"web-b"}
    assert sqlite.get("Task", "web-a")["spec"]["job"] == "other"  # not touched
    assert phase(sqlite) == "Pending"


def test_leftover_tasks_of_a_gone_job_are_deleted(sqlite: Store) -> None:
    old = jt.build_task(
        {**admitted_job(), "metadata": {"name": "web", "uid": "gone"}},
        {"name": "a", "image": "x", "memory": 1},
    )
    sqlite.create(old)
    orphan = jt.build_task(
        {**admitted_job(), "metadata": {"name": "web", "uid": "x"}},
        {"name": "b", "image": "x", "memory": 1},
    )
    orphan["metadata"]["ownerReferences"] = []
    sqlite.create(orphan)
    JobController(sqlite).reconcile("web")
    assert set(tasks_of(sqlite)) == {"web-b"}  # an orphan without owner is left alone
    # A new Job of the same name replaces the leftovers of the earlier one.
    sqlite.create(old)
    sqlite.create(admitted_job(extra=""))
    with pytest.raises(TaskNameConflict):  # web-b is held by the orphan
        JobController(sqlite).reconcile("web")
    job_uid = sqlite.get("Job", "web")["metadata"]["uid"]
    assert jt.job_owner_uids(sqlite.get("Task", "web-a")) == [job_uid]


class Crash(Exception):
    """The controller process dies here."""


class CrashingStore:
    """A store that dies after ``budget`` writes."""

    WRITES = ("create", "update", "update_status", "delete")

    def __init__(self, store: Store, budget: int) -> None:
        self._store = store
        self.budget = budget

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in self.WRITES:
            return attr

        def write(*args: Any, **kwargs: Any) -> Any:
            if self.budget <= 0:
                raise Crash(name)
            self.budget -= 1
            return attr(*args, **kwargs)

        return write


def scenario(store: Store) -> None:
    """A Job mid-life: one task failed (to be replaced), one running, one pending."""
    job = admitted_job(policy="OnFailure")
    job["spec"]["tasks"].append({**job["spec"]["tasks"][1], "name": "c"})
    store.create(job)
    JobController(store).reconcile("web")
    for name in ("web-a", "web-b"):
        bind(store, name)
    set_task_status(store, "web-a", phase="Failed", exitCode=1)
    set_task_status(store, "web-b", phase="Running")
    job = store.get("Job", "web")
    job["spec"]["tasks"] = [t for t in job["spec"]["tasks"] if t["name"] != "c"]
    job["spec"]["tasks"].append({**job["spec"]["tasks"][0], "name": "d"})
    store.update(job)


def outcome(store: Store) -> tuple[Any, ...]:
    status = store.get("Job", "web")["status"]
    reasons = sorted(e["reason"] for e in events(store))
    return (sorted(tasks_of(store)), status["phase"], status["restarts"], reasons)


def test_killed_at_every_write_and_restarted_converges_to_the_same_state(
    tmp_path: Path, open_test_store: Callable[[str], Store]
) -> None:
    reference = open_test_store(f"sqlite:///{tmp_path}/reference.db")
    scenario(reference)
    writes = reference.revision()
    JobController(reference).reconcile("web")
    writes = reference.revision() - writes
    expected = outcome(reference)
    reference.close()
    assert expected[0] == sorted(["web-b", "web-d", jt.task_name("web", "a", 1)])
    assert expected[1:3] == ("Pending", 1)
    for budget in range(writes):
        store = open_test_store(f"sqlite:///{tmp_path}/crash-{budget}.db")
        scenario(store)
        with pytest.raises(Crash):
            JobController(CrashingStore(store, budget)).reconcile("web")  # type: ignore[arg-type]
        JobController(store).reconcile("web")
        JobController(store).reconcile("web")
        tasks, phase_, restarts, reasons = outcome(store)
        assert (tasks, phase_, restarts) == expected[:3], f"killed after {budget} writes"
        # Events are at most once: one lost to the crash is not made up later.
        assert set(reasons) <= set(expected[3]) and len(reasons) <= len(expected[3])
        store.close()


class AgentWritesFirst:
    """The store, with a node agent's status write landing just before each delete."""

    def __init__(self, store: Store, task: str, status: dict[str, Any]) -> None:
        self.inner, self.task, self.status = store, task, status

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def delete(self, kind: str, name: str, **kw: Any) -> dict[str, Any]:
        if kind == "Task" and name == self.task and self.status:
            set_task_status(self.inner, name, **self.status)
            self.status = {}
        result: dict[str, Any] = self.inner.delete(kind, name, **kw)
        return result


def test_a_task_that_finishes_while_its_failed_job_stops_the_rest_is_kept(sqlite: Store) -> None:
    sqlite.create(admitted_job())
    JobController(sqlite).reconcile("web")
    bind(sqlite, "web-a", cpuset="0")
    bind(sqlite, "web-b", cpuset="1-2")
    set_task_status(sqlite, "web-a", phase="Failed", exitCode=1, reason="Error")
    racing = AgentWritesFirst(sqlite, "web-b", {"phase": "Failed", "exitCode": 2})
    JobController(racing).reconcile("web")  # type: ignore[arg-type]
    assert phase(sqlite) == "Failed"
    assert sqlite.get("Task", "web-b")["status"]["exitCode"] == 2, "kept for its status"
    assert not events(sqlite, "TasksStopped")
