"""``swarmapply describe``: one object in detail, with what it owns and what happened to it.

Prints plain, aligned text in a fixed layout (labels in one column, tables with a header row),
so that scripts may look for a line such as ``Phase:`` or ``Pending because:``. Jobs, Tasks and
Nodes get a summary of their spec and status, the tasks they own or run (a Node also gets its
Swarm facts, its allocations and a core map: which task holds which core, marking cores held
for a Migration) and, for a pending Job, why it is pending; a Migration
shows each task's move (source and target node and cores), its stage timings and why it is in
its phase; a Checkpoint where its files are; any other kind shows its spec and status as
YAML. Conditions (for a Node with their last transition time) and Events (oldest first)
follow for every kind.

What it does not guarantee: the object, its tasks and its events are read one after another,
not as of one revision, so a busy cluster may show them slightly out of step; the layout may
gain lines, but existing labels and column headers keep their names.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import yaml

from swarmapply.api.kinds import kind_info, resolve_kind
from swarmapply.api.merge import LAST_APPLIED
from swarmapply.api.quantity import QuantityError, format_memory, parse_cpuset
from swarmapply.api.store import Store
from swarmapply.api.store.lifecycle import parse_time
from swarmapply.cli.context import Context
from swarmapply.cli.output import age

Object = dict[str, Any]

EXAMPLES = """examples:
  swarmapply describe job hello                    spec, status, tasks and events of a job
  swarmapply describe job/hello                    the same
  swarmapply describe task hello-server            where a task runs and how it ended
  swarmapply describe node n1                      capacity, allocation and core map of a node
  swarmapply describe job hello | grep 'Pending because'
"""


#: Task phases whose cores are released (they hold no core in a node's core map).
FINISHED = frozenset({"Succeeded", "Failed"})

#: The width of the label column (values start here).
LABEL_WIDTH = 24

_NONE = "<none>"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds the ``describe`` command to the command line.

    Args:
        commands: The sub-command parsers of ``swarmapply``.
        **kw: Options every command's parser takes (parents, formatter class).
    """
    parser = commands.add_parser(
        "describe",
        help="show one object in detail, with its tasks, conditions and events",
        description="Show one object in detail: spec and status, the tasks it owns or runs, "
        "its conditions and the events about it (oldest first), and why a pending job waits.",
        epilog=EXAMPLES,
        **kw,
    )
    parser.add_argument("kind", help="job, task, node/no, migration/mig, ... (or KIND/NAME)")
    parser.add_argument("name", nargs="?", help="the object's name")
    parser.set_defaults(handler=run)


@dataclass
class Related:
    """What ``describe`` shows next to an object.

    Attributes:
        tasks: For a Job, the Tasks it owns; for a Node, the Tasks bound to it; else empty.
        events: The Events about the object, oldest first.
    """

    tasks: list[Object] = field(default_factory=list)
    events: list[Object] = field(default_factory=list)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Prints the description of one object.

    Args:
        args: The parsed arguments: ``kind`` and ``name`` (or ``kind`` as ``KIND/NAME``).
        ctx: The invocation's context (store and output).

    Returns:
        The exit code: 0, or 2 when no name was given.

    Raises:
        UnknownKindError: The kind names no kind.
        NotFound: No such object exists.
    """
    word, name = args.kind, args.name
    if name is None and "/" in word:
        word, name = word.split("/", 1)
    if not name:
        ctx.err("error: describe needs a name: swarmapply describe KIND NAME (or KIND/NAME)")
        return 2
    kind = resolve_kind(word)
    store = ctx.store(must_exist=True)
    obj = store.get(kind, name)
    ctx.out(describe(obj, related(store, obj)))
    return 0


def related(store: Store, obj: Object) -> Related:
    """Reads what :func:`describe` shows next to an object.

    A Job's tasks are found by owner reference, or (when none names it, e.g. tasks written
    by an older controller) by ``spec.job``; a Node's by ``status.node``.

    Args:
        store: The store to read from.
        obj: The object being described.

    Returns:
        Its tasks (by name) and its events (oldest first).
    """
    meta = obj["metadata"]
    uid, name = meta.get("uid"), meta["name"]
    tasks: list[Object] = []
    if obj["kind"] == "Job":
        if uid:
            tasks = store.list("Task", field_selector=f"metadata.ownerReferences.uid={uid}").items
        if not tasks:
            tasks = store.list("Task", field_selector=f"spec.job={name}").items
    elif obj["kind"] == "Node":
        tasks = store.list("Task", field_selector=f"status.node={name}").items
    events = store.list("Event", field_selector=f"involvedObject.uid={uid}").items if uid else []
    return Related(tasks=tasks, events=sorted(events, key=_event_order))


def describe(obj: Object, extra: Related) -> str:
    """Renders the description of an object (a pure function of its arguments and the clock).

    Args:
        obj: The object, as the store holds it.
        extra: Its tasks and events, as :func:`related` returns them.

    Returns:
        The text, without a trailing newline.
    """
    out = _Text()
    kind = obj["kind"]
    meta = obj["metadata"]
    status = obj.get("status") or {}
    out.field("Name", meta["name"])
    out.field("Kind", kind)
    out.lines_field("Labels", [f"{k}={v}" for k, v in sorted((meta.get("labels") or {}).items())])
    annotations = meta.get("annotations") or {}
    out.lines_field(
        "Annotations", [f"{k}: {v}" for k, v in sorted(annotations.items()) if k != LAST_APPLIED]
    )
    owners = meta.get("ownerReferences") or []
    if owners:
        out.field("Owned by", ", ".join(f"{o.get('kind')}/{o.get('name')}" for o in owners))
    out.field("Created", _timestamp(meta.get("creationTimestamp")))
    if meta.get("deletionTimestamp"):
        out.field("Deleting since", _timestamp(meta["deletionTimestamp"]))
    out.field("Generation", meta.get("generation"))
    info = kind_info(kind)
    if info.has_status:
        out.field("Observed generation", status.get("observedGeneration"))
    summary = _SUMMARIES.get(kind, _generic)
    summary(out, obj, extra)
    if info.has_status:
        _conditions(out, status.get("conditions") or [], transitions=kind == "Node")
    _events(out, extra.events)
    return out.text()


# -- per kind ---------------------------------------------------------------------------


def _job(out: _Text, job: Object, extra: Related) -> None:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    network = spec.get("network") or {}
    tasks = spec.get("tasks") or []
    out.section("Spec")
    out.field("Priority", spec.get("priority", 0), 1)
    out.field("Restart policy", spec.get("restartPolicy", "Never"), 1)
    ttl = spec.get("ttlSecondsAfterFinished")
    out.field("TTL after finished", f"{ttl}s" if ttl is not None else _NONE, 1)
    out.section("Network", 1)
    out.field("Name", network.get("name") or job["metadata"]["name"], 2)
    out.field("Driver", network.get("driver") or "overlay", 2)
    out.field("Subnet", network.get("subnet") or "<chosen by Docker>", 2)
    out.table(
        "Tasks",
        ("NAME", "IMAGE", "CORES", "MEMORY", "PIN"),
        [
            [t.get("name"), t.get("image"), t.get("cores", 1), _memory(t.get("memory")), _pin(t)]
            for t in tasks
        ],
        1,
    )
    out.section("Status")
    phase = status.get("phase") or "Pending"
    out.field("Phase", phase, 1)
    total = status.get("tasksTotal", len(tasks))
    out.field("Tasks ready", f"{status.get('tasksReady', 0)}/{total}", 1)
    out.field("Start time", _timestamp(status.get("startTime")), 1)
    out.field("Completion time", _timestamp(status.get("completionTime")), 1)
    if phase == "Pending":
        out.raw([f"Pending because: {_cell(pending_reason(job, extra.events), '-')}"])
    out.table(
        "Owned tasks",
        ("NAME", "PHASE", "NODE", "CPUSET"),
        [
            [t["metadata"]["name"], _phase(t), _status(t).get("node"), _status(t).get("cpuset")]
            for t in extra.tasks
        ],
    )


def _task(out: _Text, task: Object, extra: Related) -> None:
    spec, status = task.get("spec") or {}, task.get("status") or {}
    out.section("Spec")
    out.field("Job", spec.get("job"), 1)
    out.field("Image", spec.get("image"), 1)
    out.field("Command", _command(spec.get("command")), 1)
    out.field("Cores", spec.get("cores"), 1)
    out.field("Memory", _memory(spec.get("memory")), 1)
    out.field("Pin", _pin(spec), 1)
    out.section("Status")
    out.field("Phase", _phase(task), 1)
    out.field("Node", status.get("node"), 1)
    out.field("Cpuset", status.get("cpuset"), 1)
    out.field("Container ID", status.get("containerID"), 1)
    out.field("Exit code", status.get("exitCode"), 1)
    out.field("Reason", status.get("reason"), 1)
    if status.get("message"):
        out.field("Message", status["message"], 1)


def _node(out: _Text, node: Object, extra: Related) -> None:
    spec, status = node.get("spec") or {}, node.get("status") or {}
    capacity = status.get("capacity") or spec.get("capacity") or {}
    allocated = status.get("allocated") or {}
    out.section("Spec")
    out.field("Unschedulable", "true" if spec.get("unschedulable") else "false", 1)
    out.field("Address", spec.get("address") or status.get("address"), 1)
    out.section("Capacity", 1)
    out.field("Cores", capacity.get("cores"), 2)
    out.field("Memory", _memory(capacity.get("memory")), 2)
    out.section("Status")
    out.field("Schedulable", "no (cordoned)" if spec.get("unschedulable") else "yes", 1)
    out.field("Heartbeat", _timestamp(status.get("heartbeatTime")), 1)
    out.field("Driver", status.get("driver"), 1)
    out.section("Swarm", 1)
    out.field("Role", status.get("role"), 2)
    out.field("State", status.get("swarmState"), 2)
    out.field("Node ID", status.get("swarmNodeID"), 2)
    out.field("Engine version", status.get("engineVersion"), 2)
    out.field("Address", status.get("address"), 2)
    out.section("Allocated", 1)
    out.field("Cores", f"{allocated.get('cores', 0)} ({allocated.get('cpuset') or 'none'})", 2)
    out.field("Memory", _memory(allocated.get("memory", 0)), 2)
    entries = [e for e in allocated.get("tasks") or [] if isinstance(e, dict)]
    out.table(
        "Allocations",
        ("TASK", "JOB", "CPUSET", "MEMORY", "HELD FOR"),
        [
            [
                e.get("task"),
                e.get("job"),
                e.get("cpuset"),
                _memory(e.get("memory")),
                f"migration {e['migration']}" if e.get("migration") else "task",
            ]
            for e in entries
        ],
        1,
    )
    out.table(
        "Bound tasks",
        ("NAME", "JOB", "PHASE", "CPUSET", "MEMORY"),
        [
            [
                t["metadata"]["name"],
                (t.get("spec") or {}).get("job"),
                _phase(t),
                _status(t).get("cpuset"),
                _memory(_status(t).get("memory") or (t.get("spec") or {}).get("memory")),
            ]
            for t in extra.tasks
        ],
    )
    # The scheduler's recorded view when there is one, else what the bound tasks say.
    holders = [
        {
            "metadata": {"name": _holder(entry)},
            "status": {"cpuset": entry.get("cpuset")},
        }
        for entry in entries
    ]
    out.table("Core map", ("CORE", "TASK"), core_map(capacity, holders or extra.tasks))


def _holder(entry: Object) -> str:
    """A core map holder: the task, marked when the cores are held for a Migration."""
    task = str(entry.get("task", "?"))
    return f"{task} (migration {entry['migration']})" if entry.get("migration") else task


def _migration(out: _Text, migration: Object, extra: Related) -> None:
    spec, status = migration.get("spec") or {}, migration.get("status") or {}
    out.section("Spec")
    if spec.get("task"):
        out.field("Task", spec["task"], 1)
    else:
        out.field("Job", spec.get("job"), 1)
    out.field("To node", spec.get("toNode") or "<chosen by the scheduler>", 1)
    out.field("Mode", spec.get("mode", "auto"), 1)
    out.section("Status")
    out.field("Phase", _phase(migration), 1)
    out.field("Mode", status.get("mode") or "<not chosen yet>", 1)
    out.field("Reason", status.get("reason"), 1)
    if status.get("message"):
        out.field("Message", status["message"], 1)
    out.field("Start time", _timestamp(status.get("startTime")), 1)
    out.field("Completion time", _timestamp(status.get("completionTime")), 1)
    moves = [t for t in status.get("tasks") or [] if isinstance(t, dict)]
    if not moves and status.get("sourceNode"):
        moves = [
            {
                "task": spec.get("task"),
                "sourceNode": status.get("sourceNode"),
                "sourceCpuset": status.get("sourceCpuset"),
                "targetNode": status.get("targetNode"),
                "targetCpuset": status.get("targetCpuset"),
            }
        ]
    out.table(
        "Tasks",
        ("TASK", "SOURCE", "SOURCE CPUSET", "TARGET", "TARGET CPUSET", "MEMORY"),
        [
            [
                t.get("task"),
                t.get("sourceNode"),
                t.get("sourceCpuset"),
                t.get("targetNode") or "<not reserved yet>",
                t.get("targetCpuset"),
                _memory(t.get("memory")),
            ]
            for t in moves
        ],
        1,
    )
    order = ("reserve", "checkpoint", "stop", "transfer", "restore", "start", "total")
    timings = status.get("timings") or {}
    out.table(
        "Timings",
        ("STAGE", "SECONDS"),
        [[stage, f"{timings[stage]:.3f}"] for stage in order if stage in timings],
        1,
    )


def _checkpoint(out: _Text, checkpoint: Object, extra: Related) -> None:
    spec, status = checkpoint.get("spec") or {}, checkpoint.get("status") or {}
    out.section("Spec")
    out.field("Task", spec.get("task"), 1)
    out.field("Leave running", "true" if spec.get("leaveRunning", True) else "false", 1)
    out.section("Status")
    out.field("Phase", _phase(checkpoint), 1)
    out.field("Node", status.get("node"), 1)
    out.field("Path", status.get("path"), 1)
    size = status.get("sizeBytes")
    out.field("Size", _memory(size) if size is not None else None, 1)
    out.field("Created", _timestamp(status.get("createdTime")), 1)
    out.field("Reason", status.get("reason"), 1)
    if status.get("message"):
        out.field("Message", status["message"], 1)


def _generic(out: _Text, obj: Object, extra: Related) -> None:
    for key, value in obj.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        if key == "status" and isinstance(value, dict):
            value = {
                k: v for k, v in value.items() if k not in ("conditions", "observedGeneration")
            }
        label = key[:1].upper() + key[1:]
        if isinstance(value, dict | list) and value:
            out.section(label)
            body = yaml.safe_dump(
                value, sort_keys=False, default_flow_style=False, allow_unicode=True
            ).rstrip()
            out.raw([f"  {line}" for line in body.splitlines()])
        else:
            out.field(label, value)


_SUMMARIES: dict[str, Callable[[_Text, Object, Related], None]] = {
    "Job": _job,
    "Task": _task,
    "Node": _node,
    "Migration": _migration,
    "Checkpoint": _checkpoint,
}


# -- pure helpers -------------------------------------------------------------------------


def pending_reason(job: Object, events: Sequence[Object]) -> str:
    """Says why a Job is pending.

    Args:
        job: The Job.
        events: The Events about it, oldest first.

    Returns:
        From the first that says something: a ``Scheduled`` (or ``PodScheduled``) condition
        that is not True, any condition that is False with a reason, the newest Warning
        event; else that no scheduler has reported on the job yet.
    """
    conditions = (job.get("status") or {}).get("conditions") or []
    candidates = [
        c for c in conditions if c.get("type") in ("Scheduled", "PodScheduled") and
        c.get("status") != "True"
    ] + [c for c in conditions if c.get("status") == "False" and c.get("reason")]  # fmt: skip
    for condition in candidates:
        said = _reason_text(condition.get("reason"), condition.get("message"))
        if said:
            return said
    for event in reversed(events):
        if event.get("type") == "Warning":
            said = _reason_text(event.get("reason"), event.get("message"))
            if said:
                return said
    return "not yet scheduled (no scheduler has reported on it)"


def core_map(capacity: Object, tasks: Sequence[Object]) -> list[list[object]]:
    """Which task holds which core of a node.

    Args:
        capacity: The node's capacity (``coreIds``, else ``cores`` meaning ids 0 to cores-1).
        tasks: The tasks bound to the node; finished ones hold no core.

    Returns:
        One ``[core, holder]`` row per core, by core id; the holder is ``<free>``, a task's
        name, or several names joined by commas (which would break the scheduler's invariant,
        and is shown rather than hidden). Cores a task holds outside the capacity are listed.
    """
    ids = capacity.get("coreIds")
    cores = capacity.get("cores")
    if not isinstance(ids, list):
        ids = list(range(cores)) if isinstance(cores, int) else []
    holders: dict[int, list[str]] = {core: [] for core in ids if isinstance(core, int)}
    for task in tasks:
        status = task.get("status") or {}
        if status.get("phase") in FINISHED or not status.get("cpuset"):
            continue
        try:
            held = parse_cpuset(status["cpuset"])
        except QuantityError:
            continue  # the Bound tasks table shows the unreadable cpuset as it is
        for core in held:
            holders.setdefault(core, []).append(task["metadata"]["name"])
    return [[core, ", ".join(names) or "<free>"] for core, names in sorted(holders.items())]


def _status(obj: Object) -> Object:
    status: Object = obj.get("status") or {}
    return status


def _phase(obj: Object) -> str:
    return str(_status(obj).get("phase") or "Pending")


def _reason_text(reason: object, message: object) -> str:
    return ": ".join(str(part) for part in (reason, message) if part)


def _event_order(event: Object) -> tuple[datetime, int]:
    when = parse_time(_event_time(event)) or datetime.min.replace(tzinfo=timezone.utc)
    version = str(event["metadata"].get("resourceVersion", "0"))
    return when, int(version) if version.isdigit() else 0


def _event_time(event: Object) -> object:
    return (
        event.get("lastTimestamp")
        or event.get("firstTimestamp")
        or event["metadata"].get("creationTimestamp")
    )


def _timestamp(value: object) -> str:
    return f"{value} ({age(value)} ago)" if value else _NONE


def _memory(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return format_memory(value)
    return str(value) if value is not None else "-"


def _pin(spec: Object) -> str:
    node, cpuset = spec.get("node"), spec.get("cpuset")
    if node and cpuset:
        return f"{node}:{cpuset}"
    return str(node or "-")


def _command(value: object) -> str:
    if isinstance(value, list):
        return shlex.join(str(arg) for arg in value)
    return str(value) if value else "<image default>"


def _conditions(out: _Text, conditions: Sequence[Object], *, transitions: bool = False) -> None:
    """The Conditions table; with ``transitions``, the last transition time as well."""
    headers: tuple[str, ...] = ("TYPE", "STATUS", "REASON", "MESSAGE", "AGE")
    rows: list[list[object]] = [
        [
            c.get("type"),
            c.get("status"),
            c.get("reason"),
            c.get("message"),
            age(c.get("lastTransitionTime")),
        ]
        for c in conditions
    ]
    if transitions:
        headers += ("LAST TRANSITION",)
        for row, c in zip(rows, conditions, strict=True):
            row.append(c.get("lastTransitionTime"))
    out.table("Conditions", headers, rows)


def _events(out: _Text, events: Sequence[Object]) -> None:
    rows: list[list[object]] = []
    for event in events:
        when = age(_event_time(event))
        count = event.get("count")
        if isinstance(count, int) and count > 1:
            when += f" (x{count})"
        source = event.get("source") or {}
        rows.append(
            [
                event.get("type"),
                event.get("reason"),
                when,
                source.get("component"),
                event.get("message"),
            ]
        )
    out.table("Events", ("TYPE", "REASON", "AGE", "FROM", "MESSAGE"), rows)


class _Text:
    """Lines of a description: labelled values in one column, sections and tables."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def field(self, label: str, value: object, level: int = 0) -> None:
        """``Label:`` then the value in the value column (``<none>`` when absent)."""
        self.lines_field(label, [_cell(value, _NONE)], level)

    def lines_field(self, label: str, values: Sequence[str], level: int = 0) -> None:
        """A label with several values, one a line, each in the value column."""
        head = f"{'  ' * level}{label}:"
        head = head.ljust(LABEL_WIDTH) if len(head) < LABEL_WIDTH else head + " "
        for i, value in enumerate(values or [_NONE]):
            self._lines.append(((head if i == 0 else " " * len(head)) + value).rstrip())

    def section(self, label: str, level: int = 0) -> None:
        """A heading whose fields follow, one level deeper."""
        self._lines.append(f"{'  ' * level}{label}:")

    def raw(self, lines: Sequence[str]) -> None:
        """Lines added as they are."""
        self._lines.extend(lines)

    def table(
        self, label: str, headers: Sequence[str], rows: Sequence[Sequence[object]], level: int = 0
    ) -> None:
        """A heading and an aligned table under it, or ``Label: <none>`` (one space) if empty."""
        if not rows:
            self._lines.append(f"{'  ' * level}{label}: {_NONE}")
            return
        self.section(label, level)
        cells = [list(headers), *([_cell(c, "-") for c in row] for row in rows)]
        widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
        indent = "  " * (level + 1)
        for row in cells:
            line = "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
            self._lines.append((indent + line).rstrip())

    def text(self) -> str:
        """The description so far."""
        return "\n".join(self._lines)


def _cell(value: object, empty: str) -> str:
    """A value on one line; ``empty`` for None or an empty string, list or mapping."""
    if value is None or (isinstance(value, str | list | dict) and not value):
        return empty
    return " ".join(str(value).split()) if isinstance(value, str) else str(value)
