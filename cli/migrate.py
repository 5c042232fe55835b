"""``swarmapply migrate``: move a running task, or every task of a job, to another node.

The command checks up front what it can see in the store (the Task or Job exists and runs, the
target Node exists and is not where the task already is), then creates one Migration and, with
``--wait``, follows it through the store's watch, printing each phase as the migrator reports
it, until it succeeds (exit 0) or fails (exit 1, with the migrator's reason and message).

It also holds what the other commands about running tasks share: finding a Task or a Job's
live Task, checking a target Node, following one object until it is done, and turning a
RESTfulSwarm migration request into a Migration (for ``apply -f``).

What it does not guarantee: the checks are made before the Migration is written, so a task
that ends or moves in between is reported by the migrator (in the Migration's status), not
here. Ending the wait (a timeout, Ctrl-C) does not cancel the migration.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from swarmapply.api.admission import AdmissionError, AdmittedRequest, FieldError, admit
from swarmapply.api.kinds import API_VERSION
from swarmapply.api.quantity import format_memory
from swarmapply.api.restfulswarm import MigrationRequest
from swarmapply.api.store import Gone, NotFound, Store
from swarmapply.cli.context import Context
from swarmapply.cli.output import ref
from swarmapply.cli.usage import seconds_type
from swarmapply.controllers.job_tasks import (
    FINISHED,
    JOB_LABEL,
    TASK_LABEL,
    attempt_of,
    is_terminating,
    live_tasks,
    name_of,
)
from swarmapply.errors import PermanentError

Object = dict[str, Any]

EXAMPLES = """examples:
  swarmapply migrate task web-server --to n2              the scheduler reserves cores on n2
  swarmapply migrate task web-server --mode cold --wait   any node; stop, then start again
  swarmapply migrate job web --to n3 --mode live --wait --timeout 300

--mode live checkpoints the process with CRIU and restores it on the target (it keeps its
memory); it needs Docker engines started with --experimental and CRIU that works on the
kernel. cold stops the container and starts it afresh. auto (the default) tries live and
falls back to cold when the nodes cannot checkpoint.
Exit status with --wait: 0 when the migration succeeded, 1 when it failed or timed out.
"""

#: How long ``--wait`` waits by default, in seconds.
DEFAULT_TIMEOUT = 600.0
#: The phases after which a Migration or Checkpoint does not change.
DONE_PHASES = frozenset({"Succeeded", "Failed"})
#: How many characters of a SHA-256 a name derived from a request carries.
NAME_HASH_CHARS = 8
_MAX_NAME = 63


class NotRunning(PermanentError):
    """The object named cannot be acted on: absent, not bound, finished or being deleted."""


class WaitTimedOut(PermanentError):
    """The object did not finish before the deadline."""


# ------------------------------------------------------------------------ pure helpers


def generate_prefix(name: str) -> str:
    """A ``metadata.generateName`` for an object about ``name``: ``<name>-``, cut to fit."""
    return name[: _MAX_NAME - 6].rstrip("-") + "-"


def derived_name(base: str, *parts: str) -> str:
    """A deterministic name: ``base`` (cut to fit), ``-`` and a hash of ``parts``.

    The same parts always give the same name, so applying one request twice finds the object
    the first apply made.
    """
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()[:NAME_HASH_CHARS]
    prefix = base[: _MAX_NAME - NAME_HASH_CHARS - 1].rstrip("-")
    return f"{prefix}-{digest}" if prefix else digest


def migration_object(
    *,
    task: str | None = None,
    job: str | None = None,
    to_node: str | None = None,
    mode: str = "auto",
    name: str | None = None,
    annotations: dict[str, str] | None = None,
) -> Object:
    """A Migration of one task or of a whole job (exactly one of ``task`` and ``job``).

    Args:
        task: The Task to move.
        job: The Job whose tasks all move.
        to_node: The target node; the scheduler picks one when None.
        mode: ``live``, ``cold`` or ``auto``.
        name: The Migration's name; ``<task or job>-`` plus a random suffix when None.
        annotations: Annotations to record on it.
    """
    if (task is None) == (job is None):
        raise ValueError("give exactly one of task and job")
    target = task if task is not None else job
    assert target is not None
    metadata: Object = {"name": name} if name else {"generateName": generate_prefix(target)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    spec: Object = {"task": task} if task is not None else {"job": job}
    if to_node:
        spec["toNode"] = to_node
    spec["mode"] = mode
    return {"apiVersion": API_VERSION, "kind": "Migration", "metadata": metadata, "spec": spec}


def admitted(obj: Object, source: str) -> Object:
    """``obj`` as admission makes it (defaults filled in), or AdmissionError."""
    return admit([(source, json.dumps(obj))])[0].obj


def migration_progress(migration: Object) -> str:
    """One line saying where a Migration is: its phase and what the phase has to say."""
    status = migration.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    details: list[str] = []
    if status.get("mode"):
        details.append(str(status["mode"]))
    moves = [
        f"{t.get('task')}: {t.get('sourceNode')} -> {t.get('targetNode') or '?'}"
        + (f" cores {t['targetCpuset']}" if t.get("targetCpuset") else "")
        for t in status.get("tasks") or []
        if isinstance(t, dict)
    ]
    details += moves
    total = (status.get("timings") or {}).get("total")
    if phase == "Succeeded" and isinstance(total, int | float):
        details.append(f"{total:.1f}s")
    if status.get("reason") and phase == "Failed":
        details.append(": ".join(str(p) for p in (status["reason"], status.get("message")) if p))
    line = f"{ref('Migration', name_of(migration))} {phase}"
    return line + (f" ({'; '.join(details)})" if details else "")


# ---------------------------------------------------------------------- store lookups


def find(store: Store, kind: str, name: str) -> Object:
    """The object, or NotRunning naming it (``task "web-a" not found``)."""
    try:
        return store.get(kind, name)
    except NotFound:
        raise NotRunning(f'{kind.lower()} "{name}" not found') from None


def running_node(task: Object, *, running: bool = True) -> str:
    """The node a live, bound task is on; NotRunning saying why not otherwise.

    Args:
        task: The Task.
        running: Require phase Running (its container runs), not only a binding.
    """
    name = name_of(task)
    status = task.get("status") or {}
    phase = status.get("phase") or "Pending"
    if is_terminating(task):
        raise NotRunning(f'task "{name}" is being deleted')
    if phase in FINISHED:
        raise NotRunning(f'task "{name}" has ended (phase {phase})')
    node = status.get("node")
    if not node:
        raise NotRunning(f'task "{name}" is not bound to a node yet (phase {phase})')
    if running and phase != "Running":
        raise NotRunning(f'task "{name}" is not running yet (phase {phase} on node "{node}")')
    return str(node)


def live_task(store: Store, job: str, entry: str) -> Object | None:
    """The live Task of entry ``entry`` of Job ``job`` (its newest attempt not being deleted)."""
    selector = f"{JOB_LABEL}={job},{TASK_LABEL}={entry}"
    tasks = [t for t in store.list("Task", selector).items if not is_terminating(t)]
    return max(tasks, key=lambda t: (attempt_of(t), name_of(t)), default=None)


def job_live_tasks(store: Store, job: Object) -> list[Object]:
    """The live Tasks of a Job, in the order of its spec."""
    uid = (job.get("metadata") or {}).get("uid")
    tasks = store.list("Task", field_selector=f"metadata.ownerReferences.uid={uid}").items
    live = live_tasks(job, tasks)
    order = [str(e.get("name")) for e in (job.get("spec") or {}).get("tasks") or []]
    return [live[key] for key in order if key in live]


def require_node(store: Store, name: str, option: str = "--to") -> Object:
    """The Node ``name``; NotRunning naming ``option`` when there is none."""
    try:
        return store.get("Node", name)
    except NotFound:
        raise NotRunning(f'{option}: node "{name}" not found') from None


def follow(
    store: Store,
    kind: str,
    name: str,
    timeout: float,
    seen: Callable[[Object], None],
    done: Callable[[Object], bool] = lambda obj: (
        (obj.get("status") or {}).get("phase") in DONE_PHASES
    ),
) -> Object:
    """Follows one object through the store's watch until ``done`` holds for it.

    Args:
        store: The store.
        kind: The object's kind.
        name: The object's name.
        timeout: Seconds to wait at most.
        seen: Called with the object as listed, then with each later state of it.
        done: Whether a state ends the wait (default: phase Succeeded or Failed).

    Returns:
        The state for which ``done`` held.

    Raises:
        NotRunning: The object was deleted (or is absent).
        WaitTimedOut: ``done`` did not hold within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    reference = ref(kind, name)

    def snapshot() -> tuple[Object, int]:
        listed = store.list(kind, field_selector=f"metadata.name={name}")
        if not listed.items:
            raise NotRunning(f"{reference} was deleted while waiting for it")
        return listed.items[0], listed.revision

    obj, revision = snapshot()
    seen(obj)
    while not done(obj):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            phase = (obj.get("status") or {}).get("phase") or "Pending"
            raise WaitTimedOut(f"timed out after {timeout:g}s waiting for {reference} ({phase})")
        try:
            for event in store.watch(kind, revision, timeout=remaining):
                revision = event.revision
                if time.monotonic() > deadline:
                    break  # other objects keep changing: the deadline is checked above
                if name_of(event.object) != name:
                    continue
                if event.type == "DELETED":
                    raise NotRunning(f"{reference} was deleted while waiting for it")
                obj = event.object
                seen(obj)
                if done(obj):
                    break
        except Gone:  # history compacted under us: read it again and follow from there
            obj, revision = snapshot()
            seen(obj)
    return obj


def printer(ctx: Context, describe: Callable[[Object], str]) -> Callable[[Object], None]:
    """A ``seen`` callback for :func:`follow` printing ``describe(obj)`` when it changes."""
    last: list[str] = []

    def seen(obj: Object) -> None:
        line = describe(obj)
        if not last or last[-1] != line:
            last.append(line)
            ctx.out(line)

    return seen


# ---------------------------------------------------------------- building migrations


def task_migration(
    store: Store, task_name: str, to_node: str | None, mode: str, name: str | None = None
) -> Object:
    """Checks that a Task can move and returns its Migration (not yet written).

    Raises:
        NotRunning: The task is absent, not bound, finished, already moving; the target is
            no Node or the node it runs on.
    """
    task = find(store, "Task", task_name)
    node = running_node(task)
    moving = (task.get("status") or {}).get("migration")
    if isinstance(moving, dict) and moving.get("name"):
        raise NotRunning(f'task "{task_name}" is already moving (Migration "{moving["name"]}")')
    if to_node is not None:
        require_node(store, to_node)
        if to_node == node:
            raise NotRunning(f'--to: task "{task_name}" already runs on node "{node}"')
    return migration_object(task=task_name, to_node=to_node, mode=mode, name=name)


def job_migration(store: Store, job_name: str, to_node: str | None, mode: str) -> Object:
    """Checks that a Job's tasks can move and returns its Migration (not yet written).

    Raises:
        NotRunning: The job is absent or finished, has no bound live task, or the target is
            no Node or the node all its tasks already run on.
    """
    job = find(store, "Job", job_name)
    phase = (job.get("status") or {}).get("phase") or "Pending"
    if is_terminating(job):
        raise NotRunning(f'job "{job_name}" is being deleted')
    if phase in FINISHED:
        raise NotRunning(f'job "{job_name}" has ended (phase {phase})')
    nodes: list[str] = []
    for task in job_live_tasks(store, job):
        try:
            nodes.append(running_node(task))
        except NotRunning:
            continue
    if not nodes:
        raise NotRunning(f'job "{job_name}" has no task bound to a node (phase {phase})')
    if to_node is not None:
        require_node(store, to_node)
        if set(nodes) == {to_node}:
            raise NotRunning(f'--to: every task of job "{job_name}" already runs on "{to_node}"')
    return migration_object(job=job_name, to_node=to_node, mode=mode)


#: Annotations a Migration made from a RESTfulSwarm request carries.
REQUEST_ANNOTATION = "restfulswarm.swarmapply.io/request"


def request_migration_name(request: MigrationRequest) -> str:
    """The Migration's name for a RESTfulSwarm migration request (the same for the same one)."""
    return derived_name(
        f"{request.job}-{request.container}",
        request.job,
        request.container,
        request.from_node or "",
        request.to_node,
    )


def resolve_migration_request(store: Store, item: AdmittedRequest) -> tuple[Object, bool]:
    """The Migration a RESTfulSwarm migration request asks for.

    The Task is the live one of the job's entry ``container``; ``from`` must be where it runs,
    ``to`` must be a Node. When the Migration of this request already exists it is returned
    as it is (applying the same request again changes nothing), without these checks.

    Args:
        store: The store.
        item: An admitted migration request.

    Returns:
        The Migration (as admitted, not yet written) and whether it exists already.

    Raises:
        AdmissionError: The request does not fit the cluster; the errors name its fields.
    """
    request = item.request
    assert isinstance(request, MigrationRequest)
    name = request_migration_name(request)
    try:
        return store.get("Migration", name), True
    except NotFound:
        pass
    errors: list[FieldError] = []
    task_name: str | None = None
    try:
        find(store, "Job", request.job)
    except NotRunning as exc:
        errors.append(item.error(("job",), str(exc)))
    else:
        task = live_task(store, request.job, request.container)
        if task is None:
            errors.append(
                item.error(("container",), f'job "{request.job}" has no task "{request.container}"')
            )
        else:
            task_name = name_of(task)
            try:
                node = running_node(task)
            except NotRunning as exc:
                errors.append(item.error(("container",), str(exc)))
            else:
                if request.from_node is not None and request.from_node != node:
                    errors.append(
                        item.error(
                            ("from",),
                            f'task "{task_name}" runs on node "{node}", not "{request.from_node}"',
                        )
                    )
                if request.to_node == node:
                    errors.append(
                        item.error(("to",), f'task "{task_name}" already runs on node "{node}"')
                    )
    try:
        require_node(store, request.to_node, "to")
    except NotRunning as exc:
        errors.append(item.error(("to",), str(exc).removeprefix("to: ")))
    if errors or task_name is None:
        raise AdmissionError(errors)
    annotation = json.dumps(
        {"job": request.job, "container": request.container, "from": request.from_node},
        sort_keys=True,
    )
    obj = migration_object(
        task=task_name,
        to_node=request.to_node,
        mode="auto",
        name=name,
        annotations={REQUEST_ANNOTATION: annotation},
    )
    return admitted(obj, item.source), False


# --------------------------------------------------------------------------- commands


def add_wait_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--wait`` and ``--timeout SECONDS``, as migrate, update and checkpoint take them."""
    parser.add_argument(
        "--wait", action="store_true", help=f"follow the {what} until it succeeds or fails"
    )
    parser.add_argument(
        "--timeout",
        type=seconds_type(positive=True),
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"with --wait: give up after this many seconds (default {DEFAULT_TIMEOUT:g})",
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds the ``migrate`` command to the command parsers."""
    parser = commands.add_parser(
        "migrate",
        help="move a running task, or all tasks of a job, to another node",
        description="Move a running task, or every task of a job, to another node: live\n"
        "(CRIU checkpoint and restore), cold (stop, then start again), or auto. Creates a\n"
        "Migration, which the migrator carries out.",
        epilog=EXAMPLES,
        **kw,
    )
    parser.add_argument("what", choices=("task", "job"), help="what to move: task or job")
    parser.add_argument("name", help="the Task's or Job's name")
    parser.add_argument("--to", metavar="NODE", help="the node to move to (default: any)")
    parser.add_argument(
        "--mode", choices=("live", "cold", "auto"), default="auto", help="default auto"
    )
    add_wait_arguments(parser, "migration")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Runs ``swarmapply migrate``; with --wait, 0 on success and 1 on failure."""
    store = ctx.store(must_exist=True)
    if args.what == "task":
        obj = task_migration(store, args.name, args.to, args.mode)
    else:
        obj = job_migration(store, args.name, args.to, args.mode)
    created = store.create(admitted(obj, f"migrations/{args.name}"))
    name = name_of(created)
    ctx.out(f"{ref('Migration', name)} created")
    if not args.wait:
        return 0
    final = follow(store, "Migration", name, args.timeout, printer(ctx, migration_progress))
    status = final.get("status") or {}
    if status.get("phase") == "Failed":
        said = ": ".join(str(p) for p in (status.get("reason"), status.get("message")) if p)
        ctx.err(f"error: {ref('Migration', name)} failed: {said or 'no reason given'}")
        return 1
    return 0


def memory_text(value: object) -> str:
    """Bytes as people read them (``64Mi``), ``-`` when unknown."""
    if isinstance(value, int) and not isinstance(value, bool):
        return format_memory(value)
    return "-"
