"""Carrying out migration steps and Checkpoints on a node (the I/O around the pure decisions).

A node agent calls :func:`run_steps` and then :func:`run_checkpoints` at the start of each
round, before it plans its node, with the Tasks bound to the node and the containers its
driver sees. :func:`run_steps` carries out the Stop, Checkpoint and Restore steps that are
:func:`~swarmapply.agent.step_rules.actionable` on the node (a Start step is an ordinary
start, planned by :func:`~swarmapply.agent.plan.plan_node`); :func:`run_checkpoints` takes the
checkpoints that Checkpoint objects ask for. Both return the Tasks as written and the
containers as they are afterwards, so the round's plan works on the new state.

Guarantees: the first write of a step is ``started: true`` with compare-and-swap on the Task's
resourceVersion; when it conflicts nothing is done for that task this round (the next round
reads it again). A step the driver refuses is acknowledged in ``reason``/``message`` and the
task's phase is left alone; a failed checkpoint leaves the container running. Engine outages
(:class:`~swarmapply.agent.driver.EngineUnavailable`, :class:`~swarmapply.agent.driver.
NetworkNotReady`) propagate: the round is retried and the step, still unacknowledged, is
carried out again (a Checkpoint step whose checkpoint was taken before the outage is then
acknowledged from the files on disk).

Not done here: deciding steps (the migrator), moving checkpoints between machines that share no
storage (a Restore of a checkpoint not readable here fails with ``CheckpointUnreachable``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from swarmapply.agent.driver import TaskRefused, directory_bytes
from swarmapply.agent.model import Observed, container_spec
from swarmapply.agent.policy import Policy, refused_setting
from swarmapply.agent.step_rules import (
    CHECKPOINT,
    RESTORE,
    STOP,
    Step,
    StepPlan,
    actionable,
    checkpoint_decision,
    checkpoint_directory,
    plan_step,
    step_failed,
    transfer_action,
    with_step,
)
from swarmapply.api.store import Conflict, NotFound
from swarmapply.api.store.lifecycle import now_rfc3339

if TYPE_CHECKING:
    from swarmapply.agent.agent import NodeAgent

log = logging.getLogger(__name__)

Object = dict[str, Any]

#: Phases of a Checkpoint that are final.
CHECKPOINT_FINISHED = frozenset({"Succeeded", "Failed"})


class _Round:
    """The tasks and containers of one node's round, updated as steps change them."""

    def __init__(self, tasks: Sequence[Object], observed: Sequence[Observed]) -> None:
        self.tasks = list(tasks)
        self.observed = {o.container_id: o for o in observed}
        self.fresh: set[str] = set()

    def containers(self, task: Mapping[str, Any]) -> list[Observed]:
        uid = (task.get("metadata") or {}).get("uid")
        return [o for o in self.observed.values() if o.task_uid == uid]

    def replace(self, written: Object) -> None:
        name = written["metadata"]["name"]
        self.tasks = [written if t["metadata"]["name"] == name else t for t in self.tasks]


def run_steps(
    agent: NodeAgent, tasks: Sequence[Object], observed: Sequence[Observed], policy: Policy
) -> tuple[list[Object], list[Observed], frozenset[str]]:
    """Carry out the Stop, Checkpoint and Restore steps actionable on the agent's node.

    Returns:
        The Tasks (those written replaced by what the store returned), the containers now,
        and the ids of containers started (restored) here.

    Raises:
        EngineUnavailable, NetworkNotReady: The engine failed (the round is retried).
        StoreError: The store failed.
    """
    node = agent.name
    assert node is not None
    state = _Round(tasks, observed)
    for task in list(state.tasks):
        step = actionable(task, node)
        if step is None or step.step not in (STOP, CHECKPOINT, RESTORE):
            continue
        _run_step(agent, state, task, step, policy)
    return state.tasks, list(state.observed.values()), frozenset(state.fresh)


def _run_step(agent: NodeAgent, state: _Round, task: Object, step: Step, policy: Policy) -> None:
    node = str(agent.name)
    name = str(task["metadata"]["name"])
    existing: int | None = None
    if step.step == CHECKPOINT and step.started:
        directory = _directory(agent, step.migration, name)
        existing = directory_bytes(directory) if directory and os.path.isdir(directory) else None
    containers = state.containers(task)
    plan = plan_step(
        task, step, containers, node=node, root=agent.checkpoint_dir, existing_bytes=existing
    )
    if plan.failure is not None:
        _acknowledge(agent, state, task, step_failed(task["status"], *plan.failure))
        return
    if plan.mark_started:
        written = _write(agent, state, task, with_step(task["status"], started=True))
        if written is None:
            return
        task = written
        log.info("node %s: task %s: %s step of migration %s started", node, name, step.step,
                 step.migration)  # fmt: skip
    size: int | None = None
    if step.step == CHECKPOINT and plan.checkpoint is not None:
        size = _checkpoint_step(agent, state, task, plan)
        if size is None:
            return
    for container_id, why in plan.remove:
        _remove(agent, state, container_id, why)
    if step.step == RESTORE:
        _restore_step(agent, state, task, step, plan, policy)
        return
    if plan.done:
        fields: dict[str, Any] = {"done": True}
        if step.step == CHECKPOINT:
            measured = directory_bytes(plan.directory) if size is None else size
            fields.update(checkpoint=plan.directory, checkpointBytes=measured)
        _acknowledge(agent, state, task, with_step(task["status"], **fields))


def _checkpoint_step(agent: NodeAgent, state: _Round, task: Object, plan: StepPlan) -> int | None:
    """Checkpoint (stopping) and remove the task's container; its bytes, None when refused."""
    assert plan.checkpoint is not None
    name = task["metadata"]["name"]
    try:
        size = agent.driver.checkpoint(plan.checkpoint, plan.directory, leave_running=False)
    except TaskRefused as exc:
        log.warning("node %s: task %s: checkpoint refused: %s", agent.name, name, exc)
        _acknowledge(agent, state, task, step_failed(task["status"], exc.reason, str(exc)))
        return None
    _remove(agent, state, plan.checkpoint, f"task {name} was checkpointed to {plan.directory}")
    return size


def _restore_step(
    agent: NodeAgent, state: _Round, task: Object, step: Step, plan: StepPlan, policy: Policy
) -> None:
    name = str(task["metadata"]["name"])
    refused = refused_setting(task, policy)
    if refused is not None:
        _acknowledge(agent, state, task, step_failed(task["status"], "RefusedSetting",
                                                     f"task {name}: {refused}"))  # fmt: skip
        return
    source = str(step.checkpoint)
    if not step.transferred:
        failure = _transfer(source, plan.directory, name)
        if failure is not None:
            _acknowledge(agent, state, task, step_failed(task["status"], *failure))
            return
        written = _write(agent, state, task, with_step(task["status"], transferred=True))
        if written is None:
            return
        task = written
    try:
        spec = container_spec(task)
        container = agent.driver.restore(spec, plan.directory)
    except (ValueError, KeyError, TypeError) as exc:
        reason, message = "InvalidSpec", f"task {name}: cannot build its container: {exc}"
        _acknowledge(agent, state, task, step_failed(task["status"], reason, message))
        return
    except TaskRefused as exc:
        log.warning("node %s: task %s: restore refused: %s", agent.name, name, exc)
        _acknowledge(agent, state, task, step_failed(task["status"], exc.reason, str(exc)))
        return
    agent.starts += 1
    state.observed[container.container_id] = container
    state.fresh.add(container.container_id)
    log.info("node %s: restored task %s from %s (container %s)", agent.name, name,
             plan.directory, container.container_id)  # fmt: skip


def _transfer(source: str, local: str, task: str) -> tuple[str, str] | None:
    """Make the checkpoint's files local; ``(reason, message)`` when that cannot be done."""
    readable = os.path.isdir(source) and os.access(source, os.R_OK | os.X_OK)
    action = transfer_action(source, local, readable=readable)
    if action == "unreachable":
        return (
            "CheckpointUnreachable",
            f"task {task}: the checkpoint {source} is not readable on this node; "
            "checkpoints move between nodes only through storage both can read",
        )
    if action == "copy":
        try:
            shutil.rmtree(local, ignore_errors=True)
            os.makedirs(os.path.dirname(local), exist_ok=True)
            shutil.copytree(source, local, symlinks=True)
        except OSError as exc:
            return ("CheckpointUnreachable", f"task {task}: copying {source} to {local}: {exc}")
    return None


def _remove(agent: NodeAgent, state: _Round, container_id: str, why: str) -> None:
    agent.driver.remove(container_id)
    agent.removes += 1
    state.observed.pop(container_id, None)
    log.info("node %s: removed container %s: %s", agent.name, container_id, why)


def _acknowledge(agent: NodeAgent, state: _Round, task: Object, status: Object) -> None:
    migration = status.get("migration") or {}
    if migration.get("reason"):
        log.warning("node %s: task %s: %s step failed: %s: %s", agent.name,
                    task["metadata"]["name"], migration.get("step"), migration["reason"],
                    migration.get("message", ""))  # fmt: skip
    _write(agent, state, task, status)


def _write(agent: NodeAgent, state: _Round, task: Object, status: Object) -> Object | None:
    """Write the Task's status (compare-and-swap); None when it changed meanwhile or is gone."""
    try:
        written = agent.store.update_status({**task, "status": status})
    except (Conflict, NotFound) as exc:
        log.info("node %s: task %s changed meanwhile (%s); its step waits for the next round",
                 agent.name, task["metadata"]["name"], type(exc).__name__)  # fmt: skip
        agent.replan_soon()
        return None
    agent.remember_write(written)
    state.replace(written)
    return written


def _directory(agent: NodeAgent, *parts: str) -> str | None:
    try:
        return checkpoint_directory(agent.checkpoint_dir, *parts)
    except ValueError:
        return None


# --- Checkpoint objects ---------------------------------------------------------------------


def run_checkpoints(
    agent: NodeAgent,
    checkpoints: Sequence[Object],
    tasks: Sequence[Object],
    observed: Sequence[Observed],
) -> tuple[list[Object], list[Observed]]:
    """Take the checkpoints the unfinished Checkpoint objects of this node's Tasks ask for.

    Args:
        agent: The node's agent.
        checkpoints: Checkpoint objects, not finished (others are skipped); those whose task
            is not among ``tasks`` are skipped too.
        tasks: The Tasks bound to the node.
        observed: The node's containers.

    Returns:
        The Tasks (a task stopped by its checkpoint replaced by its written status) and the
        containers now.

    Raises:
        EngineUnavailable: The engine failed (the Checkpoint stays Running and is taken again).
        StoreError: The store failed.
    """
    state = _Round(tasks, observed)
    for checkpoint in checkpoints:
        status = checkpoint.get("status") or {}
        if status.get("phase") in CHECKPOINT_FINISHED:
            continue
        wanted = (checkpoint.get("spec") or {}).get("task")
        task = next((t for t in state.tasks if t["metadata"]["name"] == wanted), None)
        if task is None or (task.get("status") or {}).get("node") != agent.name:
            continue
        _take(agent, state, checkpoint, task)
    return state.tasks, list(state.observed.values())


def _take(agent: NodeAgent, state: _Round, checkpoint: Object, task: Object) -> None:
    name = str(checkpoint["metadata"]["name"])
    decision = checkpoint_decision(checkpoint, task, state.containers(task))
    base = {**(checkpoint.get("status") or {}), "node": agent.name}
    if decision.container is None:
        assert decision.failure is not None
        _finish_checkpoint(agent, checkpoint, {**base, "phase": "Failed"}, *decision.failure)
        return
    try:
        running = agent.store.update_status({**checkpoint, "status": {**base, "phase": "Running"}})
    except (Conflict, NotFound):
        agent.replan_soon()
        return
    directory = _directory(agent, name)
    if directory is None:
        message = f"checkpoint {name}: its name is not a plain directory name"
        _finish_checkpoint(agent, running, {**base, "phase": "Failed"}, "InvalidSpec", message)
        return
    leave = bool((checkpoint.get("spec") or {}).get("leaveRunning", True))
    try:
        size = agent.driver.checkpoint(decision.container, directory, leave_running=leave)
    except TaskRefused as exc:
        _finish_checkpoint(agent, running, {**base, "phase": "Failed"}, exc.reason, str(exc))
        return
    stamp = now_rfc3339()
    done = {**base, "phase": "Succeeded", "path": directory, "sizeBytes": size,
            "createdTime": stamp}  # fmt: skip
    message = (
        f"checkpoint of task {task['metadata']['name']} (container {decision.container}) "
        f"written to {directory} on node {agent.name}, {size} bytes"
        + ("" if leave else "; the container was stopped")
    )
    _finish_checkpoint(agent, running, done, "Checkpointed", message)
    if not leave:
        _end_checkpointed(agent, state, task, decision.container, name, stamp)


def _end_checkpointed(
    agent: NodeAgent, state: _Round, task: Object, container_id: str, name: str, stamp: str
) -> None:
    seen = state.observed.get(container_id)
    if seen is not None:
        state.observed[container_id] = dataclasses.replace(seen, state="exited", exit_code=0)
    status = {k: v for k, v in task["status"].items() if k not in ("exitCode",)}
    status.update(
        phase="Succeeded",
        reason="Checkpointed",
        message=f"container {container_id} was checkpointed by Checkpoint {name} and stopped",
        finishTime=stamp,
    )
    _write(agent, state, task, status)


def _finish_checkpoint(
    agent: NodeAgent, checkpoint: Object, status: Object, reason: str, message: str
) -> None:
    failed = status.get("phase") == "Failed"
    status = {**status, "reason": reason, "message": message}
    if failed:
        log.warning("node %s: checkpoint %s failed: %s: %s", agent.name,
                    checkpoint["metadata"]["name"], reason, message)  # fmt: skip
    else:
        log.info("node %s: %s", agent.name, message)
    try:
        written = agent.store.update_status({**checkpoint, "status": status})
    except (Conflict, NotFound) as exc:
        log.warning("node %s: checkpoint %s changed while its result was written (%s): %s",
                    agent.name, checkpoint["metadata"]["name"], type(exc).__name__,
                    message)  # fmt: skip
        return
    agent.event(written, "CheckpointFailed" if failed else "Checkpointed", message,
                "Warning" if failed else "Normal")  # fmt: skip


__all__ = ["CHECKPOINT_FINISHED", "run_checkpoints", "run_steps"]
