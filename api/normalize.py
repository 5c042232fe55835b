"""Admission's defaults and the rules a JSON Schema cannot express, for one v1 object.

:func:`normalize` turns what a user wrote into the canonical stored form (memory in bytes,
canonical cpusets, commands as argument lists, a pinned task's cores from its cpuset, a job's
network named after the job, then the schema defaults) and reports semantic problems: name and
label syntax, quantities and cpusets that do not parse, pins without a node, duplicate task
names, ports or mount targets. It tolerates values of any type (the schema reports those) and
never raises. It does not run the schema itself and knows nothing about other objects.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import shlex
from typing import Any

from swarmapply.api import names
from swarmapply.api.kinds import KINDS, name_error
from swarmapply.api.quantity import (
    QuantityError,
    format_cpuset,
    format_memory,
    parse_cpuset,
    parse_memory,
)
from swarmapply.api.schema import Path, format_path, show_value, with_defaults

__all__ = ["Problem", "normalize"]

#: A problem found in an object: where (a field path) and what is wrong.
Problem = tuple[Path, str]

_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]+")


def normalize(obj: dict[str, Any], defaults: bool = True) -> tuple[dict[str, Any], list[Problem]]:
    """Applies admission defaults to an object and checks the rules the schema cannot express.

    Args:
        obj: A v1 object whose ``kind`` is known; other fields may hold anything.
        defaults: With False, values are only put in canonical form (bytes, cpusets, command
            lists) and nothing absent is filled in: what the user wrote, as apply owns it.

    Returns:
        A normalised deep copy (with schema defaults filled in) and the problems found, each
        at the most precise field path. The copy is only meaningful when there are no problems
        and the schema accepts it.
    """
    result = copy.deepcopy(obj)
    problems: list[Problem] = []
    kind = str(result.get("kind"))
    if kind not in KINDS:
        return result, [(("kind",), f"unknown kind {show_value(kind)}")]
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        _metadata(kind, metadata, problems)
    spec = result.get("spec")
    if isinstance(spec, dict):
        if kind == "Job":
            _job(result, spec, problems, defaults)
        elif kind == "Task":
            _task(spec, ("spec",), problems, defaults)
            _name(spec.get("job"), ("spec", "job"), problems)
        elif kind == "Node":
            capacity = spec.get("capacity")
            if isinstance(capacity, dict):
                _memory(capacity, ("spec", "capacity"), problems)
        elif kind == "Migration":
            for field in ("task", "job", "toNode"):
                _name(spec.get(field), ("spec", field), problems)
        elif kind == "Checkpoint":
            _name(spec.get("task"), ("spec", "task"), problems)
    return (with_defaults(result) if defaults else result), problems


def _name(value: Any, path: Path, problems: list[Problem]) -> None:
    """Checks a reference to another object by name (strings only; the schema does types)."""
    if isinstance(value, str):
        problem = names.dns1123_label_error(value)
        if problem is not None:
            problems.append((path, problem))


def _metadata(kind: str, metadata: dict[str, Any], problems: list[Problem]) -> None:
    name = metadata.get("name")
    if isinstance(name, str):
        problem = name_error(kind, name)
        if problem is not None:
            problems.append((("metadata", "name"), problem))
    prefix = metadata.get("generateName")
    if isinstance(prefix, str) and prefix:
        # The store appends five lower-case letters or digits to the prefix.
        problem = name_error(kind, prefix + "x0x0x")
        if problem is not None:
            problems.append((("metadata", "generateName"), problem))
    for field, check_values in (("labels", True), ("annotations", False)):
        mapping = metadata.get(field)
        if not isinstance(mapping, dict):
            continue
        for key, value in mapping.items():
            problem = names.label_key_error(key)
            if problem is not None:
                problems.append((("metadata", field, str(key)), problem))
            elif check_values and isinstance(value, str):
                problem = names.label_value_error(value)
                if problem is not None:
                    problems.append((("metadata", field, str(key)), problem))


def _job(
    obj: dict[str, Any], spec: dict[str, Any], problems: list[Problem], defaults: bool
) -> None:
    tasks = spec.get("tasks")
    if isinstance(tasks, list):
        first_use: dict[str, int] = {}
        for i, task in enumerate(tasks):
            if not isinstance(task, dict):
                continue
            path: Path = ("spec", "tasks", i)
            name = task.get("name")
            if isinstance(name, str):
                problem = names.dns1123_label_error(name)
                if problem is not None:
                    problems.append(((*path, "name"), problem))
                elif name in first_use:
                    where = format_path(("spec", "tasks", first_use[name], "name"))
                    problems.append(
                        (
                            (*path, "name"),
                            f"task name {show_value(name)} is already used by {where}",
                        )
                    )
                else:
                    first_use[name] = i
            _task(task, path, problems, defaults)
    job_name = (
        (obj.get("metadata") or {}).get("name") if isinstance(obj.get("metadata"), dict) else None
    )
    network = spec.get("network")
    if network is None and "network" not in spec and defaults:
        network = spec["network"] = {}
    if isinstance(network, dict):
        if "name" not in network and isinstance(job_name, str) and defaults:
            network["name"] = job_name
        subnet = network.get("subnet")
        if isinstance(subnet, str):
            try:
                network["subnet"] = str(ipaddress.ip_network(subnet.strip(), strict=True))
            except ValueError as exc:
                problems.append(
                    (
                        ("spec", "network", "subnet"),
                        "expected a subnet in CIDR form such as 10.10.0.0/24,"
                        f" got {show_value(subnet)} ({exc})",
                    )
                )


#: The Docker Engine refuses a container memory limit below 6 MiB.
MIN_TASK_MEMORY = 6 * 2**20


def _memory(holder: dict[str, Any], path: Path, problems: list[Problem], minimum: int = 1) -> None:
    if holder.get("memory") is None:
        return
    try:
        holder["memory"] = parse_memory(holder["memory"])
    except QuantityError as exc:
        problems.append(((*path, "memory"), str(exc)))
        return
    if holder["memory"] < minimum:
        problems.append(
            (
                (*path, "memory"),
                f"expected at least {format_memory(minimum)} (Docker's smallest memory limit), "
                f"got {format_memory(holder['memory'])}",
            )
        )


def _task(task: dict[str, Any], path: Path, problems: list[Problem], defaults: bool) -> None:
    """Normalises and checks one task: of a Job's spec.tasks[], or a Task's spec."""
    command = task.get("command")
    if isinstance(command, str):
        try:
            task["command"] = shlex.split(command)
        except ValueError as exc:
            problems.append(((*path, "command"), f"cannot split the command like a shell: {exc}"))
    if task.get("command") in ("", []):
        del task["command"]
    _memory(task, path, problems, MIN_TASK_MEMORY)
    _name(task.get("node"), (*path, "node"), problems)
    if "cpuset" in task:
        try:
            cores = parse_cpuset(task["cpuset"])
        except QuantityError as exc:
            problems.append(((*path, "cpuset"), str(exc)))
        else:
            task["cpuset"] = format_cpuset(cores)
            if task.get("node") in (None, ""):
                problems.append(
                    (
                        (*path, "cpuset"),
                        "a cpuset pin needs a node: set node as well (or drop cpuset)",
                    )
                )
            given = task.get("cores")
            if given is None:
                if defaults:
                    task["cores"] = len(cores)
            elif isinstance(given, int) and not isinstance(given, bool) and given != len(cores):
                problems.append(
                    (
                        (*path, "cores"),
                        f"must equal the number of cores in cpuset {task['cpuset']!r}"
                        f" ({len(cores)}), got {given}",
                    )
                )
    _ports(task.get("ports"), (*path, "ports"), problems)
    _volumes(task.get("volumes"), (*path, "volumes"), problems)


def _ports(ports: Any, path: Path, problems: list[Problem]) -> None:
    if not isinstance(ports, list):
        return
    container: dict[tuple[Any, Any], int] = {}
    host: dict[tuple[Any, Any], int] = {}
    for j, port in enumerate(ports):
        if not isinstance(port, dict):
            continue
        protocol = port.get("protocol", "tcp")
        for field, seen in (("containerPort", container), ("hostPort", host)):
            number = port.get(field)
            if (
                not isinstance(number, int)
                or isinstance(number, bool)
                or not isinstance(protocol, str)
            ):
                continue
            if (number, protocol) in seen:
                other = format_path((*path, seen[(number, protocol)]))
                problems.append(
                    ((*path, j, field), f"{field} {number}/{protocol} is already used by {other}")
                )
            else:
                seen[(number, protocol)] = j


def _volumes(volumes: Any, path: Path, problems: list[Problem]) -> None:
    if not isinstance(volumes, list):
        return
    targets: dict[str, int] = {}
    for j, volume in enumerate(volumes):
        if not isinstance(volume, dict):
            continue
        source = volume.get("source")
        if (
            isinstance(source, str)
            and not source.startswith("/")
            and _VOLUME_NAME.fullmatch(source) is None
        ):
            problems.append(
                (
                    (*path, j, "source"),
                    f"expected an absolute host path or a volume name (letters, digits,"
                    f" '_', '.', '-'), got {show_value(source)}",
                )
            )
        target = volume.get("target")
        if isinstance(target, str):
            key = target.rstrip("/") or "/"
            if key in targets:
                other = format_path((*path, targets[key]))
                problems.append(((*path, j, "target"), f"{target} is already mounted by {other}"))
            else:
                targets[key] = j
