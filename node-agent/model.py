"""What the node agent wants from its engine and what it sees there, as frozen data (pure).

A bound Task becomes a :class:`ContainerSpec` (:func:`container_spec`): everything a driver
needs to create the container, including the labels by which the agent finds its containers
again after a restart. A driver reports each container it manages as an :class:`Observed`.
Nothing here talks to an engine or the store; drivers (:mod:`.driver`) and the agent loop do.

Labels on every managed container (the agent adopts containers by them, never by name):
``swarmapply.io/managed-by=swarmapply``, ``swarmapply.io/task-uid``,
``swarmapply.io/task-object`` (the Task object's name), ``swarmapply.io/task`` (the task's name
within its job, as on the Task), ``swarmapply.io/job`` and ``swarmapply.io/node``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from swarmapply.agent.policy import canonical_capability

MANAGED_BY = "swarmapply.io/managed-by"
MANAGER = "swarmapply"
TASK_UID = "swarmapply.io/task-uid"
TASK_OBJECT = "swarmapply.io/task-object"
TASK_NAME = "swarmapply.io/task"  # the task's name within its job, as on Task objects
JOB_NAME = "swarmapply.io/job"
NODE_NAME = "swarmapply.io/node"

#: Container states a driver reports (Docker's, plus ``missing`` for an image/engine failure
#: before a container existed).
STATES = ("created", "running", "paused", "restarting", "exited", "dead", "missing")

_SLEEP = re.compile(r"^(?:/bin/)?sleep\s+([0-9]+(?:\.[0-9]+)?)$")


@dataclass(frozen=True)
class PortSpec:
    """A container port published on the node (``host_port`` None: the engine picks one)."""

    container_port: int
    host_port: int | None = None
    protocol: str = "tcp"


@dataclass(frozen=True)
class VolumeSpec:
    """A host path or named volume mounted at ``target``."""

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    """One task's container, as the agent asks a driver to run it.

    Attributes:
        task: The Task object's name (also the container's name on the engine).
        task_uid: The Task's uid: the identity of this incarnation of the task.
        job: The Job's name.
        node: The node the task is bound to.
        alias: The name other tasks of the job reach it by on the job network (the task's
            name within the job).
        image: The image reference.
        command: The command, or None for the image's default.
        cpuset: The bound cores, canonical (``0-3,6``).
        memory: The memory limit in bytes.
        network: The job network to join, or None.
        ports: Published ports.
        volumes: Mounts.
        environment: Environment variables, sorted by name.
        duration: Seconds a simulated task runs before it succeeds (None: forever).
        privileged: Run the container privileged.
        capabilities: Capabilities to add (canonical names, ``ALL`` for every one).
        host_network: Use the node's network namespace (no job network, no published ports).
        host_pid: Use the node's pid namespace.
    """

    task: str
    task_uid: str
    job: str
    node: str
    alias: str
    image: str
    command: tuple[str, ...] | None
    cpuset: str
    memory: int
    network: str | None = None
    ports: tuple[PortSpec, ...] = ()
    volumes: tuple[VolumeSpec, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    duration: float | None = None
    privileged: bool = False
    capabilities: tuple[str, ...] = ()
    host_network: bool = False
    host_pid: bool = False

    @property
    def labels(self) -> dict[str, str]:
        """The labels the container carries (see the module docstring)."""
        return {
            MANAGED_BY: MANAGER,
            TASK_UID: self.task_uid,
            TASK_OBJECT: self.task,
            TASK_NAME: self.alias,
            JOB_NAME: self.job,
            NODE_NAME: self.node,
        }


@dataclass(frozen=True)
class Observed:
    """A managed container as the engine shows it.

    Attributes:
        container_id: The engine's id.
        task: The Task name from its labels.
        task_uid: The Task uid from its labels.
        state: One of :data:`STATES`.
        cpuset: The cores it is pinned to now (canonical), as the engine reports.
        memory: Its memory limit now, in bytes.
        exit_code: The exit code once it stopped.
        oom_killed: True when the engine killed it for exceeding its memory limit.
        error: Why a container could not be created or started, as ``"Reason: message"``
            with a CamelCase reason (``ImagePullFailed: pull access denied for x``); the
            planner makes the reason the task's (``EngineError`` when there is none).
        started_at: RFC 3339 time it last started.
        finished_at: RFC 3339 time it last stopped.
        labels: All its labels.
    """

    container_id: str
    task: str
    task_uid: str
    state: str
    cpuset: str = ""
    memory: int = 0
    exit_code: int | None = None
    oom_killed: bool = False
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeInfo:
    """What a driver reports about its node when the agent registers it.

    Attributes:
        name: The node's name (default: the engine's hostname).
        core_ids: The ids of the cores tasks may be pinned to (reserved ones removed).
        memory: The memory in bytes.
        address: The address others reach the node at, if known.
        engine_version: The container engine's version.
        swarm_node_id: The node's id in Docker Swarm, if it is in one.
        role: ``manager`` or ``worker`` in the Swarm, if it is in one.
        swarm_state: The engine's Swarm membership state (``active``, ``inactive``...).
    """

    name: str
    core_ids: tuple[int, ...]
    memory: int
    address: str | None = None
    engine_version: str | None = None
    swarm_node_id: str | None = None
    role: str | None = None
    swarm_state: str | None = None


def simulated_duration(spec: Mapping[str, Any]) -> float | None:
    """How long a sim node runs a task: ``spec.simulation.duration``, else the N of ``sleep N``.

    Returns None (forever) when neither is given.
    """
    duration = (spec.get("simulation") or {}).get("duration")
    if duration is not None:
        return float(duration)
    command = spec.get("command")
    text = " ".join(command) if isinstance(command, list) else command
    match = _SLEEP.match(text.strip()) if isinstance(text, str) else None
    return float(match.group(1)) if match else None


def container_spec(task: Mapping[str, Any]) -> ContainerSpec:
    """The container a bound Task asks for.

    Raises:
        ValueError: The task is not bound (no ``status.node``/``status.cpuset``) or has no
            uid; the message names the task.
    """
    meta = task.get("metadata") or {}
    spec = task.get("spec") or {}
    status = task.get("status") or {}
    name = str(meta.get("name", "?"))
    if not meta.get("uid"):
        raise ValueError(f"task {name}: has no metadata.uid (it was not read from the store)")
    if not status.get("node") or not status.get("cpuset"):
        raise ValueError(f"task {name}: is not bound (status.node and status.cpuset)")
    command = spec.get("command")
    context = spec.get("securityContext") or {}
    return ContainerSpec(
        task=name,
        task_uid=str(meta["uid"]),
        job=str(spec.get("job", "")),
        node=str(status["node"]),
        alias=str((meta.get("labels") or {}).get(TASK_NAME) or name),
        image=str(spec["image"]),
        command=tuple(str(a) for a in command) if isinstance(command, list) else None,
        cpuset=str(status["cpuset"]),
        memory=int(status.get("memory", spec.get("memory", 0))),
        network=spec.get("network"),
        ports=tuple(
            PortSpec(int(p["containerPort"]), p.get("hostPort"), p.get("protocol", "tcp"))
            for p in spec.get("ports") or []
        ),
        volumes=tuple(
            VolumeSpec(str(v["source"]), str(v["target"]), bool(v.get("readOnly", False)))
            for v in spec.get("volumes") or []
        ),
        environment=tuple(
            sorted((str(k), str(v)) for k, v in (spec.get("environment") or {}).items())
        ),
        duration=simulated_duration(spec),
        privileged=bool(context.get("privileged", False)),
        capabilities=tuple(
            canonical_capability(str(c))
            for c in (context.get("capabilities") or {}).get("add") or []
        ),
        host_network=bool(context.get("hostNetwork", False)),
        host_pid=bool(context.get("hostPID", False)),
    )


__all__ = [
    "JOB_NAME",
    "MANAGED_BY",
    "MANAGER",
    "NODE_NAME",
    "STATES",
    "TASK_NAME",
    "TASK_OBJECT",
    "TASK_UID",
    "ContainerSpec",
    "NodeInfo",
    "Observed",
    "PortSpec",
    "VolumeSpec",
    "container_spec",
    "simulated_duration",
]
