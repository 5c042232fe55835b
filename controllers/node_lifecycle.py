"""The node lifecycle controller: lost nodes go NotReady, and their tasks are given up.

Each reconcile of a Node reads it and its heartbeat Lease ``node-<name>``, asks
:func:`~.node_health.decide` what to do (the rules are in :mod:`.node_health`) and does it:

1. a node whose Lease went stale gets ``Ready`` False, reason ``NodeLost`` (compare-and-swap on
   the Node's status; a Warning Event ``NodeNotReady``). The scheduler places nothing on a node
   that is not Ready;
2. once a node has not been Ready for ``eviction_timeout`` seconds, each live Task bound to it
   is failed with reason ``NodeLost`` (compare-and-swap on each Task's status; a Warning Event
   ``NodeLost`` on it and one ``TasksEvicted`` on the Node). The job controller then replaces
   them according to their Job's restart policy, and the scheduler places the replacements on
   Ready nodes.

Nodes are reconciled when they or their Lease change (a watch on both), every
``check_period`` seconds, and when a grace period or an eviction timeout is due (the key is
requeued for then). Every step is derived from the store plus what this process has seen of
the Leases, so a controller killed at any point converges when it runs again: it waits one
grace period before it calls a node lost (it has to see the Lease not change), then carries
on where the store says it was.

What is not guaranteed: a task evicted from a node whose agent is only cut off from the store
keeps running there until the agent reaches the store again (it then removes the container of
a finished or deleted task), so for that while a replacement may run at the same time; the
eviction timeout is the price of waiting for a node to come back. Nothing here brings a node
back: the agent reports ``Ready`` True itself when it heartbeats again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from swarmapply.api.store import Conflict, NotFound, Store
from swarmapply.controllers.events import record_event
from swarmapply.controllers.lease import NODE_LEASE_PREFIX, node_lease_name
from swarmapply.controllers.node_health import (
    NODE_LOST,
    NodeLifecycleSettings,
    Sighting,
    decide,
    evictable,
    lost_status,
    rfc3339,
    sight,
)
from swarmapply.controllers.runtime import Controller, SecondaryKind
from swarmapply.controllers.settings import ControllerSettings
from swarmapply.errors import TemporaryError

log = logging.getLogger(__name__)

Object = dict[str, Any]

#: The controller's name (as ``swarmapply controllers`` knows it).
NAME = "nodes"
#: The component named in the Events it records.
COMPONENT = "node-lifecycle"
#: Seconds added to a requeue delay, so that the deadline has passed when the key is looked at.
SLACK = 0.05


class NodeChanged(TemporaryError):
    """A Node or Task changed between the controller's read and its write; look again."""


def lease_keys(lease: Object) -> list[str]:
    """The Node a heartbeat Lease belongs to (a key mapper for the Lease watch)."""
    name = str((lease.get("metadata") or {}).get("name") or "")
    node = name.removeprefix(NODE_LEASE_PREFIX)
    return [node] if name.startswith(NODE_LEASE_PREFIX) and node else []


class NodeLifecycle:
    """Reconciles Nodes against their heartbeat Leases (see the module docstring).

    Args:
        store: The store.
        settings: Grace period, eviction timeout and check period.
        clock: Seconds since the epoch (a Lease's age is measured on it, and a ``Ready``
            condition's ``lastTransitionTime`` compared with it).
    """

    def __init__(
        self,
        store: Store,
        settings: NodeLifecycleSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings or NodeLifecycleSettings()
        self.clock = clock
        self.requeue: Callable[[str, float], None] | None = None
        self._sightings: dict[str, Sighting] = {}
        self._lock = threading.Lock()

    def reconcile(self, key: str) -> None:
        """Judge Node ``key`` and act (idempotent, level-triggered).

        Raises:
            NodeChanged: The Node or one of its Tasks changed while it was written.
        """
        try:
            node = self.store.get("Node", key)
        except NotFound:
            with self._lock:
                self._sightings.pop(key, None)
            return
        lease = self._lease(key)
        now = self.clock()
        with self._lock:
            sighting = sight(self._sightings.get(key), lease, now)
            self._sightings[key] = sighting
        decision = decide(
            node, sighting, now, self.settings, stamp=rfc3339(now), lease=node_lease_name(key)
        )
        if decision.conditions is not None:
            status = {**(node.get("status") or {}), "conditions": decision.conditions}
            try:
                node = self.store.update_status({**node, "status": status})
            except NotFound:
                return
            except Conflict as exc:
                raise NodeChanged(f"Node {key} changed while it was marked NotReady") from exc
        if decision.event is not None:
            reason, message = decision.event
            log.warning("node %s: NotReady: %s", key, message)
            record_event(self.store, node, reason, message, component=COMPONENT, type_="Warning")
        if decision.evict:
            self._evict(key, sighting)
        if decision.recheck is not None and self.requeue is not None:
            self.requeue(key, decision.recheck + SLACK)

    def _lease(self, node: str) -> Object | None:
        try:
            return self.store.get("Lease", node_lease_name(node))
        except NotFound:
            return None

    def _evict(self, name: str, sighting: Sighting) -> None:
        """Fail the live tasks bound to ``name``, after checking again that it is not Ready."""
        try:
            node = self.store.get("Node", name)
        except NotFound:
            return
        now = self.clock()
        again = decide(
            node, sighting, now, self.settings, stamp=rfc3339(now), lease=node_lease_name(name)
        )
        if not again.evict or again.not_ready is None:
            return  # it is Ready again, or a newer state says wait
        tasks = self.store.list("Task", field_selector=f"status.node={name}").items
        stamp = rfc3339(now)
        evicted: list[str] = []
        changed: list[str] = []
        for task in evictable(tasks, name):
            task_name = str(task["metadata"]["name"])
            status = lost_status(task, name, again.not_ready, stamp)
            try:
                written = self.store.update_status({**task, "status": status})
            except NotFound:
                continue
            except Conflict:
                changed.append(task_name)
                continue
            evicted.append(task_name)
            log.warning("node %s: task %s failed: %s", name, task_name, status["message"])
            record_event(self.store, written, NODE_LOST, str(status["message"]),
                         component=COMPONENT, type_="Warning")  # fmt: skip
        if evicted:
            since = again.not_ready.get("lastTransitionTime")
            message = (
                f"node {name} has not been Ready since {since}: failed its tasks "
                f"{', '.join(evicted)} (reason {NODE_LOST}) so that their jobs replace them"
            )
            record_event(self.store, node, "TasksEvicted", message, component=COMPONENT,
                         type_="Warning")  # fmt: skip
        if changed:
            raise NodeChanged(
                f"node {name}: tasks {', '.join(changed)} changed while they were failed; "
                "looking again"
            )


def lifecycle_settings(settings: ControllerSettings) -> NodeLifecycleSettings:
    """The node lifecycle settings carried by ``settings`` (``node_lifecycle``), or defaults."""
    found = getattr(settings, "node_lifecycle", None)
    return found if isinstance(found, NodeLifecycleSettings) else NodeLifecycleSettings()


def build(
    store: Store,
    settings: ControllerSettings,
    *,
    lifecycle: NodeLifecycleSettings | None = None,
    clock: Callable[[], float] = time.time,
) -> Controller:
    """The node lifecycle controller as ``swarmapply controllers`` runs it.

    Args:
        store: The store.
        settings: Worker count (the resync period is the lifecycle's ``check_period``).
        lifecycle: Grace period, eviction timeout and check period; default: the
            ``node_lifecycle`` field of ``settings`` when it has one, else the defaults.
        clock: Seconds since the epoch (for tests).
    """
    chosen = lifecycle if lifecycle is not None else lifecycle_settings(settings)
    reconciler = NodeLifecycle(store, chosen, clock=clock)
    controller = Controller(
        NAME,
        store,
        "Node",
        reconciler.reconcile,
        secondaries=[SecondaryKind("Lease", lease_keys)],
        workers=settings.workers,
        resync=chosen.check_period,
    )
    reconciler.requeue = controller.queue.add_after
    return controller


__all__ = [
    "COMPONENT",
    "NAME",
    "NodeChanged",
    "NodeLifecycle",
    "NodeLifecycleSettings",
    "build",
    "lease_keys",
    "lifecycle_settings",
]
