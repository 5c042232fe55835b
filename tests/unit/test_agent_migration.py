"""The node agent's migration steps and checkpoints, as pure decisions (no store, no engine)."""

from __future__ import annotations

from typing import Any

import pytest

from swarmapply.agent.docker_checkpoint import (
    criu_errors,
    criu_log_path,
    failure_message,
    split_directory,
)
from swarmapply.agent.driver import TaskRefused
from swarmapply.agent.model import Observed
from swarmapply.agent.plan import NodePlan, plan_node
from swarmapply.agent.policy import NO_POLICY
from swarmapply.agent.step_rules import (
    Step,
    actionable,
    checkpoint_decision,
    checkpoint_directory,
    migration_step,
    plan_step,
    step_failed,
    suspends,
    transfer_action,
    with_step,
)

NOW = "2024-05-01T12:00:00Z"
MI = 1 << 20
ROOT = "/srv/checkpoints"
#: The engine's answer to a checkpoint on a kernel whose vDSO CRIU 3.17 cannot handle.
ENGINE_TEXT = (
    "Cannot checkpoint container t-1: runc did not terminate successfully: exit status 1: "
    "criu failed: type DUMP errno 0 path= /var/run/docker/containerd/daemon/"
    "io.containerd.runtime.v2.task/moby/abc/criu-dump.log: unknown"
)
CRIU_LOG = """(00.000000) Version: 3.17.1 (gitid 0)
(00.009757) Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds
(00.009759) Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable
(00.009760) Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed when initializing \
kerndat.
(00.009800) Dumping finished with error
"""


def task(
    step: str | None = None,
    *,
    node: str = "n1",
    step_node: str | None = None,
    phase: str = "Running",
    cpuset: str = "0-1",
    container: str | None = "c-1",
    **migration: Any,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "node": node, "cpuset": cpuset, "memory": 64 * MI}
    if container is not None:
        status["containerID"] = container
        status["startTime"] = "2024-05-01T11:00:00Z"
    if step is not None:
        status["migration"] = {"name": "mig", "step": step, "node": step_node or node, **migration}
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Task",
        "metadata": {"name": "web-a", "uid": "u-a"},
        "spec": {"job": "web", "image": "busybox", "cores": 2, "memory": 64 * MI},
        "status": status,
    }


def seen(state: str = "running", cid: str = "c-1", **kw: Any) -> Observed:
    kw.setdefault("started_at", "2024-05-01T11:00:00Z")
    if state == "exited":
        kw.setdefault("exit_code", 0)
        kw.setdefault("finished_at", "2024-05-01T11:30:00Z")
    return Observed(cid, "web-a", "u-a", state, cpuset="0-1", memory=64 * MI, **kw)


def plan(tasks: list[dict[str, Any]], observed: list[Observed], **kw: Any) -> NodePlan:
    return plan_node("n1", tasks, observed, now=NOW, **kw)


# -- reading the step ------------------------------------------------------------------------


def test_a_step_is_read_with_its_acknowledgements() -> None:
    t = task("Checkpoint", started=True, reason="CheckpointFailed", checkpoint="/x")
    assert migration_step(t) == Step(
        "mig", "Checkpoint", "n1", started=True, reason="CheckpointFailed", checkpoint="/x"
    )
    assert migration_step(task()) is None


@pytest.mark.parametrize(
    ("t", "acts"),
    [
        (task("Stop"), True),
        (task("Stop", started=True), True),
        (task("Stop", done=True), False),
        (task("Stop", reason="X"), False),
        (task("Stop", step_node="n2"), False),
        (task("Start", node="n2", step_node="n1"), False),
        (task("Stop", phase="Succeeded"), False),
        (task("Stop", phase="Failed"), False),
    ],
    ids=["new", "started", "done", "acked", "other-node", "elsewhere", "succeeded", "failed"],
)
def test_only_the_agent_of_the_steps_node_acts_on_a_live_unacknowledged_step(
    t: dict[str, Any], acts: bool
) -> None:
    assert (actionable(t, "n1") is not None) is acts


def test_source_steps_suspend_while_present_target_steps_until_done() -> None:
    assert suspends(migration_step(task("Stop", done=True)))
    assert suspends(migration_step(task("Checkpoint", reason="CheckpointFailed")))
    assert suspends(migration_step(task("Start")))
    assert suspends(migration_step(task("Restore", reason="RestoreFailed")))
    assert not suspends(migration_step(task("Start", done=True)))
    assert not suspends(migration_step(task("Restore", done=True)))
    assert not suspends(None)


def test_acknowledgements_touch_only_the_step() -> None:
    status = task("Checkpoint", started=True)["status"]
    failed = step_failed(status, "CheckpointFailed", "criu failed")
    assert failed["phase"] == "Running" and failed["containerID"] == "c-1"
    assert failed["migration"] == {
        "name": "mig",
        "step": "Checkpoint",
        "node": "n1",
        "started": True,
        "reason": "CheckpointFailed",
        "message": "criu failed",
    }
    assert status["migration"].get("reason") is None, "the input is not changed"
    assert "reason" not in with_step(failed, reason=None, message=None)["migration"]


def test_checkpoint_directories_stay_below_the_root() -> None:
    assert checkpoint_directory(ROOT, "mig", "web-a") == f"{ROOT}/mig/web-a"
    for bad in ("..", "", "a/b", "."):
        with pytest.raises(ValueError, match="not a plain name"):
            checkpoint_directory(ROOT, bad)


# -- Stop ------------------------------------------------------------------------------------


def test_stop_before_started_marks_started_then_removes_every_container() -> None:
    t = task("Stop")
    step = migration_step(t)
    assert step is not None
    result = plan_step(t, step, [seen(), seen("exited", "c-0")], node="n1", root=ROOT)
    assert result.mark_started and result.done
    assert [cid for cid, _ in result.remove] == ["c-1", "c-0"]
    assert "stops on node n1 for migration mig" in result.remove[0][1]
    again = plan_step(t, Step("mig", "Stop", "n1", started=True), [], node="n1", root=ROOT)
    assert not again.mark_started and again.done and again.remove == ()


def test_while_stopping_nothing_is_started_and_no_end_is_reported() -> None:
    for t in (task("Stop"), task("Stop", started=True), task("Stop", done=True)):
        assert plan([t], []).empty, "no ContainerLost, no start while the step is present"
        assert plan([t], [seen("exited")]).empty, "no Succeeded for a container stopped on purpose"
        assert plan([t], [seen("created")]).empty, "a created container is not started"


def test_while_stopping_a_running_container_is_still_reported_and_not_resized() -> None:
    t = task("Stop", cpuset="2-3")
    result = plan([t], [seen()])
    assert result.start == () and result.update == () and result.remove == ()
    assert result.statuses == {}


def test_no_container_lost_while_any_step_is_in_flight() -> None:
    for step in ("Stop", "Checkpoint", "Start", "Restore"):
        for ack in ({}, {"started": True}, {"reason": "X"}):
            result = plan([task(step, **ack)], [])
            for status in result.statuses.values():
                assert status.get("reason") != "ContainerLost", (step, ack)
                assert status["phase"] == "Running", (step, ack)


# -- Checkpoint ------------------------------------------------------------------------------


def test_checkpoint_takes_the_running_container_into_the_migration_directory() -> None:
    t = task("Checkpoint")
    step = migration_step(t)
    assert step is not None
    result = plan_step(t, step, [seen("exited", "c-0"), seen()], node="n1", root=ROOT)
    assert result.mark_started and result.checkpoint == "c-1" and result.done
    assert result.directory == f"{ROOT}/mig/web-a"
    assert [cid for cid, _ in result.remove] == ["c-0"]


def test_checkpoint_of_a_task_without_a_running_container_fails_the_step() -> None:
    t = task("Checkpoint")
    step = migration_step(t)
    assert step is not None
    result = plan_step(t, step, [seen("exited")], node="n1", root=ROOT)
    assert result.failure is not None and result.failure[0] == "TaskNotRunning"
    assert "(containers: exited)" in result.failure[1]
    assert not result.mark_started and result.checkpoint is None


def test_a_checkpoint_taken_before_a_restart_is_acknowledged_from_disk() -> None:
    t = task("Checkpoint", started=True)
    step = migration_step(t)
    assert step is not None
    result = plan_step(t, step, [seen("exited")], node="n1", root=ROOT, existing_bytes=4096)
    assert result.done and result.checkpoint is None and result.failure is None
    assert [cid for cid, _ in result.remove] == ["c-1"]


def test_a_failed_checkpoint_keeps_the_container_running_and_the_task_untouched() -> None:
    t = task("Checkpoint", started=True, reason="CheckpointFailed", message="criu failed")
    result = plan([t], [seen()])
    assert result.remove == () and result.start == () and result.update == ()
    assert result.statuses == {}, "the task stays Running with its container"
    assert actionable(t, "n1") is None, "a failed step is not tried again"


# -- Start -----------------------------------------------------------------------------------


def target(step: str = "Start", **kw: Any) -> dict[str, Any]:
    """A task the migrator has moved to n1: new cpuset, container and start time cleared."""
    return task(step, cpuset="2-3", container=None, **kw)


def test_start_starts_the_task_with_its_new_cores() -> None:
    result = plan([target()], [])
    assert [s.cpuset for s in result.start] == ["2-3"]
    assert result.statuses == {}


def test_start_replaces_a_stale_container_left_by_an_earlier_attempt() -> None:
    for stale in (seen("exited", "c-old"), seen("created", "c-old"), seen("dead", "c-old")):
        result = plan([target()], [stale])
        assert [cid for cid, _ in result.remove] == ["c-old"], stale.state
        assert "earlier container c-old" in result.remove[0][1]
        assert [s.cpuset for s in result.start] == ["2-3"]
        assert result.statuses == {}, "the stale container's end is never reported"


def test_start_reports_running_with_the_step_done() -> None:
    result = plan([target()], [seen(cid="c-new", started_at="2024-05-01T12:00:01Z")])
    status = result.statuses["web-a"]
    assert status["phase"] == "Running" and status["containerID"] == "c-new"
    assert status["startTime"] == "2024-05-01T12:00:01Z"
    assert status["migration"]["done"] is True and status["cpuset"] == "2-3"
    assert result.start == () and result.remove == ()


def test_a_container_started_this_round_that_ended_at_once_is_reported_not_replaced() -> None:
    ended = seen("exited", "c-new", exit_code=3)
    result = plan([target()], [ended], fresh=frozenset({"c-new"}))
    assert result.start == () and result.remove == ()
    status = result.statuses["web-a"]
    assert status["phase"] == "Failed" and status["exitCode"] == 3
    assert status["migration"]["done"] is True


def test_a_refused_start_is_acknowledged_in_the_step_not_a_failed_task() -> None:
    t = target()
    t["spec"]["securityContext"] = {"privileged": True}
    result = plan([t], [], policy=NO_POLICY)
    status = result.statuses["web-a"]
    assert status["phase"] == "Running", "the phase is left as it was"
    assert status["migration"]["reason"] == "RefusedSetting"
    assert "privileged" in status["migration"]["message"]
    assert result.start == ()
    broken = target()
    del broken["spec"]["image"]
    status = plan([broken], []).statuses["web-a"]
    assert status["phase"] == "Running" and status["migration"]["reason"] == "InvalidSpec"


def test_a_start_that_failed_waits_for_the_migrator() -> None:
    t = target(reason="ImageMissing", message="no image")
    assert plan([t], []).empty
    assert plan([t], [seen("exited", "c-old")]).empty


def test_once_done_a_started_task_is_handled_as_usual() -> None:
    t = target(done=True)
    t["status"]["containerID"] = "c-new"
    result = plan([t], [])
    assert result.statuses["web-a"]["reason"] == "ContainerLost"


def test_start_on_another_node_does_not_start_here() -> None:
    t = task("Start", step_node="n2", container=None)
    assert plan([t], []).empty


# -- Restore ---------------------------------------------------------------------------------


def test_restore_removes_stale_containers_and_restores_from_the_checkpoint() -> None:
    t = target("Restore", checkpoint=f"{ROOT}/mig/web-a")
    step = migration_step(t)
    assert step is not None
    result = plan_step(t, step, [seen("exited", "c-old")], node="n1", root=ROOT)
    assert result.mark_started and result.restore
    assert result.directory == f"{ROOT}/mig/web-a"
    assert [cid for cid, _ in result.remove] == ["c-old"]
    assert plan([t], []).empty, "the planner leaves the restore to the step"


def test_restore_without_a_checkpoint_fails_the_step() -> None:
    t = target("Restore")
    step = migration_step(t)
    assert step is not None
    result = plan_step(t, step, [], node="n1", root=ROOT)
    assert result.failure is not None and result.failure[0] == "CheckpointUnreachable"


def test_a_restored_container_is_reported_running_with_the_step_done() -> None:
    t = target("Restore", checkpoint="/x", started=True, transferred=True)
    step = migration_step(t)
    assert step is not None
    assert plan_step(t, step, [seen(cid="c-r")], node="n1", root=ROOT).restore is False
    status = plan([t], [seen(cid="c-r")], fresh=frozenset({"c-r"})).statuses["web-a"]
    assert status["phase"] == "Running" and status["containerID"] == "c-r"
    assert status["migration"]["done"] is True and status["migration"]["transferred"] is True


def test_transfer_copies_a_readable_checkpoint_and_refuses_an_unreadable_one() -> None:
    assert transfer_action("/a/x", "/a/x/", readable=True) == "none"
    assert transfer_action("/shared/x", "/local/x", readable=True) == "copy"
    assert transfer_action("/other-machine/x", "/local/x", readable=False) == "unreachable"
    assert transfer_action("/a/x", "/a/x", readable=False) == "unreachable"


# -- Checkpoint objects ----------------------------------------------------------------------


def checkpoint_object(name: str = "cp-1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Checkpoint",
        "metadata": {"name": name},
        "spec": {"task": "web-a", **spec},
    }


def test_a_checkpoint_takes_the_tasks_recorded_running_container() -> None:
    decision = checkpoint_decision(checkpoint_object(), task(), [seen("exited", "c-0"), seen()])
    assert decision.container == "c-1" and decision.failure is None


@pytest.mark.parametrize(
    ("t", "observed"),
    [
        (task(phase="Scheduled", container=None), []),
        (task(phase="Succeeded"), [seen("exited")]),
        (task(), []),
        (task(), [seen("exited")]),
    ],
    ids=["scheduled", "succeeded", "container-gone", "container-exited"],
)
def test_a_checkpoint_of_a_task_that_does_not_run_fails(
    t: dict[str, Any], observed: list[Observed]
) -> None:
    decision = checkpoint_decision(checkpoint_object(), t, observed)
    assert decision.container is None and decision.failure is not None
    assert decision.failure[0] == "TaskNotRunning"
    assert decision.failure[1].startswith("checkpoint cp-1: task web-a is not running")


# -- the docker driver's CRIU messages (pure) ------------------------------------------------


def test_the_criu_log_the_engine_names_is_found_and_its_errors_quoted() -> None:
    path = criu_log_path(ENGINE_TEXT)
    assert path is not None and path.endswith("/moby/abc/criu-dump.log")
    assert criu_errors(CRIU_LOG) == [
        "vdso: Unexpected rt vDSO area bounds",
        "vdso: Failed to fill self vdso symtable",
        "kerndat_vdso_fill_symtable failed when initializing kerndat.",
    ]
    assert criu_errors(CRIU_LOG, limit=1) == [
        "kerndat_vdso_fill_symtable failed when initializing kerndat."
    ]
    message = failure_message("checkpointing container c-1 into /d", ENGINE_TEXT, CRIU_LOG)
    assert message.startswith("checkpointing container c-1 into /d: Cannot checkpoint")
    assert f"the CRIU log {path} says: vdso: Unexpected rt vDSO area bounds" in message
    unread = failure_message("checkpointing", ENGINE_TEXT, None)
    assert unread.endswith(f"see the CRIU log {path} on the engine's machine")
    assert failure_message("x", "no such file", None) == "x: no such file"


def test_a_checkpoint_directory_is_split_into_the_engines_dir_and_id() -> None:
    assert split_directory(f"{ROOT}/mig/web-a/") == (f"{ROOT}/mig", "web-a")
    with pytest.raises(TaskRefused, match="expected an absolute path"):
        split_directory("relative/dir")
