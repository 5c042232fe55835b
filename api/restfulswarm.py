"""Conversion of RESTfulSwarm documents: job documents into v1 Jobs, and requests to act.

RESTfulSwarm described a job as ``{"job_name", "job_info": {"network", "tasks": {key: {...}}},
"status", "start_time", "end_time"}`` with docker-py style task fields (``req_cores``,
``cpuset_cpus``, ``mem_limit``, ``ports``, ``volumes``, ``environment``). :func:`convert` maps
it onto a v1 Job and returns, with it, a :class:`PathMap` so that problems found later on the
Job are reported at the original document's fields (``job_info.tasks.t1.req_cores``, not
``spec.tasks[0].cores``). Observed state in the document (``status``, times, per-task status,
``detach``, ``deadline``) is not desired state: it is kept in annotations, never in the spec.

The conversion is structural only: values are carried over as they are and validated later
with the v1 rules. It is pure and never raises for any input; see :func:`to_job` for a variant
that raises one structured error.

RESTfulSwarm also had requests that act on running jobs: a migration ``{"job", "container",
"from", "to", "info"}`` (a JSON array of them is a group migration), an update ``{"job",
"node", "container_name", "cpuset_cpus", "mem_limit"}`` and a checkpoint ``{"node",
"containers": [...]}``. :func:`document_kind` recognises them by their fields and
:func:`convert_request` checks them field by field into :class:`MigrationRequest`,
:class:`UpdateRequest` and :class:`CheckpointRequest` values. These are not objects yet: which
Task a container names, and where it runs, is only known from the store, so the caller
resolves them (``swarmapply apply`` does) and reports problems at the request's fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from swarmapply.api import names
from swarmapply.api.kinds import API_VERSION
from swarmapply.api.quantity import QuantityError, format_cpuset, parse_cpuset, parse_memory
from swarmapply.errors import PermanentError

__all__ = [
    "END_TIME_ANNOTATION",
    "START_TIME_ANNOTATION",
    "STATUS_ANNOTATION",
    "TASKS_ANNOTATION",
    "CheckpointRequest",
    "Conversion",
    "MigrationRequest",
    "PathMap",
    "Request",
    "RequestConversion",
    "RestfulSwarmError",
    "UpdateRequest",
    "convert",
    "convert_request",
    "document_kind",
    "is_restfulswarm",
    "node_of",
    "to_job",
]

Path = tuple[str | int, ...]

STATUS_ANNOTATION = "restfulswarm.swarmapply.io/status"
START_TIME_ANNOTATION = "restfulswarm.swarmapply.io/start-time"
END_TIME_ANNOTATION = "restfulswarm.swarmapply.io/end-time"
#: Per-task observed fields (status, deadline, detach=false) as compact JSON by task key.
TASKS_ANNOTATION = "restfulswarm.swarmapply.io/tasks"

_JOB_FIELDS = ("job_name", "job_info", "status", "start_time", "end_time")
_INFO_FIELDS = ("network", "tasks")
_NETWORK_FIELDS = ("name", "driver", "subnet")
_TASK_FIELDS = (
    "container_name",
    "node",
    "image",
    "detach",
    "command",
    "req_cores",
    "cpu_count",
    "cpuset_cpus",
    "mem_limit",
    "ports",
    "volumes",
    "environment",
    "status",
    "deadline",
)
_PORT_KEY = re.compile(r"([0-9]{1,5})(?:/(tcp|udp|sctp))?", re.IGNORECASE)


@dataclass(frozen=True)
class PathMap:
    """Maps field paths of the converted Job back to the original document.

    Attributes:
        entries: v1 path prefix -> (original path, transparent). A transparent entry keeps the
            rest of a longer path (``spec.network.subnet`` -> ``job_info.network.subnet``); an
            opaque one points at the original field as a whole.
    """

    entries: Mapping[Path, tuple[Path, bool]] = field(default_factory=dict)

    def translate(self, path: Path) -> Path:
        """Returns the original path of a v1 path (the document root if nothing matches)."""
        for cut in range(len(path), -1, -1):
            hit = self.entries.get(path[:cut])
            if hit is not None:
                original, transparent = hit
                return original + path[cut:] if transparent else original
        return ()


@dataclass(frozen=True)
class Conversion:
    """The result of :func:`convert`.

    Attributes:
        job: The v1 Job (``None`` only if the document is not a mapping).
        errors: Problems found while converting, as ``(original path, message)``.
        paths: How to report a v1 path of ``job`` in terms of the original document.
    """

    job: dict[str, Any] | None
    errors: list[tuple[Path, str]]
    paths: PathMap


class RestfulSwarmError(PermanentError):
    """A RESTfulSwarm document that cannot be converted; ``errors`` lists every problem."""

    def __init__(self, errors: list[tuple[Path, str]]) -> None:
        self.errors = list(errors)
        lines = [f"{'.'.join(str(p) for p in path) or '(document)'}: {msg}" for path, msg in errors]
        super().__init__("\n".join(lines))


def is_restfulswarm(doc: Any) -> bool:
    """Tells whether a parsed document is a RESTfulSwarm job (``job_name`` and ``job_info``,
    no ``apiVersion``)."""
    return (
        isinstance(doc, dict)
        and "job_name" in doc
        and "job_info" in doc
        and "apiVersion" not in doc
    )


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, sort_keys=True)
    except (TypeError, ValueError, RecursionError):  # huge integers, mixed key types, cycles
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 50 else text[:47] + "..."


class _Converter:
    def __init__(self) -> None:
        self.errors: list[tuple[Path, str]] = []
        self.entries: dict[Path, tuple[Path, bool]] = {
            ("metadata",): ((), False),
            ("metadata", "name"): (("job_name",), False),
            ("spec",): (("job_info",), False),
            ("spec", "tasks"): (("job_info", "tasks"), False),
            ("spec", "network"): (("job_info", "network"), True),
        }
        self.observed: dict[str, dict[str, Any]] = {}

    def link(self, v1_path: Path, original: Path, transparent: bool) -> None:
        """Records where a field of the converted Job came from."""
        self.entries[v1_path] = (original, transparent)

    def error(self, path: Path, message: str) -> None:
        self.errors.append((path, message))

    def unknown(self, value: Mapping[Any, Any], known: tuple[str, ...], where: Path) -> None:
        for key in value:
            if key not in known:
                self.error(
                    (*where, str(key)),
                    f"unknown RESTfulSwarm field; known fields: {', '.join(known)}",
                )

    def job(self, doc: dict[str, Any]) -> dict[str, Any]:
        self.unknown(doc, _JOB_FIELDS, ())
        annotations: dict[str, str] = {}
        status = doc.get("status")
        if isinstance(status, str):
            if status:
                annotations[STATUS_ANNOTATION] = status
        elif status is not None:
            self.error(("status",), f"expected the job's status as a string, got {_show(status)}")
        for key, annotation in (
            ("start_time", START_TIME_ANNOTATION),
            ("end_time", END_TIME_ANNOTATION),
        ):
            value = doc.get(key)
            if value in (None, 0, ""):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                self.error((key,), f"expected a time as a number or string, got {_show(value)}")
            else:
                annotations[annotation] = str(value)
        metadata: dict[str, Any] = {"name": doc.get("job_name")}
        spec: dict[str, Any] = {}
        info = doc.get("job_info")
        if not isinstance(info, dict):
            self.error(
                ("job_info",), f"expected a mapping with network and tasks, got {_show(info)}"
            )
            info = {"tasks": {}}  # nothing more to say about its tasks
        self.unknown(info, _INFO_FIELDS, ("job_info",))
        network = self.network(info.get("network"))
        if network:
            spec["network"] = network
        spec["tasks"] = self.tasks(info.get("tasks"))
        if self.observed:
            annotations[TASKS_ANNOTATION] = json.dumps(
                self.observed, sort_keys=True, separators=(",", ":")
            )
        if annotations:
            metadata["annotations"] = annotations
        return {"apiVersion": API_VERSION, "kind": "Job", "metadata": metadata, "spec": spec}

    def network(self, network: Any) -> dict[str, Any]:
        where: Path = ("job_info", "network")
        if network is None:
            return {}
        if not isinstance(network, dict):
            self.error(
                where, f"expected a mapping with name, driver and subnet, got {_show(network)}"
            )
            return {}
        self.unknown(network, _NETWORK_FIELDS, where)
        return {k: v for k, v in network.items() if k in _NETWORK_FIELDS and v not in ("", None)}

    def tasks(self, tasks: Any) -> list[dict[str, Any]]:
        where: Path = ("job_info", "tasks")
        if not isinstance(tasks, dict):
            self.error(where, f"expected a mapping of task name to task, got {_show(tasks)}")
            return []
        result: list[dict[str, Any]] = []
        for key, task in tasks.items():
            if not isinstance(task, dict):
                self.error((*where, key), f"expected a task as a mapping, got {_show(task)}")
                continue
            index = len(result)
            result.append(self.task(str(key), task, index))
        return result

    def task(self, key: str, task: dict[str, Any], index: int) -> dict[str, Any]:
        src: Path = ("job_info", "tasks", key)
        dst: Path = ("spec", "tasks", index)
        self.entries[dst] = (src, False)
        self.link((*dst, "name"), src, False)
        self.unknown(task, _TASK_FIELDS, src)
        out: dict[str, Any] = {"name": key}
        container = task.get("container_name")
        if container not in (None, "", key):
            self.error(
                (*src, "container_name"),
                f"must be empty or equal the task's key {_show(key)}, got {_show(container)}",
            )
        cores_field = "req_cores" if "req_cores" in task else "cpu_count"
        if "req_cores" in task and "cpu_count" in task and task["req_cores"] != task["cpu_count"]:
            self.error((*src, "cpu_count"), "differs from req_cores; give only req_cores")
        simple = (
            ("image", "image", True),
            ("command", "command", True),
            (cores_field, "cores", False),
            ("mem_limit", "memory", False),
            ("node", "node", False),
            ("cpuset_cpus", "cpuset", False),
        )
        for old, new, transparent in simple:
            self.link((*dst, new), (*src, old), transparent)
            value = task.get(old)
            if value is not None and value != "":
                out[new] = value
        observed = {
            k: task[k]
            for k in ("status", "deadline")
            if task.get(k) not in (None, "", 0) and not isinstance(task.get(k), (dict, list))
        }
        if "detach" in task and task["detach"] is not True:
            observed["detach"] = task["detach"]
        if observed:
            self.observed[key] = observed
        for name in ("ports", "volumes", "environment"):
            self.link((*dst, name), (*src, name), False)
        ports = self.ports(task.get("ports"), (*src, "ports"), (*dst, "ports"))
        volumes = self.volumes(task.get("volumes"), (*src, "volumes"), (*dst, "volumes"))
        env = self.environment(task.get("environment"), (*src, "environment"), dst)
        for name, value in (("ports", ports), ("volumes", volumes), ("environment", env)):
            if value:
                out[name] = value
        return out

    def ports(self, ports: Any, src: Path, dst: Path) -> list[dict[str, Any]]:
        if ports is None:
            return []
        if not isinstance(ports, dict):
            self.error(src, f'expected a mapping like {{"8080/tcp": 80}}, got {_show(ports)}')
            return []
        result: list[dict[str, Any]] = []
        for key, host in ports.items():
            match = _PORT_KEY.fullmatch(str(key)) if not isinstance(key, bool) else None
            if match is None:
                self.error((*src, str(key)), 'expected a container port like "8080/tcp" or "8080"')
                continue
            hosts = host if isinstance(host, list) else [host]
            for one in hosts:
                entry: dict[str, Any] = {
                    "containerPort": int(match[1]),
                    "protocol": (match[2] or "tcp").lower(),
                }
                if isinstance(one, str) and one.isascii() and one.isdigit():
                    one = int(one)
                if isinstance(one, int) and not isinstance(one, bool):
                    entry["hostPort"] = one
                elif one is not None:
                    self.error(
                        (*src, str(key)),
                        f"expected a host port number or null, got {_show(one)}"
                        " (binding to a host IP is not supported)",
                    )
                    continue
                self.link((*dst, len(result)), (*src, str(key)), False)
                result.append(entry)
        return result

    def volumes(self, volumes: Any, src: Path, dst: Path) -> list[dict[str, Any]]:
        if volumes is None:
            return []
        items: list[tuple[Path, Any, Any, Any]] = []  # (where, source, target, mode)
        if isinstance(volumes, dict):
            for key, bind in volumes.items():
                where = (*src, str(key))
                if not isinstance(bind, dict):
                    self.error(
                        where, f'expected {{"bind": "/path", "mode": "rw"}}, got {_show(bind)}'
                    )
                    continue
                self.unknown(bind, ("bind", "mode"), where)
                items.append((where, str(key), bind.get("bind"), bind.get("mode", "rw")))
        elif isinstance(volumes, list):
            for i, spec in enumerate(volumes):
                parts = spec.split(":") if isinstance(spec, str) else []
                if len(parts) not in (2, 3) or not all(parts):
                    self.error(
                        (*src, i),
                        f'expected "/host/path:/container/path[:ro|rw]", got {_show(spec)}',
                    )
                    continue
                items.append(((*src, i), parts[0], parts[1], parts[2] if len(parts) == 3 else "rw"))
        else:
            self.error(
                src, f'expected a mapping or a list of "src:dst[:mode]", got {_show(volumes)}'
            )
            return []
        result: list[dict[str, Any]] = []
        for where, source, target, mode in items:
            options = mode.split(",") if isinstance(mode, str) else [None]
            bad = [o for o in options if o not in ("ro", "rw")]
            if bad or len(options) != 1:
                self.error(where, f'expected mode "ro" or "rw", got {_show(mode)}')
                continue
            entry: dict[str, Any] = {"source": source, "readOnly": options[0] == "ro"}
            if target is not None:
                entry["target"] = target
            self.link((*dst, len(result)), where, False)
            result.append(entry)
        return result

    def environment(self, env: Any, src: Path, task_dst: Path) -> dict[str, str]:
        dst = (*task_dst, "environment")
        if env is None:
            return {}
        result: dict[str, str] = {}
        pairs: list[tuple[Path, Any, Any]] = []
        if isinstance(env, dict):
            pairs = [((*src, str(k)), k, v) for k, v in env.items()]
        elif isinstance(env, list):
            seen: set[str] = set()
            for i, item in enumerate(env):
                if not isinstance(item, str) or "=" not in item:
                    self.error((*src, i), f'expected "NAME=value", got {_show(item)}')
                    continue
                name, _, value = item.partition("=")
                if name in seen:
                    self.error((*src, i), f"variable {_show(name)} is set twice")
                    continue
                seen.add(name)
                pairs.append(((*src, i), name, value))
        else:
            self.error(src, f'expected a mapping or a list of "NAME=value", got {_show(env)}')
            return {}
        for where, name, value in pairs:
            if isinstance(value, (bool, int, float)):
                value = str(value)  # docker-py formats values this way
            if not isinstance(value, str):
                self.error(where, f"expected the variable's value as a string, got {_show(value)}")
                continue
            self.link((*dst, str(name)), where, False)
            result[str(name)] = value
        return result


def convert(doc: Any) -> Conversion:
    """Converts a RESTfulSwarm job document into a v1 Job, collecting every problem.

    Args:
        doc: A parsed document (see :func:`is_restfulswarm`).

    Returns:
        The Job (unvalidated; values are carried over as they are), the conversion errors by
        original field path, and the :class:`PathMap` for reporting later errors.
    """
    converter = _Converter()
    if not isinstance(doc, dict):
        converter.error((), f"expected a RESTfulSwarm job as a mapping, got {_show(doc)}")
        return Conversion(None, converter.errors, PathMap(converter.entries))
    job = converter.job(doc)
    return Conversion(job, converter.errors, PathMap(dict(converter.entries)))


def to_job(doc: Any) -> tuple[dict[str, Any], PathMap]:
    """Converts a RESTfulSwarm job document, raising if it cannot be converted.

    Args:
        doc: A parsed RESTfulSwarm job document.

    Returns:
        The v1 Job (not yet validated) and its :class:`PathMap`.

    Raises:
        RestfulSwarmError: The document cannot be converted; every problem is listed.
    """
    result = convert(doc)
    if result.errors or result.job is None:
        raise RestfulSwarmError(result.errors)
    return result.job, result.paths


# ------------------------------------------------------------------------------- requests

_MIGRATION_FIELDS = ("job", "container", "from", "to", "info")
_UPDATE_FIELDS = ("job", "node", "container_name", "cpuset_cpus", "mem_limit")
_CHECKPOINT_FIELDS = ("node", "containers")


@dataclass(frozen=True)
class MigrationRequest:
    """A RESTfulSwarm migration: move one container of a job to another node.

    Attributes:
        job: The Job's name.
        container: The task entry's name (RESTfulSwarm's ``container``, which the job
            conversion made the entry name).
        to_node: The node to move to (``to`` up to any ``@address``).
        from_node: Where the request says the task runs now (``from``), or None.
    """

    job: str
    container: str
    to_node: str
    from_node: str | None = None


@dataclass(frozen=True)
class UpdateRequest:
    """A RESTfulSwarm update: resize one container of a job in place.

    Attributes:
        job: The Job's name.
        container: The task entry's name (``container_name``).
        node: The node the request says the task runs on, or None.
        cpuset: The new cores in canonical form (``cpuset_cpus``), or None to keep them.
        memory: The new memory limit in bytes (``mem_limit``), or None to keep it.
    """

    job: str
    container: str
    node: str | None = None
    cpuset: str | None = None
    memory: int | None = None


@dataclass(frozen=True)
class CheckpointRequest:
    """One container of a RESTfulSwarm checkpoint request.

    Attributes:
        node: The node the container runs on (``node`` up to any ``@address``).
        container: The container: a task entry name, or a Task object's name.
        index: The container's index in ``containers`` (for messages).
    """

    node: str
    container: str
    index: int = 0


#: A request to act, converted from a RESTfulSwarm document.
Request = MigrationRequest | UpdateRequest | CheckpointRequest


@dataclass(frozen=True)
class RequestConversion:
    """The result of :func:`convert_request`.

    Attributes:
        kind: ``migration``, ``update`` or ``checkpoint``.
        requests: The requests (empty when there are errors); a checkpoint document gives one
            per container.
        errors: Problems found, as ``(field path in the document, message)``.
    """

    kind: str
    requests: list[Request]
    errors: list[tuple[Path, str]]


def document_kind(doc: Any) -> str | None:
    """Which RESTfulSwarm document a parsed document is, judged by its fields.

    Returns:
        ``job`` (``job_name`` and ``job_info``), ``update`` (``job`` and ``container_name``),
        ``migration`` (``job`` and ``container``), ``checkpoint`` (``node`` and
        ``containers``), or None: not a RESTfulSwarm document (anything with ``apiVersion``
        or ``kind`` is a v1 object).
    """
    if not isinstance(doc, dict) or "apiVersion" in doc or "kind" in doc:
        return None
    if is_restfulswarm(doc):
        return "job"
    if "job" in doc and "container_name" in doc:
        return "update"
    if "job" in doc and "container" in doc:
        return "migration"
    if "containers" in doc and "node" in doc:
        return "checkpoint"
    return None


def node_of(value: str) -> str:
    """The node name in a RESTfulSwarm host reference: ``host2@10.0.0.2`` -> ``host2``."""
    return value.partition("@")[0].strip()


class _Fields:
    """Reads the fields of one request document, collecting problems."""

    def __init__(self, doc: dict[str, Any], known: tuple[str, ...], what: str) -> None:
        self.doc = doc
        self.what = what
        self.errors: list[tuple[Path, str]] = []
        for key in doc:
            if key not in known:
                self.errors.append(
                    ((str(key),), f"unknown field of a RESTfulSwarm {what}; known fields: "
                     f"{', '.join(known)}")
                )  # fmt: skip

    def text(self, key: str, required: bool) -> str | None:
        value = self.doc.get(key)
        if value is None or value == "":
            if required:
                self.errors.append(((key,), f"required: a RESTfulSwarm {self.what} needs {key}"))
            return None
        if not isinstance(value, str):
            self.errors.append(((key,), f"expected a string, got {_show(value)}"))
            return None
        return value.strip()

    def name(self, key: str, required: bool, host: bool = False) -> str | None:
        value = self.text(key, required)
        if value is None:
            return None
        name = node_of(value) if host else value
        problem = names.dns1123_label_error(name)
        if problem is not None:
            shown = f" (the node name in {_show(value)})" if host and name != value else ""
            self.errors.append(((key,), f"{problem}{shown}"))
            return None
        return name


def _migration(doc: dict[str, Any]) -> tuple[list[Request], list[tuple[Path, str]]]:
    fields = _Fields(doc, _MIGRATION_FIELDS, "migration")
    job = fields.name("job", True)
    container = fields.name("container", True)
    from_node = fields.name("from", False, host=True)
    to_node = fields.name("to", True, host=True)
    info = doc.get("info")
    if info is not None and not isinstance(info, dict):
        fields.errors.append((("info",), f"expected the task's details as a mapping, got "
                              f"{_show(info)}"))  # fmt: skip
    if from_node is not None and from_node == to_node:
        fields.errors.append((("to",), f"the task would stay on node {to_node!r} (from is the "
                              "same node)"))  # fmt: skip
    if fields.errors or job is None or container is None or to_node is None:
        return [], fields.errors
    return [MigrationRequest(job, container, to_node, from_node)], []


def _update(doc: dict[str, Any]) -> tuple[list[Request], list[tuple[Path, str]]]:
    fields = _Fields(doc, _UPDATE_FIELDS, "update")
    job = fields.name("job", True)
    container = fields.name("container_name", True)
    node = fields.name("node", False, host=True)
    cpuset: str | None = None
    memory: int | None = None
    raw_cpuset = fields.text("cpuset_cpus", False)
    if raw_cpuset is not None:
        try:
            cpuset = format_cpuset(parse_cpuset(raw_cpuset))
        except QuantityError as exc:
            fields.errors.append((("cpuset_cpus",), str(exc)))
    raw_memory = doc.get("mem_limit")
    if raw_memory not in (None, ""):
        try:
            memory = parse_memory(raw_memory)
        except QuantityError as exc:
            fields.errors.append((("mem_limit",), str(exc)))
    if raw_cpuset is None and raw_memory in (None, "") and not fields.errors:
        fields.errors.append(((), "an update needs cpuset_cpus, mem_limit or both"))
    if fields.errors or job is None or container is None:
        return [], fields.errors
    return [UpdateRequest(job, container, node, cpuset, memory)], []


def _checkpoint(doc: dict[str, Any]) -> tuple[list[Request], list[tuple[Path, str]]]:
    fields = _Fields(doc, _CHECKPOINT_FIELDS, "checkpoint")
    node = fields.name("node", True, host=True)
    containers = doc.get("containers")
    found: list[tuple[int, str]] = []
    if not isinstance(containers, list) or not containers:
        fields.errors.append(
            (("containers",), f"expected a non-empty list of container names, got "
             f"{_show(containers)}")
        )  # fmt: skip
    else:
        seen: dict[str, int] = {}
        for i, container in enumerate(containers):
            if not isinstance(container, str) or not container.strip():
                fields.errors.append(
                    (("containers", i), f"expected a container name, got {_show(container)}")
                )
                continue
            container = container.strip()
            problem = names.dns1123_label_error(container)
            if problem is not None:
                fields.errors.append((("containers", i), problem))
            elif container in seen:
                fields.errors.append(
                    (("containers", i), f"{container!r} is listed twice (first at "
                     f"containers[{seen[container]}])")
                )  # fmt: skip
            else:
                seen[container] = i
                found.append((i, container))
    if fields.errors or node is None:
        return [], fields.errors
    return [CheckpointRequest(node, container, i) for i, container in found], []


def convert_request(doc: Any) -> RequestConversion:
    """Checks a RESTfulSwarm migration, update or checkpoint document field by field.

    Args:
        doc: A parsed document for which :func:`document_kind` says ``migration``,
            ``update`` or ``checkpoint``.

    Returns:
        The requests, or the problems by field path (never both).
    """
    kind = document_kind(doc)
    if not isinstance(doc, dict) or kind not in ("migration", "update", "checkpoint"):
        message = f"expected a RESTfulSwarm migration, update or checkpoint, got {_show(doc)}"
        return RequestConversion("unknown", [], [((), message)])
    convert_one = {"migration": _migration, "update": _update, "checkpoint": _checkpoint}[kind]
    requests, errors = convert_one(doc)
    return RequestConversion(kind, requests, errors)
