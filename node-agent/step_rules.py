"""The node agent's part in migrations and checkpoints, as pure decisions.

The migrator drives agents only through a Task's ``status.migration`` (``name``, ``step``
Stop | Checkpoint | Start | Restore, ``node``, and the agent's acknowledgements ``started``,
``transferred``, ``done``, ``reason``/``message``, ``checkpoint``/``checkpointBytes``). This
module reads that object (:func:`migration_step`), says when the agent of a node must act on it
(:func:`actionable`) and when a task's usual handling is suspended (:func:`suspends`), decides
what one step needs on the node (:func:`plan_step`) and computes the acknowledgements
(:func:`with_step`, :func:`step_failed`). It also decides Checkpoint objects
(:func:`checkpoint_decision`). It does no I/O: :mod:`swarmapply.agent.steps` carries the
decisions out, :mod:`swarmapply.agent.plan` uses the predicates.

Rules it encodes (the migration contract): the agent of ``node`` acts only on a live Task bound
to ``node`` whose step has neither ``done`` nor ``reason``. While a Stop or Checkpoint step is
present (acknowledged or not) the task is never started here and never reported ended or lost;
the same holds for a Start or Restore step until it is ``done``. A failed step is acknowledged
in ``reason``/``message`` and the task's phase is left as it is.

Not decided here: when a step is written or cleared (the migrator), where a task goes (the
scheduler).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swarmapply.agent.model import Observed

STOP = "Stop"
CHECKPOINT = "Checkpoint"
START = "Start"
RESTORE = "Restore"
#: Steps carried out on the node the task leaves, and on the node it goes to.
SOURCE_STEPS = frozenset({STOP, CHECKPOINT})
TARGET_STEPS = frozenset({START, RESTORE})
#: Container states in which a container has started (as :data:`swarmapply.agent.plan.STARTED`).
STARTED_STATES = frozenset({"running", "paused", "restarting"})
_TERMINAL = frozenset({"Succeeded", "Failed"})

Object = dict[str, Any]


@dataclass(frozen=True)
class Step:
    """A Task's ``status.migration``, read.

    Attributes:
        migration: The Migration's name.
        step: Stop, Checkpoint, Start or Restore.
        node: The node whose agent carries it out.
        started: The agent has begun it.
        transferred: Restore: the checkpoint's files are on the node.
        done: The agent finished it.
        reason: Why the agent could not carry it out (None when it did not fail).
        checkpoint: Where the checkpoint is (written by Checkpoint, read by Restore).
    """

    migration: str
    step: str
    node: str
    started: bool = False
    transferred: bool = False
    done: bool = False
    reason: str | None = None
    checkpoint: str | None = None

    @property
    def acknowledged(self) -> bool:
        """Whether the agent has finished with it (``done``) or given up on it (``reason``)."""
        return self.done or self.reason is not None


@dataclass(frozen=True)
class StepPlan:
    """What carrying out one step on this node takes, in order.

    Attributes:
        mark_started: Write ``started: true`` first (compare-and-swap) and stop the round for
            this task when that write conflicts.
        remove: ``(container id, why)`` to stop and remove (before anything else happens,
            except a checkpoint, which goes first).
        checkpoint: The container to checkpoint (Checkpoint), then removed.
        restore: Restore the task from ``step.checkpoint`` (Restore).
        directory: The step's checkpoint directory on this node.
        done: Write ``done: true`` when the actions succeed (with ``checkpoint`` and
            ``checkpointBytes`` after a checkpoint).
        failure: ``(reason, message)`` to acknowledge instead of doing anything.
    """

    mark_started: bool = False
    remove: tuple[tuple[str, str], ...] = ()
    checkpoint: str | None = None
    restore: bool = False
    directory: str = ""
    done: bool = False
    failure: tuple[str, str] | None = None


def migration_step(task: Mapping[str, Any]) -> Step | None:
    """The Task's ``status.migration`` as a :class:`Step`; None when it has none."""
    raw = (task.get("status") or {}).get("migration")
    if not isinstance(raw, Mapping) or not raw.get("step"):
        return None
    reason = raw.get("reason")
    checkpoint = raw.get("checkpoint")
    return Step(
        migration=str(raw.get("name", "")),
        step=str(raw["step"]),
        node=str(raw.get("node", "")),
        started=bool(raw.get("started", False)),
        transferred=bool(raw.get("transferred", False)),
        done=bool(raw.get("done", False)),
        reason=str(reason) if reason else None,
        checkpoint=str(checkpoint) if checkpoint else None,
    )


def suspends(step: Step | None) -> bool:
    """Whether the task's usual handling (start it, report its end) is suspended by ``step``.

    A Stop or Checkpoint step suspends it while present; a Start or Restore step until done.
    """
    if step is None:
        return False
    return step.step in SOURCE_STEPS or not step.done


def actionable(task: Mapping[str, Any], node: str) -> Step | None:
    """The step the agent of ``node`` must carry out on ``task`` now, if any.

    That is: a step for ``node``, on a live task bound to ``node`` and not being deleted,
    with neither ``done`` nor ``reason``.
    """
    step = migration_step(task)
    status = task.get("status") or {}
    if step is None or step.node != node or status.get("node") != node:
        return None
    if status.get("phase") in _TERMINAL or (task.get("metadata") or {}).get("deletionTimestamp"):
        return None
    return None if step.acknowledged else step


def checkpoint_directory(root: str, *parts: str) -> str:
    """``<root>/<part>/...``: a migration's (``migration``, ``task``) or a Checkpoint's dir.

    Raises:
        ValueError: A part is empty or would leave the root (``..``, a path separator).
    """
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part:
            raise ValueError(f"checkpoint directory: {part!r} is not a plain name")
    return os.path.join(root, *parts)


def with_step(status: Mapping[str, Any], **fields: Any) -> Object:
    """A copy of ``status`` whose ``migration`` has ``fields`` set (None values removed)."""
    migration = dict(status.get("migration") or {})
    for key, value in fields.items():
        if value is None:
            migration.pop(key, None)
        else:
            migration[key] = value
    return {**status, "migration": migration}


def step_failed(status: Mapping[str, Any], reason: str, message: str) -> Object:
    """``status`` with the step acknowledged as failed; the phase and the rest unchanged."""
    return with_step(status, reason=reason, message=message)


def plan_step(
    task: Mapping[str, Any],
    step: Step,
    containers: Sequence[Observed],
    *,
    node: str,
    root: str,
    existing_bytes: int | None = None,
) -> StepPlan:
    """What carrying out a Stop, Checkpoint or Restore step on ``node`` takes (Start is planned
    with the task's containers in :func:`swarmapply.agent.plan.plan_node`).

    Args:
        task: The Task (its step is :func:`actionable` on ``node``).
        step: Its step.
        containers: The task's containers on ``node`` (its uid's).
        node: This node.
        root: This agent's checkpoint root.
        existing_bytes: Checkpoint: the size of a checkpoint already in the step's directory
            (left by an attempt that stopped before it was acknowledged), None when there is
            none.
    """
    name = str((task.get("metadata") or {}).get("name", "?"))
    mark = not step.started
    try:
        directory = checkpoint_directory(root, step.migration, name)
    except ValueError as exc:
        return StepPlan(failure=("InvalidSpec", f"task {name}: migration {step.migration}: {exc}"))
    if step.step == STOP:
        why = f"task {name} stops on node {node} for migration {step.migration}"
        return StepPlan(
            mark_started=mark, remove=tuple((c.container_id, why) for c in containers), done=True
        )
    started = [c for c in containers if c.state in STARTED_STATES]
    if step.step == CHECKPOINT:
        if not started:
            if step.started and existing_bytes:  # taken before a restart; not acknowledged
                stale = tuple((c.container_id, f"task {name} was checkpointed") for c in containers)
                return StepPlan(remove=stale, directory=directory, done=True)
            states = ", ".join(sorted({c.state for c in containers})) or "none"
            return StepPlan(
                failure=(
                    "TaskNotRunning",
                    f"task {name} has no running container on node {node} to checkpoint "
                    f"(containers: {states})",
                )
            )
        keep = started[0]
        others = tuple(
            (c.container_id, f"task {name} has another container, {keep.container_id}")
            for c in containers
            if c is not keep
        )
        return StepPlan(
            mark_started=mark,
            remove=others,
            checkpoint=keep.container_id,
            directory=directory,
            done=True,
        )
    if step.step == RESTORE:
        if started:
            return StepPlan()  # restored already: the planner reports it Running and done
        if not step.checkpoint:
            return StepPlan(
                failure=(
                    "CheckpointUnreachable",
                    f"task {name}: migration {step.migration} names no checkpoint to restore",
                )
            )
        stale = tuple(
            (
                c.container_id,
                f"task {name} is restored on node {node}; its earlier container "
                f"{c.container_id} ({c.state}) goes first",
            )
            for c in containers
        )
        return StepPlan(mark_started=mark, remove=stale, restore=True, directory=directory)
    return StepPlan()


def transfer_action(source: str, local: str, *, readable: bool) -> str:
    """How a Restore gets the checkpoint's files into ``local``: ``none`` (they are there),
    ``copy`` (``source`` is readable here, e.g. shared storage) or ``unreachable``."""
    if os.path.normpath(source) == os.path.normpath(local):
        return "none" if readable else "unreachable"
    return "copy" if readable else "unreachable"


@dataclass(frozen=True)
class CheckpointDecision:
    """What to do with one Checkpoint object this round.

    Attributes:
        container: The container to checkpoint (None: fail with ``failure``, or skip).
        failure: ``(reason, message)`` to fail the Checkpoint with.
    """

    container: str | None = None
    failure: tuple[str, str] | None = None


def checkpoint_decision(
    checkpoint: Mapping[str, Any], task: Mapping[str, Any], containers: Sequence[Observed]
) -> CheckpointDecision:
    """Take the checkpoint, or fail it with ``TaskNotRunning`` (pure).

    Args:
        checkpoint: The Checkpoint object (not finished).
        task: Its Task, bound to this node.
        containers: The task's containers on this node.
    """
    name = str((checkpoint.get("metadata") or {}).get("name", "?"))
    status = task.get("status") or {}
    task_name = str((task.get("metadata") or {}).get("name", "?"))
    recorded = status.get("containerID")
    running = [c for c in containers if c.state in STARTED_STATES]
    chosen = next((c for c in running if c.container_id == recorded), None)
    if status.get("phase") != "Running" or not recorded or chosen is None:
        what = f"phase {status.get('phase') or 'none'}" + ("" if recorded else ", no container")
        return CheckpointDecision(
            failure=(
                "TaskNotRunning",
                f"checkpoint {name}: task {task_name} is not running ({what}); only a running "
                "task's container can be checkpointed",
            )
        )
    return CheckpointDecision(container=chosen.container_id)


__all__ = [
    "CHECKPOINT",
    "RESTORE",
    "SOURCE_STEPS",
    "START",
    "STOP",
    "TARGET_STEPS",
    "CheckpointDecision",
    "Step",
    "StepPlan",
    "actionable",
    "checkpoint_decision",
    "checkpoint_directory",
    "migration_step",
    "plan_step",
    "step_failed",
    "suspends",
    "transfer_action",
    "with_step",
]
