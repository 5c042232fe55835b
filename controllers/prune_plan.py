"""What the pruner removes, and why (pure): store objects, engine containers/networks, a time.

:func:`plan_prune` takes what the store and the manager's Docker Engine hold at one moment and
returns a :class:`PrunePlan`: one :class:`Removal` per object with a reason a person can read,
plus the revision up to which the store's change log may be compacted. It does no I/O; the
pruner (:mod:`.pruner`) and ``swarmapply prune`` read the inputs and carry the plan out.

The rules (each one only ever removes garbage; what is still wanted survives):

* **Jobs** past ``spec.ttlSecondsAfterFinished`` (counted from ``status.completionTime``) are
  deleted; the store cascades to their Tasks. The job controller does the same; whichever
  comes first deletes it, the other finds it gone.
* **Containers** are recognised only by the label ``swarmapply.io/managed-by=swarmapply`` and
  a task uid label; anything else on the engine is never touched.

  - an exited (or never started) container of a finished Task is removed once the Task's
    ``status.finishTime`` is ``finished_age`` seconds old (until then its logs stay readable);
  - an *orphan*, whose task uid matches no Task, is removed, running or not, provided its
    node label names a Node of this store (a container of another cluster sharing the engine
    is left alone); the Tasks of a Job expiring in the same pass count as gone;
  - a container of a Task that is not finished, a container still running, and a container
    of a Task being deleted (its agent removes it) are never touched.
* **Networks**: only those carrying the deployer's labels (``managed-by`` and
  ``swarmapply.io/job``). One is removed when no live user is left: no unfinished Job wants a
  network of that name (``spec.network.name``, default the Job's name) and no unfinished Task
  names it in ``spec.network`` or belongs to a Job that wants it. A network whose Job is gone
  is removed only once it is ``network_age`` seconds old, because its Job may be one of
  another cluster sharing the engine. The engine itself refuses to remove a network with
  running containers attached.
* **Events** whose ``lastTimestamp`` (else ``firstTimestamp``, else creation) is
  ``event_age`` seconds old.
* **Checkpoints** whose ``spec.task`` names no Task (their files stay on the node).
* **Compaction**: the change log up to ``revision - history_revisions`` (watchers that fall
  further behind re-list, as after any compaction).

Not guaranteed: the inputs are read one after the other, not as of one instant. The reader
must list engine objects *before* store objects, so that anything the engine shows was made
for a Task or Job the store lists, unless it is really gone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from swarmapply.agent.model import JOB_NAME, MANAGED_BY, MANAGER, NODE_NAME, TASK_OBJECT, TASK_UID
from swarmapply.api.store.lifecycle import parse_time
from swarmapply.controllers.job_status import ttl_remaining
from swarmapply.controllers.job_tasks import FINISHED

Object = Mapping[str, Any]

#: Container states in which a container holds cores or may come back: never pruned as a
#: finished task's container.
ACTIVE_STATES = frozenset({"running", "restarting", "paused", "removing"})

#: The kinds of removals, in the order a pass carries them out.
KINDS = ("Job", "container", "network", "Checkpoint", "Event")


@dataclass(frozen=True)
class PrunerSettings:
    """When the pruner runs and what it counts as old.

    Attributes:
        interval: Seconds between two passes of the controller.
        finished_age: Seconds after a Task finished before its exited container is removed
            (its logs stay readable until then).
        event_age: Seconds after an Event last happened before it is deleted.
        network_age: Seconds a network whose Job is gone must have existed before it is
            removed (see the module docstring).
        history_revisions: Revisions of change history kept when the store is compacted; 0
            to not compact.
        engine: Prune containers and networks on the manager's engine (False: store only).
    """

    interval: float = 60.0
    finished_age: float = 3600.0
    event_age: float = 3600.0
    network_age: float = 3600.0
    history_revisions: int = 10000
    engine: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval) and self.interval > 0):
            raise ValueError("interval: expected seconds > 0")
        for name in ("finished_age", "event_age", "network_age"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: expected seconds >= 0")
        if self.history_revisions < 0:
            raise ValueError("history_revisions: expected a number of revisions >= 0")


@dataclass(frozen=True)
class ContainerInfo:
    """A container on the engine, as the pruner sees it.

    Attributes:
        id: The engine's id.
        name: Its name (without the leading ``/``).
        state: Docker's state: ``created``, ``running``, ``exited``, ``dead``...
        labels: Its labels.
    """

    id: str
    name: str
    state: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkEntry:
    """A network on the engine, as the pruner sees it.

    Attributes:
        id: The engine's id.
        name: Its name.
        labels: Its labels.
        created: When it was created, if the engine said.
    """

    id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    created: datetime | None = None


@dataclass(frozen=True)
class Removal:
    """One object to remove.

    Attributes:
        kind: One of :data:`KINDS` (engine objects in lower case, store kinds as named).
        name: The object's name (for a container: its short id and name).
        reason: Why, for a person (``task hello-a Succeeded 2h ago``).
        id: The engine id (containers, networks), or the store name.
        resource_version: The store object's resourceVersion as read (deleted only if
            unchanged); None for engine objects.
        after_job: The Job whose deletion (in the same pass) makes this garbage: skip this
            removal if that deletion fails.
    """

    kind: str
    name: str
    reason: str
    id: str = ""
    resource_version: str | None = None
    after_job: str | None = None

    def line(self, *, dry_run: bool = False) -> str:
        """``removed container 3f2a1b9c0d12 hello-a-12ab34cd (task hello-a ...)``."""
        verb = "would remove" if dry_run else "removed"
        return f"{verb} {self.kind} {self.name} ({self.reason})"


@dataclass(frozen=True)
class PrunePlan:
    """Everything one pass removes, and the compaction it makes.

    Attributes:
        jobs: Jobs past their TTL.
        containers: Containers of finished tasks, and orphans.
        networks: Job networks no live task uses.
        checkpoints: Checkpoints of tasks that are gone.
        events: Old Events.
        compact_to: Compact the change log up to this revision; None for no compaction.
    """

    jobs: tuple[Removal, ...] = ()
    containers: tuple[Removal, ...] = ()
    networks: tuple[Removal, ...] = ()
    checkpoints: tuple[Removal, ...] = ()
    events: tuple[Removal, ...] = ()
    compact_to: int | None = None

    @property
    def removals(self) -> tuple[Removal, ...]:
        """Every removal, in the order they are carried out (Jobs first)."""
        return self.jobs + self.containers + self.networks + self.checkpoints + self.events

    @property
    def empty(self) -> bool:
        """True when the plan removes nothing (compaction aside)."""
        return not self.removals


# --- small helpers --------------------------------------------------------------------------


def format_age(seconds: float) -> str:
    """A duration for people, in its largest whole unit: ``45s``, ``12m``, ``2h``, ``3d``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _meta(obj: Object) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _name(obj: Object) -> str:
    return str(_meta(obj).get("name", ""))


def _version(obj: Object) -> str | None:
    version = _meta(obj).get("resourceVersion")
    return str(version) if version is not None else None


def _phase(obj: Object) -> str | None:
    phase = (obj.get("status") or {}).get("phase")
    return str(phase) if phase is not None else None


def _terminating(obj: Object) -> bool:
    return bool(_meta(obj).get("deletionTimestamp"))


def job_network_name(job: Object) -> str:
    """The network a Job's tasks join: ``spec.network.name``, default the Job's name."""
    network = (job.get("spec") or {}).get("network") or {}
    return str(network.get("name") or _name(job))


def is_ours(labels: Mapping[str, str]) -> bool:
    """Whether engine labels say swarmapply made the object."""
    return labels.get(MANAGED_BY) == MANAGER


def short_id(engine_id: str) -> str:
    """The first 12 characters of an engine id, as ``docker ps`` shows it."""
    return engine_id[:12]


# --- the rules ------------------------------------------------------------------------------


def expired_jobs(jobs: Iterable[Object], now: datetime) -> list[Removal]:
    """Finished Jobs past ``spec.ttlSecondsAfterFinished`` (not those being deleted)."""
    removals = []
    for job in jobs:
        if _terminating(job):
            continue
        remaining = ttl_remaining(job, now)
        if remaining is None or remaining > 0:
            continue
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        completed = parse_time((job.get("status") or {}).get("completionTime"))
        ago = format_age((now - completed).total_seconds()) if completed else "?"
        removals.append(
            Removal(
                "Job",
                _name(job),
                f"{_phase(job)} {ago} ago, past ttlSecondsAfterFinished={ttl}",
                id=_name(job),
                resource_version=_version(job),
            )
        )
    return removals


def _owner_job(task: Object, expiring: Mapping[str, str]) -> str | None:
    """The expiring Job (by uid) that owns ``task`` when every Job owner of it expires."""
    refs = [r for r in _meta(task).get("ownerReferences") or [] if r.get("kind") == "Job"]
    if not refs or not all(str(r.get("uid")) in expiring for r in refs):
        return None
    return expiring[str(refs[0].get("uid"))]


def container_removals(
    containers: Iterable[ContainerInfo],
    tasks: Sequence[Object],
    nodes: Iterable[str],
    now: datetime,
    finished_age: float,
    expiring: Mapping[str, str] | None = None,
) -> list[Removal]:
    """Containers of finished tasks past ``finished_age``, and orphans (see module docstring).

    Args:
        containers: The containers on the engine (any; only ours are considered).
        tasks: Every Task in the store.
        nodes: The names of the Nodes in the store.
        now: The current time.
        finished_age: Seconds after a Task finished before its container goes.
        expiring: uid -> name of Jobs deleted in this pass; their Tasks count as gone.
    """
    expiring = expiring or {}
    known_nodes = set(nodes)
    by_uid = {str(_meta(t).get("uid")): t for t in tasks if _meta(t).get("uid")}
    removals = []
    for container in containers:
        labels = container.labels
        uid = labels.get(TASK_UID)
        if not is_ours(labels) or not uid:
            continue
        label = f"{short_id(container.id)} {container.name}".rstrip()
        task = by_uid.get(uid)
        if task is not None:
            job = _owner_job(task, expiring)
            if job is not None:
                if container.state not in ACTIVE_STATES:
                    removals.append(
                        Removal(
                            "container",
                            label,
                            f"task {_name(task)}: its Job {job} expires in this pass",
                            id=container.id,
                            after_job=job,
                        )
                    )
                continue
            removal = _finished_container(container, label, task, now, finished_age)
            if removal is not None:
                removals.append(removal)
            continue
        node = labels.get(NODE_NAME)
        if node not in known_nodes:
            continue  # not a node of this cluster: maybe another cluster's container
        task_name = labels.get(TASK_OBJECT) or "?"
        removals.append(
            Removal(
                "container",
                label,
                f"orphan: no Task has uid {uid} (task {task_name} on node {node}); "
                f"it was {container.state}",
                id=container.id,
            )
        )
    return removals


def _finished_container(
    container: ContainerInfo, label: str, task: Object, now: datetime, finished_age: float
) -> Removal | None:
    phase = _phase(task)
    if phase not in FINISHED or _terminating(task) or container.state in ACTIVE_STATES:
        return None
    finished = parse_time((task.get("status") or {}).get("finishTime"))
    if finished is None:
        return None  # finished without a time: cannot tell its age; left for its Job's TTL
    age = (now - finished).total_seconds()
    if age < finished_age:
        return None
    return Removal(
        "container",
        label,
        f"task {_name(task)} {phase} {format_age(age)} ago",
        id=container.id,
    )


def network_removals(
    networks: Iterable[NetworkEntry],
    jobs: Sequence[Object],
    tasks: Sequence[Object],
    now: datetime,
    network_age: float,
    expiring: Mapping[str, str] | None = None,
) -> list[Removal]:
    """Job networks no live Job or Task uses (see the module docstring).

    Args:
        networks: The networks on the engine (any; only the deployer's are considered).
        jobs: Every Job in the store.
        tasks: Every Task in the store.
        now: The current time.
        network_age: Seconds a network of a Job that is gone must have existed.
        expiring: uid -> name of Jobs deleted in this pass.
    """
    expiring = expiring or {}
    expiring_names = set(expiring.values())
    jobs_by_name = {_name(j): j for j in jobs}
    wanted: set[str] = set()
    for job in jobs:
        if _phase(job) not in FINISHED and not _terminating(job):
            wanted.add(job_network_name(job))
    for task in tasks:
        if _phase(task) in FINISHED:
            continue
        spec = task.get("spec") or {}
        if spec.get("network"):
            wanted.add(str(spec["network"]))
        owner = jobs_by_name.get(str(spec.get("job", "")))
        wanted.add(job_network_name(owner) if owner is not None else str(spec.get("job", "")))
    removals = []
    for network in networks:
        job_name = network.labels.get(JOB_NAME)
        if not is_ours(network.labels) or not job_name or network.name in wanted:
            continue
        named = jobs_by_name.get(job_name)
        if job_name in expiring_names:
            reason, after = f"job {job_name} expires in this pass", job_name
        elif named is not None:
            state = "being deleted" if _terminating(named) else (_phase(named) or "new")
            reason, after = f"job {job_name} is {state} and no live task uses it", None
        else:
            if network.created is None:
                continue
            age = (now - network.created).total_seconds()
            if age < network_age:
                continue
            reason, after = f"job {job_name} is gone; created {format_age(age)} ago", None
        removals.append(Removal("network", network.name, reason, id=network.id, after_job=after))
    return removals


def event_removals(events: Iterable[Object], now: datetime, event_age: float) -> list[Removal]:
    """Events that last happened ``event_age`` seconds ago or earlier."""
    removals = []
    for event in events:
        when = (
            parse_time(event.get("lastTimestamp"))
            or parse_time(event.get("firstTimestamp"))
            or parse_time(_meta(event).get("creationTimestamp"))
        )
        if when is None:
            continue
        age = (now - when).total_seconds()
        if age < event_age:
            continue
        involved = event.get("involvedObject") or {}
        about = f"{involved.get('kind', '?')} {involved.get('name', '?')}"
        removals.append(
            Removal(
                "Event",
                _name(event),
                f"{event.get('reason', '?')} on {about}, last {format_age(age)} ago",
                id=_name(event),
                resource_version=_version(event),
            )
        )
    return removals


def checkpoint_removals(
    checkpoints: Iterable[Object],
    tasks: Sequence[Object],
    expiring: Mapping[str, str] | None = None,
) -> list[Removal]:
    """Checkpoints whose ``spec.task`` names no Task (or one deleted in this pass)."""
    expiring = expiring or {}
    names = {_name(t): t for t in tasks}
    removals = []
    for checkpoint in checkpoints:
        task_name = str((checkpoint.get("spec") or {}).get("task", ""))
        task = names.get(task_name)
        after = _owner_job(task, expiring) if task is not None else None
        if task is not None and after is None:
            continue
        reason = (
            f"its task {task_name} is gone"
            if after is None
            else f"its task {task_name} goes with Job {after}"
        )
        removals.append(
            Removal(
                "Checkpoint",
                _name(checkpoint),
                reason,
                id=_name(checkpoint),
                resource_version=_version(checkpoint),
                after_job=after,
            )
        )
    return removals


def compaction_target(revision: int | None, history_revisions: int) -> int | None:
    """The revision to compact up to, keeping ``history_revisions``; None for none."""
    if revision is None or history_revisions <= 0:
        return None
    target = revision - history_revisions
    return target if target > 0 else None


def plan_prune(
    *,
    jobs: Sequence[Object],
    tasks: Sequence[Object],
    nodes: Sequence[Object] = (),
    events: Sequence[Object] = (),
    checkpoints: Sequence[Object] = (),
    containers: Sequence[ContainerInfo] | None = None,
    networks: Sequence[NetworkEntry] | None = None,
    now: datetime,
    settings: PrunerSettings,
    revision: int | None = None,
) -> PrunePlan:
    """Everything one pass removes (pure; see the module docstring for the rules).

    Args:
        jobs: Every Job in the store.
        tasks: Every Task in the store.
        nodes: Every Node in the store.
        events: Every Event in the store.
        checkpoints: Every Checkpoint in the store.
        containers: The engine's containers, or None when the engine is not pruned.
        networks: The engine's networks, or None when the engine is not pruned.
        now: The current time (timezone-aware).
        settings: The ages and the history to keep.
        revision: The store's current revision, for compaction; None for no compaction.
    """
    job_removals = expired_jobs(jobs, now)
    by_name = {_name(j): j for j in jobs}
    expiring = {
        str(_meta(by_name[r.name]).get("uid")): r.name
        for r in job_removals
        if _meta(by_name[r.name]).get("uid")
    }
    node_names = [_name(n) for n in nodes]
    return PrunePlan(
        jobs=tuple(job_removals),
        containers=tuple(
            container_removals(
                containers or (), tasks, node_names, now, settings.finished_age, expiring
            )
        ),
        networks=tuple(
            network_removals(networks or (), jobs, tasks, now, settings.network_age, expiring)
        ),
        checkpoints=tuple(checkpoint_removals(checkpoints, tasks, expiring)),
        events=tuple(event_removals(events, now, settings.event_age)),
        compact_to=compaction_target(revision, settings.history_revisions),
    )


__all__ = [
    "ACTIVE_STATES",
    "KINDS",
    "ContainerInfo",
    "NetworkEntry",
    "PrunePlan",
    "PrunerSettings",
    "Removal",
    "checkpoint_removals",
    "compaction_target",
    "container_removals",
    "event_removals",
    "expired_jobs",
    "format_age",
    "is_ours",
    "job_network_name",
    "network_removals",
    "plan_prune",
    "short_id",
]
