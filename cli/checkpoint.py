"""``swarmapply checkpoint task``: a CRIU checkpoint of a running task's container.

Creates a Checkpoint; the agent of the task's node takes it (``docker checkpoint`` through the
engine's experimental API) and reports where its files are and how large they are. By default
the container keeps running; ``--stop`` lets CRIU stop it, and the task then ends Succeeded
with reason Checkpointed. ``--wait`` follows the Checkpoint until it succeeds or fails.

It also turns RESTfulSwarm checkpoint requests (``{"node", "containers": [...]}``) into one
Checkpoint per container, for ``apply -f``.

What it does not guarantee: the task is checked to be bound and live before the Checkpoint is
written, not at the moment the agent acts; the agent then fails it with reason TaskNotRunning.
"""

from __future__ import annotations

import argparse
from typing import Any

from swarmapply.api.admission import AdmissionError, AdmittedRequest
from swarmapply.api.kinds import API_VERSION
from swarmapply.api.quantity import format_memory
from swarmapply.api.restfulswarm import CheckpointRequest
from swarmapply.api.store import NotFound, Store
from swarmapply.cli.context import Context
from swarmapply.cli.migrate import (
    add_wait_arguments,
    admitted,
    derived_name,
    find,
    follow,
    generate_prefix,
    printer,
    running_node,
)
from swarmapply.cli.output import ref
from swarmapply.controllers.job_tasks import TASK_LABEL, is_terminating, name_of

Object = dict[str, Any]

EXAMPLES = """examples:
  swarmapply checkpoint task web-server --wait        the container keeps running
  swarmapply checkpoint task web-server --stop        CRIU stops it; the task ends Succeeded

Checkpoints need a Docker engine started with --experimental and CRIU that works on the
node's kernel; the sim driver refuses them (reason CheckpointUnsupported).
Exit status with --wait: 0 when the checkpoint succeeded, 1 when it failed or timed out.
"""


def checkpoint_object(task: str, leave_running: bool = True, name: str | None = None) -> Object:
    """A Checkpoint of Task ``task`` (named ``name``, else ``<task>-`` and a random suffix)."""
    metadata: Object = {"name": name} if name else {"generateName": generate_prefix(task)}
    return {
        "apiVersion": API_VERSION,
        "kind": "Checkpoint",
        "metadata": metadata,
        "spec": {"task": task, "leaveRunning": leave_running},
    }


def checkpoint_progress(checkpoint: Object) -> str:
    """One line saying where a Checkpoint is (its phase; path and size once it succeeded)."""
    status = checkpoint.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    line = f"{ref('Checkpoint', name_of(checkpoint))} {phase}"
    if phase == "Succeeded":
        size = status.get("sizeBytes")
        shown = format_memory(size) if isinstance(size, int) else "size unknown"
        line += f": {status.get('path') or '?'} on node {status.get('node') or '?'} ({shown})"
    elif phase == "Failed":
        said = ": ".join(str(p) for p in (status.get("reason"), status.get("message")) if p)
        line += f": {said or 'no reason given'}"
    elif status.get("node"):
        line += f" (node {status['node']})"
    return line


def task_checkpoint(store: Store, task_name: str, leave_running: bool) -> Object:
    """Checks that a Task runs and returns its Checkpoint (not yet written).

    Raises:
        NotRunning: The task is absent, not bound, finished or being deleted.
    """
    running_node(find(store, "Task", task_name))
    return checkpoint_object(task_name, leave_running)


def request_checkpoint_name(request: CheckpointRequest) -> str:
    """The Checkpoint's name for one container of a RESTfulSwarm checkpoint request."""
    return derived_name(request.container, request.node, request.container)


def resolve_checkpoint_request(store: Store, item: AdmittedRequest) -> tuple[Object, bool]:
    """The Checkpoint one container of a RESTfulSwarm checkpoint request asks for.

    The container is the live Task bound to ``node`` whose entry name (label
    ``swarmapply.io/task``) or own name is the container's name. When the Checkpoint of this
    request exists already it is returned as it is, without these checks.

    Returns:
        The Checkpoint (as admitted, not yet written) and whether it exists already.

    Raises:
        AdmissionError: The node does not exist, or no single live task of that name runs
            there; the error names ``node`` or the container's entry in ``containers``.
    """
    request = item.request
    assert isinstance(request, CheckpointRequest)
    name = request_checkpoint_name(request)
    try:
        return store.get("Checkpoint", name), True
    except NotFound:
        pass
    try:
        store.get("Node", request.node)
    except NotFound:
        raise AdmissionError([item.error(("node",), f'node "{request.node}" not found')]) from None
    bound = store.list("Task", field_selector=f"status.node={request.node}").items
    matches = [
        task
        for task in bound
        if not is_terminating(task)
        and (task.get("status") or {}).get("phase") == "Running"
        and request.container
        in (name_of(task), ((task.get("metadata") or {}).get("labels") or {}).get(TASK_LABEL))
    ]
    where = ("containers", request.index)
    if not matches:
        message = f'no running task "{request.container}" on node "{request.node}"'
        raise AdmissionError([item.error(where, message)])
    if len(matches) > 1:
        names = ", ".join(sorted(name_of(t) for t in matches))
        message = (
            f'"{request.container}" names several tasks on node "{request.node}" ({names});'
            " give the task's own name"
        )
        raise AdmissionError([item.error(where, message)])
    obj = checkpoint_object(name_of(matches[0]), True, name)
    return admitted(obj, item.source), False


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds the ``checkpoint`` command to the command parsers."""
    parser = commands.add_parser(
        "checkpoint",
        help="take a CRIU checkpoint of a running task",
        description="Take a CRIU checkpoint of a running task's container. The agent of its\n"
        "node writes it and reports its path and size in the Checkpoint's status.",
        epilog=EXAMPLES,
        **kw,
    )
    parser.add_argument("what", choices=("task",), help="what to checkpoint: task")
    parser.add_argument("name", help="the Task's name")
    parser.add_argument(
        "--stop", action="store_true", help="stop the container (default: leave it running)"
    )
    add_wait_arguments(parser, "checkpoint")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Runs ``swarmapply checkpoint task``; with --wait, 0 on success and 1 on failure."""
    store = ctx.store(must_exist=True)
    obj = task_checkpoint(store, args.name, leave_running=not args.stop)
    created = store.create(admitted(obj, f"checkpoints/{args.name}"))
    name = name_of(created)
    ctx.out(f"{ref('Checkpoint', name)} created")
    if not args.wait:
        return 0
    final = follow(store, "Checkpoint", name, args.timeout, printer(ctx, checkpoint_progress))
    if (final.get("status") or {}).get("phase") == "Failed":
        status = final.get("status") or {}
        said = ": ".join(str(p) for p in (status.get("reason"), status.get("message")) if p)
        ctx.err(f"error: {ref('Checkpoint', name)} failed: {said or 'no reason given'}")
        return 1
    return 0
