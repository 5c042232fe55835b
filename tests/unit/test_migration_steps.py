"""Unit tests for the migrator's pure decisions, walking whole Migrations step by step.

A :class:`World` holds one Migration and its Tasks. ``decide()`` asks
:func:`~swarmapply.controllers.migration_steps.decide` for the next Outcome and applies it as
the migrator does (the task statuses first, then the Migration's); the ``agent_*`` and
``reserve`` helpers play the node agents and the scheduler as the migration contract says.
Every object written is checked against its JSON Schema.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

import pytest

from swarmapply.api.admission import validate_object
from swarmapply.controllers.migration_steps import Outcome, View, decide, involved_nodes

Object = dict[str, Any]
MI = 1024**2
T0 = 1_800_000_000.0
TIMEOUT = 30.0
CHECKPOINT = "/var/lib/swarmapply/checkpoints/m1/web-a"


def stamp(t: float) -> str:
    return (
        datetime.fromtimestamp(t, timezone.utc)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def task(name: str, node: str | None = "n1", cpuset: str = "0-1", phase: str = "Running") -> Object:
    status: Object = {"phase": phase}
    if node is not None:
        status.update(node=node, cpuset=cpuset, memory=64 * MI)
        if phase == "Running":
            status.update(containerID=f"c-{name}-{node}", startTime="2027-01-15T08:00:05Z")
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Task",
        "metadata": {
            "name": name,
            "creationTimestamp": "2027-01-15T08:00:00Z",
            "labels": {"swarmapply.io/job": "web", "swarmapply.io/task": name.split("-")[-1]},
        },
        "spec": {"job": "web", "image": "busybox", "cores": 2, "memory": 64 * MI},
        "status": status,
    }


def migration(mode: str = "cold", *, job: bool = False, to: str | None = None) -> Object:
    spec: Object = {"job": "web"} if job else {"task": "web-a"}
    spec["mode"] = mode
    if to is not None:
        spec["toNode"] = to
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Migration",
        "metadata": {"name": "m1", "creationTimestamp": "2027-01-15T08:10:00Z"},
        "spec": spec,
    }


class World:
    """A Migration, its Tasks, the agents' liveness and a clock."""

    def __init__(self, mig: Object, *tasks: Object, now: float = T0) -> None:
        self.migration = mig
        self.tasks = {t["metadata"]["name"]: t for t in tasks}
        self.alive = {"n1": True, "n2": True, "n3": True}
        self.now = now
        self.events: list[tuple[str, str, str]] = []

    # -- the migrator -----------------------------------------------------------------------------

    def outcome(self) -> Outcome:
        view = View(
            copy.deepcopy(self.migration),
            copy.deepcopy(self.tasks),
            dict(self.alive),
            self.now,
            stamp(self.now),
            TIMEOUT,
        )
        return decide(view)

    def apply(self, out: Outcome, *, tasks_only: bool = False) -> None:
        for name, status in out.tasks.items():
            self.tasks[name]["status"] = copy.deepcopy(status)
            assert validate_object(self.tasks[name]) == []
        if tasks_only:
            return
        if out.status is not None:
            self.migration["status"] = copy.deepcopy(out.status)
            assert validate_object(self.migration) == []
        self.events.extend(out.events)

    def decide(self, *, tasks_only: bool = False) -> Outcome:
        out = self.outcome()
        self.apply(out, tasks_only=tasks_only)
        return out

    # -- reading ----------------------------------------------------------------------------------

    @property
    def status(self) -> Object:
        return dict(self.migration.get("status") or {})

    def task_status(self, name: str = "web-a") -> Object:
        return dict(self.tasks[name]["status"])

    def marker(self, name: str = "web-a") -> Object | None:
        found = self.tasks[name]["status"].get("migration")
        return dict(found) if found is not None else None

    # -- the scheduler ----------------------------------------------------------------------------

    def reserve(self, *targets: tuple[str, str]) -> None:
        """Pending -> Reserved with one (node, cpuset) per status.tasks entry."""
        status = self.status
        assert status["phase"] == "Pending"
        status["tasks"] = [
            {**e, "targetNode": n, "targetCpuset": c}
            for e, (n, c) in zip(status["tasks"], targets, strict=True)
        ]
        status.update(phase="Reserved", reason="Reserved", message="target reserved")
        self.migration["status"] = status
        assert validate_object(self.migration) == []

    # -- the agents -------------------------------------------------------------------------------

    def _step(self, name: str, step: str) -> Object:
        status = self.tasks[name]["status"]
        marker = status["migration"]
        assert marker["step"] == step
        assert status["node"] == marker["node"]  # the agent of marker.node acts on it
        assert "done" not in marker and "reason" not in marker
        return marker  # type: ignore[no-any-return]

    def ack(self, name: str = "web-a", step: str = "Stop", **fields: Any) -> None:
        """The agent writes ``fields`` into the task's step (started, done, checkpoint...)."""
        self._step(name, step).update(fields)
        assert validate_object(self.tasks[name]) == []

    def refuse(self, name: str, step: str, reason: str, message: str) -> None:
        """The agent cannot carry out the step: reason/message, the task left as it was."""
        self.ack(name, step, reason=reason, message=message)

    def run(self, name: str = "web-a") -> None:
        """The target's agent reports the started (or restored) container Running."""
        status = self.tasks[name]["status"]
        assert status["migration"]["step"] in ("Start", "Restore")
        assert "containerID" not in status
        status.update(
            phase="Running", containerID=f"c-{name}-{status['node']}", startTime=stamp(self.now)
        )
        assert validate_object(self.tasks[name]) == []

    def react(self, *, refuse_checkpoint: bool = False, refuse_start: bool = False) -> None:
        """Every agent does one round on the steps it owns (for open-ended walks)."""
        for name, t in self.tasks.items():
            status = t["status"]
            marker = status.get("migration")
            if (
                not marker
                or status.get("node") != marker["node"]
                or status.get("phase") in ("Succeeded", "Failed")
                or marker.get("done")
                or marker.get("reason")
            ):
                continue
            step = marker["step"]
            if step == "Stop":
                marker.update(started=True, done=True)
            elif step == "Checkpoint":
                if refuse_checkpoint:
                    marker.update(reason="CheckpointFailed", message="criu: dump failed")
                else:
                    marker.update(
                        started=True, done=True, checkpoint=f"/cp/m1/{name}", checkpointBytes=4096
                    )
            elif step == "Restore":
                if not marker.get("checkpoint"):
                    marker.update(reason="CheckpointUnreachable", message="no checkpoint")
                elif not marker.get("transferred"):
                    marker.update(started=True, transferred=True)
                elif "containerID" not in status:
                    self.run(name)
            elif step == "Start" and "containerID" not in status:
                if refuse_start:
                    marker.update(reason="ImageNotFound", message="no such image: busybox")
                else:
                    self.run(name)
            assert validate_object(t) == []


def started_world(mode: str = "cold", *, job: bool = False, to: str | None = None) -> World:
    """A World whose Migration is Reserved: web-a (and web-b for a job) n1 -> n2."""
    tasks = [task("web-a")]
    if job:
        tasks.append(task("web-b", cpuset="2-3"))
    world = World(migration(mode, job=job, to=to), *tasks)
    world.decide()
    world.reserve(*[("n2", c) for c in (["2-3", "0-1"] if job else ["2-3"])])
    return world


def without(status: Object, *keys: str) -> Object:
    return {k: v for k, v in status.items() if k not in keys}


# -- a cold move ----------------------------------------------------------------------------------


def test_a_cold_move_step_by_step() -> None:
    w = World(migration("cold"), task("web-a"))
    before = w.task_status()

    out = w.decide()
    assert out.tasks == {} and out.events == ()
    entry = {"task": "web-a", "sourceNode": "n1", "sourceCpuset": "0-1", "memory": 64 * MI}
    assert w.status == {
        "phase": "Pending",
        "tasks": [entry],
        "sourceNode": "n1",
        "sourceCpuset": "0-1",
        "startTime": stamp(T0),
        "reason": "WaitingForTarget",
        "message": "waiting for the scheduler to reserve a target",
    }
    assert w.decide() == Outcome()  # the scheduler's turn
    assert involved_nodes(w.migration) == ["n1"]

    w.reserve(("n2", "2-3"))
    assert involved_nodes(w.migration) == ["n1", "n2"]
    w.now = T0 + 1
    out = w.decide()
    assert out.recheck == TIMEOUT and out.events == ()
    assert w.task_status() == {**before, "migration": {"name": "m1", "step": "Stop", "node": "n1"}}
    assert (w.status["phase"], w.status["mode"], w.status["reason"], w.status["message"]) == (
        "Stopping",
        "cold",
        "Stopping",
        "stopping on n1",
    )

    w.now = T0 + 2
    out = w.decide()
    # The time spent waiting for the scheduler (reserve) does not count against the step.
    assert out.tasks == {} and out.recheck == pytest.approx(TIMEOUT - 1)
    assert w.status["message"] == "stopping: waiting for task web-a"
    assert w.decide().status is None  # nothing new to say

    w.ack(started=True)
    w.now = T0 + 3
    w.decide()
    assert w.status["message"] == "stopping: waiting for task web-a on node n1"
    assert w.status["phase"] == "Stopping"

    w.ack(done=True)
    w.now = T0 + 4
    out = w.decide()
    assert out.recheck == TIMEOUT
    assert w.task_status() == {
        "phase": "Running",
        "node": "n2",
        "cpuset": "2-3",
        "memory": 64 * MI,
        "migration": {"name": "m1", "step": "Start", "node": "n2"},
    }
    assert w.status["phase"] == "Starting"
    assert w.status["message"] == "starting on n2"
    assert w.status["timings"] == {"reserve": 1.0, "stop": 3.0}

    w.now = T0 + 5
    assert w.decide().tasks == {}  # the target's agent has not reported it yet
    assert w.status["phase"] == "Starting"

    w.run()
    w.now = T0 + 7
    out = w.decide()
    message = "moved: web-a on node n2, cores 2-3"
    assert out.events == (("Migrated", message, "Normal"),)
    assert w.task_status() == {
        "phase": "Running",
        "node": "n2",
        "cpuset": "2-3",
        "memory": 64 * MI,
        "containerID": "c-web-a-n2",
        "startTime": stamp(T0 + 5),
    }
    assert without(w.status, "tasks", "sourceNode", "sourceCpuset", "startTime", "mode") == {
        "phase": "Succeeded",
        "reason": "Migrated",
        "message": message,
        "completionTime": stamp(T0 + 7),
        "timings": {"reserve": 1.0, "stop": 3.0, "start": 3.0, "total": 7.0},
    }
    assert w.decide() == Outcome()  # finished: nothing left to clear
    assert w.events == [("Migrated", message, "Normal")]


# -- a live move ----------------------------------------------------------------------------------


def test_a_live_move_step_by_step() -> None:
    w = started_world("live")
    w.decide()
    assert w.marker() == {"name": "m1", "step": "Checkpoint", "node": "n1"}
    assert (w.status["phase"], w.status["mode"], w.status["message"]) == (
        "Checkpointing",
        "live",
        "checkpointing on n1",
    )

    w.ack(step="Checkpoint", started=True)
    w.now = T0 + 2
    w.decide()
    assert w.status["phase"] == "Checkpointing"
    w.ack(step="Checkpoint", done=True, checkpoint=CHECKPOINT, checkpointBytes=123456)
    w.decide()
    assert w.task_status() == {
        "phase": "Running",
        "node": "n2",
        "cpuset": "2-3",
        "memory": 64 * MI,
        "migration": {
            "name": "m1",
            "step": "Restore",
            "node": "n2",
            "checkpoint": CHECKPOINT,
            "checkpointBytes": 123456,
        },
    }
    assert (w.status["phase"], w.status["message"]) == (
        "Transferring",
        "moving the checkpoint to n2",
    )
    assert w.status["timings"] == {"reserve": 0.0, "checkpoint": 2.0}

    w.ack(step="Restore", started=True)
    w.now = T0 + 3
    out = w.decide()
    assert out.status is None and out.tasks == {}
    assert w.status["phase"] == "Transferring"

    w.ack(step="Restore", transferred=True)
    w.now = T0 + 5
    w.decide()
    assert (w.status["phase"], w.status["reason"]) == ("Restoring", "Restoring")
    assert w.status["timings"] == {"reserve": 0.0, "checkpoint": 2.0, "transfer": 3.0}

    w.now = T0 + 6
    w.run()
    out = w.decide()
    assert w.status["phase"] == "Succeeded"
    assert w.status["timings"] == {
        "reserve": 0.0,
        "checkpoint": 2.0,
        "transfer": 3.0,
        "restore": 1.0,
        "total": 6.0,
    }
    assert w.marker() is None
    assert (w.task_status()["node"], w.task_status()["cpuset"]) == ("n2", "2-3")
    assert out.events == (("Migrated", "moved: web-a on node n2, cores 2-3", "Normal"),)


# -- falling back, failing, rolling back ----------------------------------------------------------


def test_auto_falls_back_to_cold_when_the_checkpoint_is_refused() -> None:
    w = started_world("auto")
    w.decide()
    assert (w.status["phase"], w.status["mode"]) == ("Checkpointing", "live")
    w.refuse("web-a", "Checkpoint", "CheckpointFailed", "criu: dump failed")
    w.now = T0 + 1
    out = w.decide()
    message = (
        "live migration is not possible (task web-a: CheckpointFailed: criu: dump failed); "
        "moving cold instead"
    )
    assert out.events == (("FellBackToCold", message, "Warning"),)
    assert (w.status["phase"], w.status["mode"], w.status["reason"]) == (
        "Stopping",
        "cold",
        "FellBackToCold",
    )
    assert w.status["message"] == message
    assert w.status["timings"] == {"reserve": 0.0, "checkpoint": 1.0}
    assert w.marker() == {"name": "m1", "step": "Stop", "node": "n1"}
    assert w.task_status()["containerID"] == "c-web-a-n1"

    w.ack(started=True, done=True)
    w.now = T0 + 2
    w.decide()
    assert w.marker() == {"name": "m1", "step": "Start", "node": "n2"}
    w.run()
    w.now = T0 + 4
    w.decide()
    assert (w.status["phase"], w.status["mode"]) == ("Succeeded", "cold")
    assert w.status["timings"] == {
        "reserve": 0.0,
        "checkpoint": 1.0,
        "stop": 1.0,
        "start": 2.0,
        "total": 4.0,
    }
    assert [e[0] for e in w.events] == ["FellBackToCold", "Migrated"]


def test_live_fails_when_the_checkpoint_is_refused_and_the_task_is_untouched() -> None:
    w = started_world("live")
    before = w.task_status()
    w.decide()
    w.refuse("web-a", "Checkpoint", "CheckpointFailed", "criu: dump failed")
    w.now = T0 + 1
    out = w.decide()
    message = "nothing moved: task web-a: CheckpointFailed: criu: dump failed"
    assert out.events == (("MigrationFailed", message, "Warning"),)
    assert (w.status["phase"], w.status["reason"], w.status["message"]) == (
        "Failed",
        "StepFailed",
        message,
    )
    assert w.status["completionTime"] == stamp(T0 + 1)
    assert w.task_status() == before


def test_a_stopped_task_is_started_again_on_its_source_when_nothing_moves() -> None:
    w = started_world("cold", job=True)
    w.decide()
    w.ack("web-a", started=True, done=True)
    w.refuse("web-b", "Stop", "StopFailed", "cannot stop")
    w.decide()
    assert (w.status["phase"], w.status["reason"]) == ("Failed", "StepFailed")
    a = w.task_status("web-a")
    assert (a["node"], a["cpuset"], a["phase"]) == ("n1", "0-1", "Running")
    assert "containerID" not in a and "startTime" not in a and "migration" not in a
    assert w.task_status("web-b")["containerID"] == "c-web-b-n1"


def test_a_refused_start_rolls_back_to_the_source_cores() -> None:
    w = started_world("cold")
    w.decide()
    w.ack(started=True, done=True)
    w.decide()
    w.refuse("web-a", "Start", "ImageNotFound", "no such image: busybox")
    w.now = T0 + 3
    out = w.decide()
    message = "task web-a: ImageNotFound: no such image: busybox; web-a started again on the source"
    assert out.events == (("MigrationFailed", message, "Warning"),)
    assert (w.status["phase"], w.status["reason"], w.status["message"]) == (
        "Failed",
        "RolledBack",
        message,
    )
    assert w.task_status() == {"phase": "Running", "node": "n1", "cpuset": "0-1", "memory": 64 * MI}


def test_live_refused_restore_rolls_back_and_auto_starts_cold_on_the_target() -> None:
    live = started_world("live")
    live.react()  # nothing to do yet
    live.decide()
    live.react()
    live.decide()
    live.refuse("web-a", "Restore", "CheckpointUnreachable", "no such directory")
    live.decide()
    assert (live.status["phase"], live.status["reason"]) == ("Failed", "RolledBack")
    assert (live.task_status()["node"], live.marker()) == ("n1", None)

    auto = started_world("auto")
    auto.decide()
    auto.react()
    auto.decide()
    auto.refuse("web-a", "Restore", "CheckpointUnreachable", "no such directory")
    out = auto.decide()
    assert [e[0] for e in out.events] == ["FellBackToCold"]
    assert (auto.status["phase"], auto.status["mode"]) == ("Starting", "cold")
    assert auto.marker() == {"name": "m1", "step": "Start", "node": "n2"}
    auto.run()
    auto.decide()
    assert auto.status["phase"] == "Succeeded"
    assert set(auto.status["timings"]) == {"reserve", "checkpoint", "transfer", "start", "total"}


# -- timeouts -------------------------------------------------------------------------------------


def test_a_step_an_alive_agent_never_begins_times_out() -> None:
    w = started_world("cold")
    w.decide()
    w.now = T0 + TIMEOUT - 1
    assert w.decide().recheck == pytest.approx(1.0)
    assert w.status["phase"] == "Stopping"
    w.now = T0 + TIMEOUT + 1
    out = w.decide()
    message = "nothing moved: task web-a: StepTimedOut: its agent did not stop it within 30s"
    assert out.events == (("MigrationFailed", message, "Warning"),)
    assert (w.status["phase"], w.status["reason"], w.status["message"]) == (
        "Failed",
        "StepTimedOut",
        message,
    )
    assert w.marker() is None
    assert w.task_status()["containerID"] == "c-web-a-n1"


def test_a_step_whose_agent_is_dead_is_waited_for() -> None:
    w = started_world("cold")
    w.decide()
    w.alive["n1"] = False
    w.now = T0 + 10 * TIMEOUT
    out = w.decide()
    assert out.events == () and out.tasks == {}
    assert w.status["phase"] == "Stopping"
    assert (
        w.status["message"]
        == "stopping: waiting for task web-a on node n1 (its agent is not alive)"
    )
    assert w.marker() == {"name": "m1", "step": "Stop", "node": "n1"}


def test_a_step_begun_but_not_done_is_waited_for() -> None:
    w = started_world("cold")
    w.decide()
    w.ack(started=True)
    w.now = T0 + 10 * TIMEOUT
    out = w.decide()
    assert out.events == ()
    assert w.status["phase"] == "Stopping"
    assert w.status["message"] == "stopping: waiting for task web-a on node n1"


def test_a_start_the_target_never_makes_times_out_and_rolls_back() -> None:
    w = started_world("cold")
    w.decide()
    w.ack(started=True, done=True)
    w.now = T0 + 5
    w.decide()
    w.now = T0 + 5 + TIMEOUT + 1
    w.decide()
    assert (w.status["phase"], w.status["reason"]) == ("Failed", "RolledBack")
    assert w.status["message"].startswith("task web-a: StepTimedOut: ")
    assert (w.task_status()["node"], w.task_status()["cpuset"], w.marker()) == ("n1", "0-1", None)


def test_a_start_whose_target_agent_is_dead_is_waited_for() -> None:
    w = started_world("cold")
    w.decide()
    w.ack(started=True, done=True)
    w.decide()
    w.alive["n2"] = False
    w.now = T0 + 10 * TIMEOUT
    assert w.decide().events == ()
    assert w.status["phase"] == "Starting"
    assert w.marker() == {"name": "m1", "step": "Start", "node": "n2"}


# -- a job's tasks --------------------------------------------------------------------------------


def test_a_job_move_where_one_task_arrives_and_one_is_refused() -> None:
    w = started_world("cold", job=True)
    assert [e["task"] for e in w.status["tasks"]] == ["web-a", "web-b"]
    w.decide()
    assert w.marker("web-a") == {"name": "m1", "step": "Stop", "node": "n1"}
    assert w.marker("web-b") == {"name": "m1", "step": "Stop", "node": "n1"}
    w.ack("web-a", started=True, done=True)
    w.decide()
    assert w.status["phase"] == "Stopping"  # all or none: web-b has not stopped yet
    w.ack("web-b", started=True, done=True)
    w.decide()
    assert w.status["phase"] == "Starting"
    w.run("web-a")
    w.refuse("web-b", "Start", "ImageNotFound", "no such image: busybox")
    w.decide()
    assert (w.status["phase"], w.status["reason"]) == ("Failed", "RolledBack")
    assert w.status["message"] == (
        "task web-b: ImageNotFound: no such image: busybox; web-b started again on the source"
    )
    assert w.task_status("web-a") == {
        "phase": "Running",
        "node": "n2",
        "cpuset": "2-3",
        "memory": 64 * MI,
        "containerID": "c-web-a-n2",
        "startTime": stamp(T0),
    }
    assert w.task_status("web-b") == {
        "phase": "Running",
        "node": "n1",
        "cpuset": "2-3",
        "memory": 64 * MI,
    }


def test_a_job_move_takes_only_the_jobs_live_tasks() -> None:
    done = task("web-c", phase="Succeeded", cpuset="3")
    other = task("web-a")
    other["metadata"]["labels"]["swarmapply.io/job"] = "db"
    w = World(migration(job=True), task("web-b", cpuset="2-3"), done, other)
    w.decide()
    assert [e["task"] for e in w.status["tasks"]] == ["web-b"]


# -- invalid migrations ---------------------------------------------------------------------------


def marked(t: Object) -> Object:
    t["status"]["migration"] = {"name": "m0", "step": "Stop", "node": "n1"}
    return t


@pytest.mark.parametrize(
    ("mig", "tasks", "message"),
    [
        (migration(), [], "task web-a does not exist"),
        (
            migration(),
            [task("web-a", phase="Scheduled")],
            "task web-a is Scheduled; only a Running task can be moved",
        ),
        (
            migration(),
            [task("web-a", node=None, phase="Pending")],
            "task web-a is Pending; only a Running task can be moved",
        ),
        (migration(), [marked(task("web-a"))], "task web-a is being moved by migration m0"),
        (migration(to="n1"), [task("web-a")], "task web-a already runs on node n1"),
        (migration(job=True), [task("web-a", phase="Succeeded")], "job web has no running tasks"),
        (
            migration(job=True),
            [task("web-a"), task("web-b", phase="Scheduled")],
            "task web-b is Scheduled; only a Running task can be moved",
        ),
    ],
)
def test_invalid_migrations_fail_at_once(mig: Object, tasks: list[Object], message: str) -> None:
    w = World(mig, *tasks)
    before = copy.deepcopy(w.tasks)
    out = w.decide()
    assert out.tasks == {}
    assert out.events == (("MigrationFailed", message, "Warning"),)
    assert w.status == {
        "phase": "Failed",
        "reason": "InvalidMigration",
        "message": message,
        "completionTime": stamp(T0),
    }
    assert w.tasks == before


def test_a_task_that_ends_before_it_moves_fails_the_migration() -> None:
    w = started_world("cold")
    w.tasks["web-a"]["status"]["phase"] = "Failed"
    w.decide()
    assert (w.status["phase"], w.status["reason"]) == ("Failed", "TaskGone")


# -- walking to the end, with and without a crash -------------------------------------------------


def walk(w: World, *, crash_at: int | None = None, rounds: int = 20, **agents: bool) -> list[str]:
    """Decide and let the agents react until the Migration ends; returns the phases seen.

    With ``crash_at``, the ``crash_at``-th decision that writes both tasks and the Migration
    writes only the tasks (the migrator died in between) and is decided again.
    """
    phases = []
    writes = 0
    for _ in range(rounds):
        out = w.outcome()
        crash = False
        if out.tasks and out.status is not None:
            writes += 1
            crash = writes == crash_at
        w.apply(out, tasks_only=crash)
        phases.append(w.status["phase"])
        if w.status["phase"] in ("Succeeded", "Failed"):
            w.decide()  # clears any step left
            return phases
        w.react(**agents)
        w.now += 1
    raise AssertionError(f"did not finish: {phases}")


def result(w: World) -> tuple[Any, ...]:
    return (
        w.status["phase"],
        w.status["reason"],
        {n: (t["status"]["node"], t["status"]["cpuset"]) for n, t in w.tasks.items()},
        [n for n, t in w.tasks.items() if "migration" in t["status"]],
    )


SCENARIOS: dict[str, tuple[str, dict[str, bool], tuple[Any, ...]]] = {
    "cold": ("cold", {}, ("Succeeded", "Migrated", {"web-a": ("n2", "2-3")}, [])),
    "live": ("live", {}, ("Succeeded", "Migrated", {"web-a": ("n2", "2-3")}, [])),
    "auto-fallback": (
        "auto",
        {"refuse_checkpoint": True},
        ("Succeeded", "Migrated", {"web-a": ("n2", "2-3")}, []),
    ),
    "cold-rollback": (
        "cold",
        {"refuse_start": True},
        ("Failed", "RolledBack", {"web-a": ("n1", "0-1")}, []),
    ),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_walks_end_as_expected(scenario: str) -> None:
    mode, agents, expected = SCENARIOS[scenario]
    w = started_world(mode)
    walk(w, **agents)
    assert result(w) == expected


def crash_cases() -> list[Any]:
    cases = []
    for scenario in sorted(SCENARIOS):
        mode, agents, _ = SCENARIOS[scenario]
        count = 0
        probe = started_world(mode)
        for _ in range(20):  # count the decisions that write both
            out = probe.outcome()
            count += bool(out.tasks and out.status is not None)
            probe.apply(out)
            if probe.status["phase"] in ("Succeeded", "Failed"):
                break
            probe.react(**agents)
            probe.now += 1
        for k in range(1, count + 1):
            cases.append(pytest.param(scenario, k, id=f"{scenario}-crash{k}"))
    return cases


@pytest.mark.parametrize(("scenario", "crash_at"), crash_cases())
def test_a_crash_between_the_task_and_migration_writes_converges(
    scenario: str, crash_at: int
) -> None:
    mode, agents, expected = SCENARIOS[scenario]
    w = started_world(mode)
    walk(w, crash_at=crash_at, rounds=3 * int(TIMEOUT), **agents)
    assert result(w) == expected


# -- behaviour found missing by these tests, now fixed ---------------------------------------------


def test_time_waiting_for_a_target_does_not_count_against_the_first_step() -> None:
    w = World(migration("cold"), task("web-a"))
    w.decide()
    w.now = T0 + 2 * TIMEOUT  # the scheduler reserved late (it was restarting)
    w.reserve(("n2", "2-3"))
    w.decide()
    assert w.marker() == {"name": "m1", "step": "Stop", "node": "n1"}
    w.now += 1  # the source agent has had one second
    w.decide()
    assert w.status["phase"] == "Stopping"


def test_timings_keep_fractions_of_a_second() -> None:
    w = World(migration("cold"), task("web-a"), now=T0 + 0.75)
    w.decide()
    assert w.status["startTime"] == stamp(T0 + 0.75)
    w.reserve(("n2", "2-3"))
    w.decide()
    w.ack(started=True, done=True)
    w.now = T0 + 1.0
    w.decide()
    assert w.status["timings"] == {"reserve": 0.0, "stop": 0.25}


def test_a_begun_step_is_waited_for_when_a_sibling_fails() -> None:
    w = started_world("live", job=True)
    w.decide()
    w.refuse("web-a", "Checkpoint", "CheckpointFailed", "criu: dump failed")
    w.ack("web-b", "Checkpoint", started=True)  # web-b's agent is checkpointing it now
    w.decide()
    assert w.status["phase"] == "Checkpointing"
    assert w.marker("web-b") == {"name": "m1", "step": "Checkpoint", "node": "n1", "started": True}


def test_a_finished_migration_clears_only_its_own_steps() -> None:
    ours = task("web-a")
    ours["status"]["migration"] = {"name": "m1", "step": "Start", "node": "n1"}
    theirs = marked(task("web-b", cpuset="2-3"))
    mig = migration()
    mig["status"] = {"phase": "Failed", "reason": "RolledBack", "message": "rolled back"}
    w = World(mig, ours, theirs)
    out = w.decide()
    assert out == Outcome(tasks={"web-a": without(task("web-a")["status"])})
    assert w.marker("web-b") == {"name": "m0", "step": "Stop", "node": "n1"}


# -- calling a move off, and moves that would collide ----------------------------------------------


def deleting(w: World) -> None:
    w.migration["metadata"]["deletionTimestamp"] = stamp(w.now)


def test_a_migration_deleted_before_its_steps_moves_nothing() -> None:
    w = started_world("cold")
    deleting(w)
    out = w.decide()
    assert (w.status["phase"], w.status["reason"]) == ("Failed", "Deleted")
    assert out.tasks == {} and w.marker() is None


def test_a_migration_deleted_after_the_stop_starts_the_task_again_where_it_was() -> None:
    w = started_world("cold")
    w.decide()  # Stopping
    w.ack(started=True, done=True)
    deleting(w)
    w.decide()
    assert (w.status["phase"], w.status["reason"]) == ("Failed", "Deleted")
    status = w.task_status()
    assert status["node"] == "n1" and "migration" not in status and "containerID" not in status


def test_a_migration_deleted_after_the_commit_rolls_back() -> None:
    w = started_world("cold")
    w.decide()
    w.ack(started=True, done=True)
    w.decide()  # committed: Starting on n2
    deleting(w)
    w.decide()
    assert (w.status["phase"], w.status["reason"]) == ("Failed", "RolledBack")
    assert (w.task_status()["node"], w.task_status()["cpuset"]) == ("n1", "0-1")


def test_a_step_of_another_migration_is_never_overwritten() -> None:
    w = started_world("cold")
    w.tasks["web-a"]["status"]["migration"] = {"name": "other", "step": "Stop", "node": "n1"}
    out = w.decide()
    assert (w.status["phase"], w.status["reason"]) == ("Failed", "InvalidMigration")
    assert "being moved by migration other" in w.status["message"]
    assert out.tasks == {}
    assert w.task_status()["migration"]["name"] == "other"


def test_a_task_resized_while_its_target_was_reserved_is_not_moved() -> None:
    w = started_world("cold")
    w.tasks["web-a"]["status"]["cpuset"] = "0"
    w.decide()
    assert (w.status["phase"], w.status["reason"]) == ("Failed", "TaskChanged")


def test_a_begun_restore_is_waited_for_before_a_sibling_rolls_back() -> None:
    w = started_world("live", job=True)
    w.decide()  # Checkpointing
    for name in ("web-a", "web-b"):
        w.ack(name, "Checkpoint", started=True, done=True, checkpoint=f"/c/{name}")
    w.decide()  # committed: Transferring
    w.ack("web-b", "Restore", started=True)
    w.refuse("web-a", "Restore", "RestoreFailed", "no")
    w.migration["spec"]["mode"] = "live"
    out = w.decide()
    assert out.status is None and out.tasks == {}  # web-b's restore is under way: wait
    assert w.status["phase"] == "Transferring"
