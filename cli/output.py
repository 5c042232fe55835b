"""Rendering objects for people (aligned tables) and for programs (YAML, JSON, names).

Pure functions from objects to text; nothing here touches the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import yaml

from swarmapply.api.kinds import kind_info
from swarmapply.api.quantity import format_memory
from swarmapply.api.store.lifecycle import parse_time

Row = list[str]


def ref(kind: str, name: str) -> str:
    """The kubectl-style reference of an object: ``job.swarmapply.io/NAME``."""
    return f"{kind_info(kind).singular}.swarmapply.io/{name}"


def age(timestamp: object, now: datetime | None = None) -> str:
    """A Kubernetes-style age: ``45s``, ``12m``, ``3h``, ``5d`` (``<unknown>`` if unreadable)."""
    created = parse_time(timestamp)
    if created is None:
        return "<unknown>"
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - created).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _phase(obj: dict[str, Any]) -> str:
    """The phase to show: Terminating once deletion has begun (finalizers hold it)."""
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    return str((obj.get("status") or {}).get("phase") or "Pending")


def _job_row(obj: dict[str, Any]) -> Row:
    tasks = obj.get("spec", {}).get("tasks", [])
    status = obj.get("status", {})
    cores = sum(int(t.get("cores", 1)) for t in tasks)
    memory = sum(int(t.get("memory", 0)) for t in tasks)
    ready = status.get("tasksReady", 0)
    return [
        _phase(obj),
        f"{ready}/{len(tasks)}",
        str(cores),
        format_memory(memory) if memory else "-",
    ]


def _task_row(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    memory = status.get("memory") or spec.get("memory")
    return [
        spec.get("job", "-"),
        _phase(obj),
        # The binding only: a pin (spec.node, spec.cpuset) is a request, not a placement.
        status.get("node") or "-",
        status.get("cpuset") or "-",
        format_memory(int(memory)) if memory else "-",
    ]


def _node_row(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    capacity = status.get("capacity") or spec.get("capacity") or {}
    allocated = status.get("allocated") or {}
    ready = next(
        (c.get("status") for c in status.get("conditions", []) if c.get("type") == "Ready"), None
    )
    state = {"True": "Ready", "False": "NotReady"}.get(str(ready), "Unknown")
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    memory = capacity.get("memory")
    return [
        state,
        f"{allocated.get('cores', 0)}/{capacity.get('cores', '?')}",
        format_memory(int(memory)) if isinstance(memory, int) else str(memory or "-"),
    ]


def _job_wide(obj: dict[str, Any]) -> Row:
    spec = obj.get("spec", {})
    network = spec.get("network") or {}
    return [str(spec.get("priority", 0)), network.get("name", "-"), spec.get("restartPolicy", "-")]


def _task_wide(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    container = status.get("containerID") or "-"
    return [spec.get("image", "-"), container[:12], str(status.get("restarts", 0))]


def _node_wide(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    address = status.get("address") or spec.get("address") or "-"
    return [address, status.get("role", "-"), status.get("engineVersion", "-")]


#: Extra columns ``-o wide`` adds after the default ones.
WIDE_COLUMNS: dict[str, tuple[Sequence[str], Callable[[dict[str, Any]], Row]]] = {
    "Job": (("PRIORITY", "NETWORK", "RESTART"), _job_wide),
    "Task": (("IMAGE", "CONTAINER", "RESTARTS"), _task_wide),
    "Node": (("ADDRESS", "ROLE", "ENGINE"), _node_wide),
}


def _event_row(obj: dict[str, Any]) -> Row:
    involved = obj.get("involvedObject") or {}
    target = f"{str(involved.get('kind', '?')).lower()}/{involved.get('name', '?')}"
    count = obj.get("count", 1)
    message = str(obj.get("message", ""))
    return [
        age(obj.get("lastTimestamp") or obj.get("firstTimestamp")),
        str(obj.get("type", "-")),
        str(obj.get("reason", "-")),
        target,
        message + (f" (x{count})" if isinstance(count, int) and count > 1 else ""),
    ]


def _policy_row(obj: dict[str, Any]) -> Row:
    spec = obj.get("spec", {})
    allows = [
        word
        for word, key in (
            ("privileged", "allowPrivileged"),
            ("hostNetwork", "allowHostNetwork"),
            ("hostPID", "allowHostPID"),
        )
        if spec.get(key)
    ]
    allows += [f"cap:{c}" for c in spec.get("allowedCapabilities") or []]
    allows += [
        f"path:{p.get('path')}{' (ro)' if p.get('readOnly') else ''}"
        for p in spec.get("allowedHostPaths") or []
    ]
    return [", ".join(allows) or "-"]


def _joined(values: Sequence[object]) -> str:
    unique = [str(v) for v in dict.fromkeys(values) if v]
    return ",".join(unique) or "-"


def _migration_row(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    what = f"task/{spec['task']}" if spec.get("task") else f"job/{spec.get('job', '?')}"
    moves = [t for t in status.get("tasks") or [] if isinstance(t, dict)]
    source = status.get("sourceNode") or _joined([t.get("sourceNode") for t in moves])
    target = status.get("targetNode") or _joined([t.get("targetNode") for t in moves])
    if target == "-":
        target = str(spec.get("toNode") or "-")
    mode = str(status.get("mode") or spec.get("mode") or "auto")
    return [what, mode, _phase(obj), str(source), str(target)]


def _checkpoint_row(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    size = status.get("sizeBytes")
    return [
        str(spec.get("task", "-")),
        _phase(obj),
        str(status.get("node") or "-"),
        format_memory(size) if isinstance(size, int) and not isinstance(size, bool) else "-",
    ]


COLUMNS: dict[str, tuple[Sequence[str], Callable[[dict[str, Any]], Row]]] = {
    "Job": (("PHASE", "TASKS", "CORES", "MEMORY"), _job_row),
    "Task": (("JOB", "PHASE", "NODE", "CPUSET", "MEMORY"), _task_row),
    "Node": (("STATUS", "CORES", "MEMORY"), _node_row),
    "Event": (("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"), _event_row),
    "ClusterPolicy": (("ALLOWS",), _policy_row),
    "Migration": (("TASK/JOB", "MODE", "PHASE", "SOURCE", "TARGET"), _migration_row),
    "Checkpoint": (("TASK", "PHASE", "NODE", "SIZE"), _checkpoint_row),
}


_COLOURS = {"green": "32", "yellow": "33", "red": "31"}
_STATE_COLOURS = {
    "Running": "green",
    "Succeeded": "green",
    "Ready": "green",
    "Pending": "yellow",
    "Reserved": "yellow",
    "Checkpointing": "yellow",
    "Stopping": "yellow",
    "Transferring": "yellow",
    "Restoring": "yellow",
    "Starting": "yellow",
    "Terminating": "yellow",
    "Scheduled": "yellow",
    "Unknown": "yellow",
    "Failed": "red",
    "NotReady": "red",
}


def _paint(cell: str, padded: str) -> str:
    colour = _STATE_COLOURS.get(cell.split(",")[0])
    return f"\033[{_COLOURS[colour]}m{padded}\033[0m" if colour else padded


def table_rows(
    kind: str,
    objects: Sequence[dict[str, Any]],
    header: bool = True,
    color: bool = False,
    wide: bool = False,
) -> list[str]:
    """Rows of an aligned table (columns fit these objects; the header first if asked).

    With ``color``, phases and node states are coloured (after padding, so columns align).
    """
    headers, row = COLUMNS.get(kind, ((), lambda obj: []))
    extra, extra_row = WIDE_COLUMNS.get(kind, ((), lambda obj: [])) if wide else ((), None)
    rows = [["NAME", *headers, "AGE", *extra]]
    for obj in objects:
        meta = obj["metadata"]
        more = extra_row(obj) if extra_row else []
        rows.append([meta["name"], *row(obj), age(meta.get("creationTimestamp")), *more])
    lines = align(rows, color=color)
    return lines if header else lines[1:]


def align(
    rows: Sequence[Sequence[str]], color: bool = False, right: Sequence[bool] = ()
) -> list[str]:
    """Rows of cells as aligned text lines, three spaces between columns.

    Args:
        rows: The header row first, then the data rows.
        color: Colour state cells of every row but the header.
        right: Per column, True to align right (numbers); missing columns align left.
    """
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    flush = [i < len(right) and right[i] for i in range(len(widths))]
    lines = []
    for index, r in enumerate(rows):
        cells = []
        for cell, w, to_right in zip(r, widths, flush, strict=True):
            padded = cell.rjust(w) if to_right else cell.ljust(w)
            cells.append(_paint(cell, padded) if color and index else padded)
        lines.append("   ".join(cells).rstrip())
    return lines


def table(
    kind: str, objects: Sequence[dict[str, Any]], color: bool = False, wide: bool = False
) -> str:
    """An aligned table of objects of one kind, with the columns an operator wants."""
    return "\n".join(table_rows(kind, objects, color=color, wide=wide))


def as_list(objects: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": list(objects)}


def render(
    kind: str, objects: Sequence[dict[str, Any]], fmt: str, single: bool, color: bool = False
) -> str:
    """Objects in one of the output formats: ``table``, ``wide``, ``yaml``, ``json``, ``name``."""
    if fmt == "name":
        return "\n".join(ref(kind, o["metadata"]["name"]) for o in objects)
    doc: Any = objects[0] if single and len(objects) == 1 else as_list(objects)
    if fmt == "json":
        return json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False)
    if fmt == "yaml":
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).rstrip()
    return table(kind, objects, color, wide=fmt == "wide")
