"""``swarmapply update task``: resize a running task's cores and memory in place.

The Job is the source of truth, so a resize is a change of the task's entry in the Job's
``spec.tasks``: its cores, cpuset (a pin on the node the task runs on; cores then equal the
cpuset's size) and memory. The changed Job is checked by admission and written with
compare-and-swap (re-read and redone on a conflict). The job controller passes the change to
the bound Task, the scheduler re-fits it on its node (new ``status.cpuset``/``status.memory``,
or a ``Resized`` condition with status False when it does not fit) and the agent updates the
container in place. ``--wait`` follows the Task until one of the two happens.

:func:`resized_entry` is the pure decision; :func:`request_resize` the store side, shared
with RESTfulSwarm update documents given to ``apply -f``.

What it does not guarantee: a task entry pinned to a cpuset keeps being pinned (``--cores``
alone cannot change it; give ``--cpuset``), and a cpuset pin also pins the entry to the node
the task runs on. The change stays in the Job: a later ``apply`` of the original manifest may
set it back, as it would for any field the manifest sets.
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from swarmapply.api.admission import AdmissionError, AdmittedRequest, admit
from swarmapply.api.quantity import (
    QuantityError,
    format_cpuset,
    format_memory,
    parse_cpuset,
    parse_memory,
)
from swarmapply.api.restfulswarm import UpdateRequest
from swarmapply.api.store import Conflict, Store
from swarmapply.cli.context import Context
from swarmapply.cli.migrate import (
    NotRunning,
    add_wait_arguments,
    find,
    follow,
    live_task,
    running_node,
)
from swarmapply.cli.output import ref
from swarmapply.cli.usage import UsageError
from swarmapply.controllers.job_tasks import TASK_LABEL, is_terminating, name_of
from swarmapply.errors import PermanentError

Object = dict[str, Any]

EXAMPLES = """examples:
  swarmapply update task web-server --cores 4               4 cores, wherever they are free
  swarmapply update task web-server --cpuset 2-3 --memory 256Mi --wait
  swarmapply update task web-server --memory 1Gi

The change is written to the task's entry in its Job. --wait follows the task until its
cores and memory are the new ones (exit 0) or the scheduler says they do not fit on its node
(a Resized condition with status False; exit 1).
"""

#: How often a resize re-reads the Job and retries when someone wrote it meanwhile.
CONFLICT_RETRIES = 5
#: The condition the scheduler sets on a Task it could not resize.
RESIZED = "Resized"


class ResizeError(PermanentError):
    """A resize that cannot be made; ``field`` is ``cores``, ``cpuset`` or ``memory``."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class Resize:
    """What to change (None: keep it).

    Attributes:
        cores: The number of cores.
        cpuset: The cores themselves, in canonical form (a pin on the task's node).
        memory: The memory in bytes.
    """

    cores: int | None = None
    cpuset: str | None = None
    memory: int | None = None


@dataclass(frozen=True)
class ResizeResult:
    """A resize requested (or found unnecessary).

    Attributes:
        job: The Job's name.
        task: The Task's name.
        changes: What changes, e.g. ``["cores 1 -> 2", "memory 64Mi -> 128Mi"]``; empty when
            the entry already had these values (nothing was written).
        cpuset: The cpuset the task should end with, if the resize names one.
        cores: The number of cores it should end with.
        memory: The memory it should end with.
        resized_before: The task's Resized condition before the change, if any.
    """

    job: str
    task: str
    changes: list[str]
    cores: int
    cpuset: str | None = None
    memory: int | None = None
    resized_before: Object | None = field(default=None)


def resized_entry(
    entry: Mapping[str, Any], resize: Resize, node: str | None
) -> tuple[Object, list[str]]:
    """A Job task entry with new cores, cpuset and memory (a pure function).

    Args:
        entry: The entry of ``job.spec.tasks``, as stored (memory in bytes).
        resize: What to change.
        node: The node the task runs on (a cpuset pins the entry there), if bound.

    Returns:
        The new entry, and what changed (``cores 1 -> 2``), empty when nothing does.

    Raises:
        ResizeError: A pinned entry given only cores, or a cpuset without a node.
    """
    new: Object = copy.deepcopy(dict(entry))
    old_cores = int(entry.get("cores", 1))
    old_cpuset = entry.get("cpuset")
    if resize.cpuset is not None:
        cores = parse_cpuset(resize.cpuset)
        pin_node = entry.get("node") or node
        if not pin_node:
            raise ResizeError(
                "cpuset",
                f"task {entry.get('name')!r} is not bound to a node yet: a cpuset needs one "
                "(give cores instead, or pin node in the Job)",
            )
        if resize.cores is not None and resize.cores != len(cores):
            raise ResizeError(
                "cores",
                f"{resize.cores} cores do not match cpuset {resize.cpuset!r} ({len(cores)})",
            )
        new["node"] = pin_node
        new["cpuset"] = format_cpuset(cores)
        new["cores"] = len(cores)
    elif resize.cores is not None:
        if old_cpuset and resize.cores != old_cores:
            raise ResizeError(
                "cores",
                f"task {entry.get('name')!r} is pinned to cpuset {old_cpuset!r}"
                f" ({old_cores} cores): give a cpuset of {resize.cores} cores instead",
            )
        new["cores"] = resize.cores
    if resize.memory is not None:
        new["memory"] = resize.memory
    changes: list[str] = []
    if int(new.get("cores", 1)) != old_cores:
        changes.append(f"cores {old_cores} -> {new['cores']}")
    if new.get("cpuset") != old_cpuset:
        changes.append(f"cpuset {old_cpuset or '-'} -> {new['cpuset']}")
    if new.get("memory") != entry.get("memory"):
        changes.append(f"memory {_memory(entry.get('memory'))} -> {_memory(new.get('memory'))}")
    return new, changes


def _memory(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return format_memory(value)
    return "-"


def _condition(task: Mapping[str, Any], kind: str) -> Object | None:
    for condition in (task.get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == kind:
            return condition
    return None


def request_resize(
    store: Store, task_name: str, resize: Resize, dry_run: bool = False
) -> ResizeResult:
    """Writes a resize of a Task into its Job's entry (compare-and-swap, retried).

    Args:
        store: The store.
        task_name: The Task to resize (it must be live; it need not be bound).
        resize: What to change.
        dry_run: Check everything, write nothing.

    Returns:
        What was (or would be) requested.

    Raises:
        NotRunning: The task is absent or has ended, or its Job has no entry for it.
        ResizeError: The resize does not fit the entry (see :func:`resized_entry`).
        AdmissionError: The changed Job would be invalid (e.g. memory below the minimum).
    """
    for _ in range(CONFLICT_RETRIES):
        task = find(store, "Task", task_name)
        try:
            node: str | None = running_node(task, running=False)
        except NotRunning:
            status = task.get("status") or {}
            if status.get("phase") in ("Succeeded", "Failed") or is_terminating(task):
                raise
            node = None  # not bound yet: the new values apply when it is placed
        job_name = str((task.get("spec") or {}).get("job") or "")
        entry_name = ((task.get("metadata") or {}).get("labels") or {}).get(TASK_LABEL)
        job = find(store, "Job", job_name)
        entries = (job.get("spec") or {}).get("tasks") or []
        index = next((i for i, e in enumerate(entries) if e.get("name") == entry_name), None)
        if index is None:
            raise NotRunning(f'job "{job_name}" has no task entry "{entry_name}" for {task_name}')
        new_entry, changes = resized_entry(entries[index], resize, node)
        result = ResizeResult(
            job_name,
            task_name,
            changes,
            int(new_entry.get("cores", 1)),
            new_entry.get("cpuset") if resize.cpuset is not None else None,
            new_entry.get("memory"),
            _condition(task, RESIZED),
        )
        if not changes:
            return result
        candidate = copy.deepcopy(job)
        candidate.pop("status", None)
        candidate["spec"]["tasks"][index] = new_entry
        want = admit([(f"jobs/{job_name}", json.dumps(candidate))])[0].obj
        if dry_run:
            return result
        try:
            store.update(want)  # carries the Job's resourceVersion: compare-and-swap
        except Conflict:
            continue
        return result
    raise Conflict("Job", task_name, "(latest)", "(changing faster than update could follow)")


def resize_done(result: ResizeResult, task: Mapping[str, Any]) -> tuple[bool, str | None]:
    """Whether a Task shows a requested resize: ``(done, failure message or None)``.

    Done when its bound cpuset and memory are the new ones; failed when a Resized condition
    with status False appeared (one different from the one before the request).
    """
    status = task.get("status") or {}
    condition = _condition(task, RESIZED)
    refused = condition is not None and condition.get("status") == "False"
    if refused and condition is not None and condition != result.resized_before:
        parts = (condition.get("reason"), condition.get("message"))
        said = ": ".join(str(p) for p in parts if p)
        return True, said or "the scheduler could not resize the task"
    cpuset = status.get("cpuset")
    if not isinstance(cpuset, str):
        return False, None
    try:
        cores = parse_cpuset(cpuset)
    except QuantityError:
        return False, None
    if result.cpuset is not None and format_cpuset(cores) != result.cpuset:
        return False, None
    if len(cores) != result.cores:
        return False, None
    if result.memory is not None and status.get("memory") != result.memory:
        return False, None
    return True, None


# --------------------------------------------------------------------- RESTfulSwarm


_REQUEST_FIELDS = {"cores": "cpuset_cpus", "cpuset": "cpuset_cpus", "memory": "mem_limit"}


def resolve_update_request(
    store: Store, item: AdmittedRequest, dry_run: bool = False
) -> ResizeResult:
    """Carries out a RESTfulSwarm update request (see :func:`request_resize`).

    The task is the live one of the job's entry ``container_name``; ``node``, when given,
    must be where it runs.

    Raises:
        AdmissionError: The request does not fit the cluster; the errors name its fields.
    """
    request = item.request
    assert isinstance(request, UpdateRequest)
    try:
        find(store, "Job", request.job)
    except NotRunning as exc:
        raise AdmissionError([item.error(("job",), str(exc))]) from None
    task = live_task(store, request.job, request.container)
    if task is None:
        message = f'job "{request.job}" has no task "{request.container}"'
        raise AdmissionError([item.error(("container_name",), message)])
    node = (task.get("status") or {}).get("node")
    if request.node is not None and request.node != node:
        where = f'runs on node "{node}"' if node else "is not bound to a node yet"
        message = f'task "{name_of(task)}" {where}, not "{request.node}"'
        raise AdmissionError([item.error(("node",), message)])
    resize = Resize(cpuset=request.cpuset, memory=request.memory)
    try:
        return request_resize(store, name_of(task), resize, dry_run)
    except ResizeError as exc:
        raise AdmissionError([item.error((_REQUEST_FIELDS[exc.field],), str(exc))]) from None
    except NotRunning as exc:
        raise AdmissionError([item.error(("container_name",), str(exc))]) from None
    except AdmissionError as exc:
        errors = []
        for error in exc.errors:
            leaf = error.path.rsplit(".", 1)[-1]
            path = (_REQUEST_FIELDS[leaf],) if leaf in _REQUEST_FIELDS else ()
            errors.append(item.error(path, f"the job would be invalid: {error.message}"))
        raise AdmissionError(errors) from None


def describe_result(result: ResizeResult) -> str:
    """``task web-a resize requested: cores 1 -> 2, memory 64Mi -> 128Mi``."""
    if not result.changes:
        return f"task {result.task} unchanged (job {result.job} already asks for this)"
    return f"task {result.task} resize requested: {', '.join(result.changes)}"


# --------------------------------------------------------------------------- command


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds the ``update`` command to the command parsers."""
    parser = commands.add_parser(
        "update",
        help="resize a running task's cores and memory in place",
        description="Resize a task in place: its entry in the Job gets the new cores (or\n"
        "cpuset) and memory; the scheduler re-fits it on its node and the agent updates the\n"
        "container without restarting it.",
        epilog=EXAMPLES,
        **kw,
    )
    parser.add_argument("what", choices=("task",), help="what to update: task")
    parser.add_argument("name", help="the Task's name")
    cores = parser.add_mutually_exclusive_group()
    cores.add_argument("--cores", type=int, metavar="N", help="the number of cores")
    cores.add_argument("--cpuset", metavar="LIST", help="the cores, e.g. 2-3 (pins the node)")
    parser.add_argument("--memory", metavar="QUANTITY", help="the memory, e.g. 256Mi or 512m")
    add_wait_arguments(parser, "resize")
    parser.set_defaults(handler=run)


def parse_resize(args: argparse.Namespace) -> Resize:
    """The resize the options ask for.

    Raises:
        UsageError: None given, or a value that does not parse; the message names the option.
    """
    if args.cores is None and args.cpuset is None and args.memory is None:
        raise UsageError("give --cores N or --cpuset LIST, and/or --memory QUANTITY")
    if args.cores is not None and args.cores < 1:
        raise UsageError(f"--cores: expected a number of cores >= 1, got {args.cores}")
    cpuset = None
    memory = None
    try:
        if args.cpuset is not None:
            cpuset = format_cpuset(parse_cpuset(args.cpuset))
    except QuantityError as exc:
        raise UsageError(f"--cpuset: {exc}") from None
    try:
        if args.memory is not None:
            memory = parse_memory(args.memory)
    except QuantityError as exc:
        raise UsageError(f"--memory: {exc}") from None
    return Resize(args.cores, cpuset, memory)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Runs ``swarmapply update task``; 1 when --wait sees the resize refused."""
    try:
        resize = parse_resize(args)
    except UsageError as exc:
        ctx.err(f"error: {exc}")
        return 2
    store = ctx.store(must_exist=True)
    try:
        result = request_resize(store, args.name, resize)
    except ResizeError as exc:
        raise ResizeError(exc.field, f"--{exc.field}: {exc}") from None
    ctx.out(describe_result(result))
    if not args.wait:
        return 0
    outcome: list[str | None] = []

    def done(task: Object) -> bool:
        finished, failure = resize_done(result, task)
        if finished:
            outcome.append(failure)
        return finished

    def seen(task: Object) -> None:
        return None

    task = follow(store, "Task", result.task, args.timeout, seen, done)
    failure = outcome[-1] if outcome else None
    if failure is not None:
        ctx.err(f"error: {ref('Task', result.task)} was not resized: {failure}")
        return 1
    status = task.get("status") or {}
    ctx.out(
        f"task {result.task} resized: cpuset {status.get('cpuset')},"
        f" memory {_memory(status.get('memory'))}"
    )
    return 0
