"""``swarmapply cordon``, ``uncordon``, ``drain`` and ``node remove``: taking a node out of use.

* ``cordon NODE`` / ``uncordon NODE`` set or clear the Node's ``spec.unschedulable`` with a
  compare-and-swap update (read, change, write; read again on a Conflict). The scheduler then
  places no new task there; tasks already on it stay.
* ``drain NODE`` cordons the node, then moves every live task bound to it elsewhere by creating
  one Migration per task (``spec.task``, no ``toNode``: the scheduler chooses), highest
  priority first, and follows them through the store's watch until each has finished or the
  timeout has passed. A task some Migration already moves is followed, not moved twice. It
  prints one line per task and a summary, and exits 0 only when no live task is left on the
  node.
* ``node remove NODE`` drains the node (unless ``--force``), removes it from the Swarm through
  the manager's Docker Engine, then deletes the Node object.

What it does not guarantee: the checks and the moves are separate writes, so a task bound to
the node after the list was read (a binding made just before the cordon was seen) is reported
as left at the end, not moved. Ending the wait (timeout, Ctrl-C) does not cancel the
Migrations already created. Removing a node does not stop its agent: a running agent registers
its Node again.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from swarmapply.api.store import Conflict, Gone, NotFound, Store
from swarmapply.cli.context import Context
from swarmapply.cli.migrate import (
    DEFAULT_TIMEOUT,
    DONE_PHASES,
    NotRunning,
    admitted,
    migration_object,
    running_node,
)
from swarmapply.cli.usage import seconds_type
from swarmapply.controllers.job_tasks import FINISHED, is_terminating, name_of
from swarmapply.controllers.lease import live_holder, node_lease_name
from swarmapply.errors import PermanentError, SwarmapplyError

log = logging.getLogger(__name__)

Object = dict[str, Any]

#: The annotation a Migration made by ``drain`` carries: the node drained.
DRAIN_ANNOTATION = "swarmapply.io/drained-node"

#: How many times a compare-and-swap update is tried before giving up.
CAS_ATTEMPTS = 10

EXAMPLES = """examples:
  swarmapply cordon n3                    no new tasks on n3 (running ones stay)
  swarmapply uncordon n3                  n3 takes new tasks again
  swarmapply drain n3                     cordon n3 and move its tasks elsewhere (cold)
  swarmapply drain n3 --mode auto --timeout 300
  swarmapply node remove n3               drain n3, remove it from the Swarm, delete the Node
  swarmapply node remove n3 --force --docker-host tcp://manager:2375

drain exits 0 when no live task is left on the node, 1 otherwise (with what could not move
and why). node remove refuses (exit 1) while live tasks remain, unless --force.
"""


class NodeNotFound(PermanentError):
    """The node named does not exist."""


def node_ref(name: str) -> str:
    """How the commands name a node in their output: ``node/NAME``."""
    return f"node/{name}"


# ------------------------------------------------------------------------ pure helpers


def task_priority(task: Mapping[str, Any]) -> int:
    """A task's priority (its job's, copied to ``spec.priority``); 0 when unset."""
    value = (task.get("spec") or {}).get("priority")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def live_on_node(tasks: Iterable[Object], node: str) -> list[Object]:
    """The live tasks bound to ``node`` (not finished, not being deleted), highest priority
    first, then by name (pure)."""
    live = [
        t
        for t in tasks
        if (t.get("status") or {}).get("node") == node
        and (t.get("status") or {}).get("phase") not in FINISHED
        and not is_terminating(t)
    ]
    return sorted(live, key=lambda t: (-task_priority(t), name_of(t)))


def migration_phase(migration: Mapping[str, Any]) -> str:
    """A Migration's phase (``Pending`` until the migrator writes one)."""
    return str((migration.get("status") or {}).get("phase") or "Pending")


def moving_migration(task: Mapping[str, Any], migrations: Iterable[Object]) -> str | None:
    """The name of an unfinished Migration that moves ``task``, if any (pure).

    A Migration moves a task when its ``spec.task`` names it, its ``status.tasks`` lists it,
    or it moves the task's whole job and has not listed its tasks yet; the migrator's step on
    the task (``status.migration``) counts too.
    """
    name = name_of(task)
    job = (task.get("spec") or {}).get("job")
    for migration in migrations:
        if migration_phase(migration) in DONE_PHASES:
            continue
        spec = migration.get("spec") or {}
        listed = (migration.get("status") or {}).get("tasks") or []
        moves = [m for m in listed if isinstance(m, dict)]
        if spec.get("task") == name or any(m.get("task") == name for m in moves):
            return name_of(migration)
        if spec.get("job") and spec.get("job") == job and not moves:
            return name_of(migration)
    step = (task.get("status") or {}).get("migration")
    if isinstance(step, dict) and step.get("name"):
        return str(step["name"])
    return None


def moved_to(migration: Mapping[str, Any], task: str) -> str | None:
    """The node a Migration moved ``task`` to, as its status says (pure)."""
    status = migration.get("status") or {}
    for move in status.get("tasks") or []:
        if isinstance(move, dict) and move.get("task") == task and move.get("targetNode"):
            return str(move["targetNode"])
    target = status.get("targetNode")
    return str(target) if target else None


def failure_text(migration: Mapping[str, Any]) -> str:
    """Why a Migration did not move its task: ``reason: message`` (pure)."""
    status = migration.get("status") or {}
    said = ": ".join(str(p) for p in (status.get("reason"), status.get("message")) if p)
    return said or f"Migration {name_of(migration)} {migration_phase(migration)}"


@dataclass
class Move:
    """One task of a drain and what became of it.

    Attributes:
        task: The Task's name.
        migration: The Migration that moves it (created by the drain or found), or None.
        created: Whether the drain created the Migration.
        target: The node it was moved to, once moved.
        problem: Why it was not moved, once known.
    """

    task: str
    migration: str | None = None
    created: bool = False
    target: str | None = None
    problem: str | None = None

    @property
    def done(self) -> bool:
        """Whether the outcome is known."""
        return self.target is not None or self.problem is not None

    def line(self) -> str:
        """The line the drain prints for the task."""
        if self.target is not None:
            return f"task {self.task}: moved to node {self.target}"
        return f"task {self.task}: not moved: {self.problem or 'still moving'}"


def settle(move: Move, migration: Mapping[str, Any]) -> None:
    """Records in ``move`` what a finished Migration says (nothing while it runs)."""
    phase = migration_phase(migration)
    if phase == "Succeeded":
        move.target = moved_to(migration, move.task) or "?"
    elif phase == "Failed":
        move.problem = failure_text(migration)


# ----------------------------------------------------------------------- store actions


def get_node(store: Store, name: str) -> Object:
    """The Node ``name``, or NodeNotFound naming it."""
    try:
        return store.get("Node", name)
    except NotFound:
        raise NodeNotFound(f'node "{name}" not found') from None


def set_unschedulable(store: Store, name: str, value: bool) -> bool:
    """Sets the Node's ``spec.unschedulable`` with compare-and-swap, retrying on Conflict.

    Returns:
        Whether the Node changed (False when it already had ``value``).

    Raises:
        NodeNotFound: No such Node.
        Conflict: Still conflicting after :data:`CAS_ATTEMPTS` tries.
    """
    last: Conflict | None = None
    for attempt in range(CAS_ATTEMPTS):
        node = get_node(store, name)
        spec = dict(node.get("spec") or {})
        if bool(spec.get("unschedulable")) == value:
            return False
        if value:
            spec["unschedulable"] = True
        else:
            spec.pop("unschedulable", None)
        try:
            store.update({**node, "spec": spec})
            return True
        except Conflict as exc:
            last = exc
            log.debug("node %s changed meanwhile (attempt %d); reading it again", name, attempt)
        except NotFound:
            raise NodeNotFound(f'node "{name}" not found') from None
    assert last is not None
    raise last


def cordon(ctx: Context, store: Store, name: str, value: bool = True) -> None:
    """Cordons (or uncordons) a node and prints what changed."""
    word = "cordoned" if value else "uncordoned"
    changed = set_unschedulable(store, name, value)
    ctx.out(f"{node_ref(name)} {word}" if changed else f"{node_ref(name)} already {word}")


def node_tasks(store: Store, node: str) -> list[Object]:
    """The live Tasks bound to ``node``, highest priority first."""
    return live_on_node(store.list("Task", field_selector=f"status.node={node}").items, node)


def start_moves(ctx: Context, store: Store, node: str, mode: str) -> list[Move]:
    """Creates one Migration per live task on ``node`` (or finds the one moving it)."""
    migrations = store.list("Migration").items
    moves: list[Move] = []
    for task in node_tasks(store, node):
        move = Move(name_of(task))
        moves.append(move)
        existing = moving_migration(task, migrations)
        if existing:
            move.migration = existing
            ctx.out(f"task {move.task}: already moving (Migration {existing}); following it")
            continue
        try:
            running_node(task)
        except NotRunning as exc:
            move.problem = str(exc).replace(f'task "{move.task}" ', "", 1)
            continue
        obj = migration_object(task=move.task, mode=mode, annotations={DRAIN_ANNOTATION: node})
        try:
            created = store.create(admitted(obj, f"drain/{node}/{move.task}"))
        except SwarmapplyError as exc:
            move.problem = f"could not create its Migration: {exc}"
            continue
        move.migration, move.created = name_of(created), True
        ctx.out(f"task {move.task}: Migration {move.migration} created")
    return moves


def follow_moves(store: Store, moves: Sequence[Move], timeout: float) -> None:
    """Follows the Migrations of ``moves`` until each has finished or ``timeout`` passed.

    Reads them once, then follows the store's watch from that revision (listing again if the
    history was compacted); a Migration deleted meanwhile is a problem of its task.
    """
    by_name = {m.migration: m for m in moves if m.migration and not m.done}
    deadline = time.monotonic() + timeout

    def snapshot() -> int:
        listed = store.list("Migration")
        present = {name_of(m): m for m in listed.items}
        for name, move in by_name.items():
            if move.done:
                continue
            if name not in present:
                move.problem = f"Migration {name} was deleted"
            else:
                settle(move, present[name])
        return listed.revision

    revision = snapshot()
    while any(not m.done for m in by_name.values()):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            for event in store.watch("Migration", revision, timeout=remaining):
                revision = event.revision
                move = by_name.get(name_of(event.object))
                if move is not None and not move.done:
                    if event.type == "DELETED":
                        move.problem = f"Migration {move.migration} was deleted"
                    else:
                        settle(move, event.object)
                if all(m.done for m in by_name.values()) or time.monotonic() > deadline:
                    break
        except Gone:
            revision = snapshot()
    if any(not m.done for m in by_name.values()):
        current = {name_of(m): m for m in store.list("Migration").items}
        for name, move in by_name.items():
            if not move.done:
                phase = migration_phase(current[name]) if name in current else "gone"
                move.problem = f"Migration {name} still {phase} after {timeout:g}s (it carries on)"


def drain(ctx: Context, store: Store, node: str, mode: str, timeout: float) -> bool:
    """Cordons ``node`` and moves its live tasks away, printing each outcome and a summary.

    Returns:
        True when no live task is left on the node.
    """
    cordon(ctx, store, node)
    moves = start_moves(ctx, store, node, mode)
    follow_moves(store, moves, timeout)
    for move in moves:
        ctx.out(move.line())
    left = node_tasks(store, node)
    moved = sum(1 for m in moves if m.target is not None)
    if not left:
        ctx.out(f"{node_ref(node)} drained: {moved} of {len(moves)} tasks moved, none left")
        return True
    problems = {m.task: m.problem for m in moves}
    ctx.err(
        f"error: {node_ref(node)} not drained: {moved} of {len(moves)} tasks moved, "
        f"{len(left)} left on the node:"
    )
    for task in left:
        name = name_of(task)
        ctx.err(f"  {name}: {problems.get(name) or 'bound to the node after the drain began'}")
    return False


# ------------------------------------------------------------------ the Swarm manager


class SwarmUnreachable(SwarmapplyError):
    """The Swarm manager's engine could not be reached or refused the removal."""


class SwarmManager(Protocol):
    """The one call ``node remove`` makes on the Swarm manager's engine."""

    def remove_node(self, node_id: str) -> bool:
        """Removes a node from the Swarm (forcibly, even when it is up).

        Returns:
            False when the Swarm has no such node (already removed).

        Raises:
            SwarmUnreachable: The engine could not be reached or refused (the message says
                which and why).
        """
        ...


class DockerSwarmManager:
    """:class:`SwarmManager` through docker-py, opened as the deployer opens its engine."""

    def __init__(self, docker_host: str | None) -> None:
        """Args: docker_host: The manager engine's URL; None for ``$DOCKER_HOST``."""
        self.docker_host = docker_host

    def remove_node(self, node_id: str) -> bool:
        """See :meth:`SwarmManager.remove_node`."""
        import docker.errors

        from swarmapply.controllers.swarm import DockerEngine

        engine = DockerEngine(self.docker_host)
        where = self.docker_host or "$DOCKER_HOST (or the default socket)"
        try:
            engine.client.nodes.get(node_id).remove(force=True)
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as exc:
            raise SwarmUnreachable(
                f"the Swarm manager at {where} refused: {exc.explanation or exc}"
            ) from exc
        except Exception as exc:  # transport errors of every layer, EngineUnavailable
            raise SwarmUnreachable(f"cannot reach the Swarm manager at {where}: {exc}") from exc
        finally:
            engine.close()
        return True


#: Makes the manager client ``node remove`` uses (tests replace it).
open_manager: Callable[[str | None], SwarmManager] = DockerSwarmManager


def lease_alive(lease: Mapping[str, Any], now: datetime | None = None) -> bool:
    """Whether a Lease's holder looks alive: a holder that renewed within the lease duration
    (by the wall clock, so clocks far apart mislead it) (pure but for the default ``now``)."""
    return live_holder(dict(lease), now or datetime.now(timezone.utc)) is not None


def remove_node(
    ctx: Context,
    store: Store,
    name: str,
    *,
    force: bool,
    mode: str,
    timeout: float,
    docker_host: str | None,
) -> int:
    """Drains (unless ``force``), removes from the Swarm and deletes a node; the exit code."""
    node = get_node(store, name)
    if not force:
        if not drain(ctx, store, name, mode, timeout):
            ctx.err(f"error: {node_ref(name)} not removed: live tasks remain (--force removes it)")
            return 1
    else:
        left = node_tasks(store, name)
        if left:
            names = ", ".join(name_of(t) for t in left)
            ctx.err(f"warning: removing {node_ref(name)} with {len(left)} live tasks: {names}")
    swarm_id = (node.get("status") or {}).get("swarmNodeID")
    if not swarm_id:
        ctx.out(f"{node_ref(name)} has no Swarm node id: nothing to remove from the Swarm")
    else:
        try:
            removed = open_manager(docker_host).remove_node(str(swarm_id))
        except SwarmUnreachable as exc:
            if not force:
                ctx.err(f"error: {exc}")
                ctx.err(f"error: {node_ref(name)} not deleted (--force deletes the Node anyway)")
                return 1
            ctx.err(f"warning: {exc}; deleting the Node anyway (--force)")
        else:
            said = "removed from the Swarm" if removed else "was not in the Swarm (any more)"
            ctx.out(f"swarm node {swarm_id} {said}")
    try:
        store.delete("Node", name)
    except NotFound:
        ctx.out(f"{node_ref(name)} was already deleted")
    else:
        ctx.out(f"{node_ref(name)} deleted")
    _heartbeat_lease(ctx, store, name)
    return 0


def _heartbeat_lease(ctx: Context, store: Store, node: str) -> None:
    """Deletes the node's heartbeat Lease if its agent is gone; warns if it still runs."""
    lease_name = node_lease_name(node)
    try:
        lease = store.get("Lease", lease_name)
    except NotFound:
        return
    if lease_alive(lease):
        holder = (lease.get("spec") or {}).get("holderIdentity")
        ctx.err(
            f"warning: the agent of {node_ref(node)} still heartbeats (Lease {lease_name}, "
            f"held by {holder}): stop it, or it registers the Node again"
        )
        return
    try:
        store.delete("Lease", lease_name)
    except NotFound:
        return
    ctx.out(f"lease/{lease_name} deleted")


# --------------------------------------------------------------------------- commands


def _add_drain_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        choices=("cold", "auto"),
        default="cold",
        help="how tasks move: cold (stop, start elsewhere; default) or auto (live if possible)",
    )
    parser.add_argument(
        "--timeout",
        type=seconds_type(positive=True),
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"stop waiting for the moves after this many seconds (default {DEFAULT_TIMEOUT:g})",
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds ``cordon``, ``uncordon``, ``drain`` and ``node`` to the command parsers."""
    for word, value, what in (
        ("cordon", True, "mark a node unschedulable: no new tasks are placed on it"),
        ("uncordon", False, "mark a node schedulable again"),
    ):
        parser = commands.add_parser(
            word, help=what, description=what[0].upper() + what[1:] + ".", epilog=EXAMPLES, **kw
        )
        parser.add_argument("node", help="the Node's name")
        parser.set_defaults(handler=run_cordon, unschedulable=value)
    parser = commands.add_parser(
        "drain",
        help="cordon a node and move its tasks to other nodes",
        description="Cordon a node, then move every live task on it elsewhere (one Migration\n"
        "per task, highest priority first; the scheduler picks the targets) and wait.",
        epilog=EXAMPLES,
        **kw,
    )
    parser.add_argument("node", help="the Node's name")
    _add_drain_options(parser)
    parser.set_defaults(handler=run_drain)
    parser = commands.add_parser(
        "node",
        help="node operations: remove",
        description="Node operations.",
        epilog=EXAMPLES,
        **kw,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    remove = actions.add_parser(
        "remove",
        help="drain a node, remove it from the Swarm and delete its Node",
        description="Drain a node (unless --force), remove it from the Swarm through the\n"
        "manager's Docker Engine, then delete the Node object.",
        epilog=EXAMPLES,
        **kw,
    )
    remove.add_argument("node", help="the Node's name")
    remove.add_argument(
        "--force",
        action="store_true",
        help="do not drain; remove even with live tasks or no reachable manager",
    )
    remove.add_argument(
        "--docker-host",
        metavar="URL",
        default=None,
        help="the Swarm manager's Docker Engine (default $DOCKER_HOST, else the local socket)",
    )
    _add_drain_options(remove)
    remove.set_defaults(handler=run_remove)


def run_cordon(args: argparse.Namespace, ctx: Context) -> int:
    """Runs ``cordon`` or ``uncordon``."""
    cordon(ctx, ctx.store(must_exist=True), args.node, args.unschedulable)
    return 0


def run_drain(args: argparse.Namespace, ctx: Context) -> int:
    """Runs ``drain``: 0 when the node is left without live tasks, else 1."""
    store = ctx.store(must_exist=True)
    get_node(store, args.node)
    return 0 if drain(ctx, store, args.node, args.mode, args.timeout) else 1


def run_remove(args: argparse.Namespace, ctx: Context) -> int:
    """Runs ``node remove``."""
    return remove_node(
        ctx,
        ctx.store(must_exist=True),
        args.node,
        force=args.force,
        mode=args.mode,
        timeout=args.timeout,
        docker_host=args.docker_host,
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Runs whichever of this module's commands was parsed."""
    handler: Callable[[argparse.Namespace, Context], int] = args.handler
    return handler(args, ctx)
