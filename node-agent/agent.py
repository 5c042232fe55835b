"""The node agent loop: registers Nodes, heartbeats, and makes each node's engine match its Tasks.

A :class:`NodeAgent` is the agent of one node: it registers the Node (capacity and engine facts
from its driver, condition ``Ready``), renews the Lease ``node-<name>`` every ``heartbeat``
seconds (and the Node's ``status.heartbeatTime`` as often), and reconciles: the Tasks bound to
the node and the containers its driver sees go through :func:`~swarmapply.agent.plan.plan_node`,
the plan is applied through the driver and the changed Task statuses are written with
compare-and-swap. An :class:`~swarmapply.agent.group.AgentGroup` runs any number of
NodeAgents in one loop (a single node is a group of one): one store watch on Tasks, one Task
list per round partitioned by ``status.node``, and only the nodes that changed or are due for
their periodic resync are planned, so a thousand hollow (sim) nodes cost little when idle.

What triggers a round for a node: a change to a Task bound to it (or that was bound to it),
the driver reporting a container change (one event thread per driver; one for all the nodes of
a :class:`~swarmapply.agent.sim.SimCluster`), its resync period, and the retry of a failed
round. Engine errors (:class:`~swarmapply.agent.driver.EngineUnavailable`,
:class:`~swarmapply.agent.driver.NetworkNotReady`) end the node's round and it is retried with
exponential backoff; an unavailable engine also turns the Node's ``Ready`` condition False
(reason ``EngineUnavailable``) until the engine answers again. A task the driver refuses
(:class:`~swarmapply.agent.driver.TaskRefused`) fails with the driver's reason, and so does a
task asking for host settings the ClusterPolicies do not allow (read once per round by the
group; see :mod:`swarmapply.agent.policy`).

Guarantees: restart-safe (containers are adopted by their task uid label; a restarted agent
never starts a second container for a task); status writes are compare-and-swap, and a write
that conflicts is planned again in the next round; only the agent's own status fields of its
Nodes are written (never ``allocated``). Events are recorded on a Task when it starts, fails or
is refused, not on every round.

One agent per node: the node's Lease says which. An agent takes it when it is free, released
or expired (judged on its own monotonic clock, ``heartbeat`` x 4 seconds after it last saw the
Lease change) and otherwise stands by, writing and running nothing, so a second agent started
for a node that another runs (by mistake, or a second ``swarmapply up``) does no harm and
takes over when that one stops. A clean stop releases the Lease; after a SIGKILL the next
agent waits for the Lease to expire before it runs the node (its containers keep running).

Migrations and checkpoints: before planning, a round carries out the migration steps
(``status.migration``) that are the node's to act on and the Checkpoint objects of the node's
running Tasks (the group lists unfinished Checkpoints once per round), through
:mod:`swarmapply.agent.steps`; checkpoints go below ``checkpoint_dir``.

Not done here: marking nodes NotReady on missed heartbeats (the node lifecycle controller),
restarting failed tasks (the job controller), creating networks (the deployer), joining the
Swarm (``swarmapply agent --join``, through :mod:`swarmapply.agent.join`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tenacity import wait_exponential

from swarmapply.agent.driver import Driver, EngineUnavailable, NetworkNotReady, TaskRefused
from swarmapply.agent.model import NodeInfo, Observed
from swarmapply.agent.plan import FAILED, RUNNING, RUNTIME_FIELDS, plan_node
from swarmapply.agent.policy import NO_POLICY, Policy
from swarmapply.agent.registration import new_node, reported_status, with_status
from swarmapply.agent.sim import SimDriver
from swarmapply.agent.step_rules import START, actionable, step_failed
from swarmapply.agent.steps import run_checkpoints, run_steps
from swarmapply.api.store import AlreadyExists, Conflict, NotFound, Store
from swarmapply.api.store.lifecycle import now_rfc3339
from swarmapply.controllers.events import record_event
from swarmapply.controllers.lease import (
    Observation,
    acquired_lease,
    default_identity,
    is_free,
    lease_duration_seconds,
    lease_record,
    node_lease_name,
    observe,
    released_lease,
    renewed_lease,
    timestamp_now,
)
from swarmapply.controllers.workqueue import strategy_delay

log = logging.getLogger(__name__)

Object = dict[str, Any]

COMPONENT = "node-agent"
#: A node's heartbeat Lease expires after this many heartbeat periods without a renewal.
LEASE_PERIODS = 4
#: Where checkpoints go unless the agent is told otherwise.
DEFAULT_CHECKPOINT_DIR = "/var/lib/swarmapply/checkpoints"
#: Seconds the stopped container of a finished task is kept for its logs.
DEFAULT_FINISHED_AGE = 3600.0
#: Reasons of a Failed task that mean it never ran because it was refused.
REFUSED_REASONS = frozenset({"RefusedSetting", "InvalidSpec"})
_WRITE_ATTEMPTS = 5


#: The name of a node's heartbeat Lease (``node-<name>``; the node lifecycle reads it too).
lease_name = node_lease_name


class NodeAgent:
    """The agent of one node (run it alone with :meth:`run`, or many in an :class:`AgentGroup`).

    Args:
        store: The store.
        driver: The node's container driver.
        driver_name: ``docker`` or ``sim`` (reported as the Node's ``status.driver``).
        name: The node's name; default: the driver's (a sim node's name, else the name the
            driver reports in ``info()``, for Docker the engine's hostname).
        heartbeat: Seconds between Lease renewals and Node heartbeat writes.
        resync: Seconds between full reconciliations when nothing changes.
        identity: The Lease holder identity; default ``<hostname>-<pid>-<random>``.
        clock: Seconds on a monotonic clock (timers only; times written are wall clock).
        backoff_max: The longest wait, in seconds, before retrying a failed round.
        checkpoint_dir: The directory checkpoints are written below (migrations in
            ``<dir>/<migration>/<task>``, Checkpoint objects in ``<dir>/<checkpoint>``).
        finished_age: Seconds the stopped container of a finished task is kept (for its logs)
            after the task finished; None keeps it as long as the Task exists.
    """

    def __init__(
        self,
        store: Store,
        driver: Driver,
        *,
        driver_name: str,
        name: str | None = None,
        heartbeat: float = 10.0,
        resync: float = 30.0,
        identity: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        backoff_max: float = 10.0,
        checkpoint_dir: str = DEFAULT_CHECKPOINT_DIR,
        finished_age: float | None = DEFAULT_FINISHED_AGE,
    ) -> None:
        if driver_name not in ("docker", "sim"):
            raise ValueError(f"driver_name: expected docker or sim, got {driver_name!r}")
        if heartbeat <= 0 or resync <= 0:
            raise ValueError("heartbeat and resync must be positive numbers of seconds")
        self.store = store
        self.driver = driver
        self.driver_name = driver_name
        self.name: str | None = name
        if self.name is None and isinstance(driver, SimDriver):
            self.name = driver.name
        self.heartbeat = heartbeat
        self.resync = resync
        self.identity = identity or default_identity()
        self.clock = clock
        self.checkpoint_dir = checkpoint_dir
        self.finished_age = finished_age
        self.starts = 0
        self.removes = 0
        self.updates = 0
        self.rounds = 0
        self._backoff = wait_exponential(multiplier=0.05, max=backoff_max)
        self._info: NodeInfo | None = None
        self._engine_error: str | None = None
        self._node: Object | None = None
        self._lease: Object | None = None
        self._holds = False
        self._standing_by = ""
        self._seen: Observation | None = None
        self._next_report = 0.0
        self._next_heartbeat = 0.0
        self._next_resync = 0.0
        self._failures = 0
        self._info_failures = 0
        self._retry_at = 0.0
        self._written: dict[str, str] = {}  # task name -> resourceVersion of our last write
        self._written_lock = threading.Lock()

    # -- timers ------------------------------------------------------------------------------

    @property
    def registered(self) -> bool:
        """Whether the Node has been written at least once by this agent."""
        return self._node is not None

    @property
    def engine_error(self) -> str | None:
        """Why the engine is unusable now, or None when it answered last time."""
        return self._engine_error

    def next_due(self) -> float:
        """The clock time at which this agent next has something to do unprompted."""
        if self.name is None:
            return self._next_report
        if not self._holds:
            return min(self._next_report, self._next_heartbeat)
        wake = self._retry_at if self._failures else self._next_resync
        return min(self._next_report, self._next_heartbeat, wake)

    def in_backoff(self, now: float) -> bool:
        """Whether a failed round is still waiting for its retry time."""
        return self._failures > 0 and now < self._retry_at

    def resync_due(self, now: float) -> bool:
        """Whether a full reconciliation is due (period passed, or a failed round to retry)."""
        return now >= (self._retry_at if self._failures else self._next_resync)

    def own_write(self, task: str, resource_version: str) -> bool:
        """Whether a watched Task change is this agent's own last status write (consumed)."""
        with self._written_lock:
            if self._written.get(task) == resource_version:
                del self._written[task]
                return True
            return False

    # -- registration and heartbeat ------------------------------------------------------------

    def report(self, *, force: bool = False) -> None:
        """Hold the node's Lease and heartbeat it, then register or update the Node, when due.

        While another live agent holds the Lease this one stands by: it writes nothing and
        runs nothing, and checks again every heartbeat.

        Raises:
            StoreError: The store failed (the caller logs and retries).
        """
        now = self.clock()
        if not (force or now >= self._next_report or now >= self._next_heartbeat):
            return
        heartbeat_due = force or now >= self._next_heartbeat
        if heartbeat_due or self._info is None:
            self._refresh_info()
        if self.name is None:  # the engine has not told us the node's name yet
            self._next_report = now + min(self.heartbeat, self._delay(self._info_failures))
            return
        self._next_report = now + self.heartbeat
        try:
            if heartbeat_due:
                self._hold_lease()
                self._next_heartbeat = now + self.heartbeat
            if self._holds:
                self._write_node(heartbeat=heartbeat_due)
        except Exception:
            retry = now + min(self.heartbeat, 1.0)  # the store failed: try again soon
            self._next_report = retry
            self._next_heartbeat = max(self._next_heartbeat, retry)
            raise

    def _refresh_info(self) -> None:
        try:
            info = self.driver.info()
        except EngineUnavailable as exc:
            self._info_failures += 1
            self._set_engine_error(str(exc))
            return
        self._info_failures = 0
        if self.name is None:
            self.name = info.name
        self._info = info
        self._set_engine_error(None)

    def _set_engine_error(self, error: str | None) -> None:
        if error == self._engine_error:
            return
        if error is None:
            log.info("node %s: the engine answers again", self.name or "?")
        else:
            log.warning("node %s: engine unavailable: %s", self.name or "?", error)
        self._engine_error = error
        self._next_report = 0.0  # report the change at once

    def _write_node(self, *, heartbeat: bool) -> None:
        assert self.name is not None
        for _ in range(_WRITE_ATTEMPTS):
            node = self._node
            if node is None:
                node = self._get_or_create_node()
            old = node.get("status") or {}
            status = reported_status(
                old,
                self._info,
                driver=self.driver_name,
                engine_error=self._engine_error,
                now=now_rfc3339(),
                heartbeat=now_rfc3339() if heartbeat else None,
            )
            if status == old:
                self._node = node
                return
            try:
                self._node = self.store.update_status(with_status(node, status))
                if "heartbeatTime" not in old:
                    log.info("node %s: registered (%s driver)", self.name, self.driver_name)
                return
            except Conflict:
                self._node = None  # the scheduler wrote its allocation meanwhile: read again
            except NotFound:
                self._node = None
        raise Conflict("Node", self.name, "", "changing too fast")

    def _get_or_create_node(self) -> Object:
        assert self.name is not None
        try:
            return self.store.get("Node", self.name)
        except NotFound:
            pass
        try:
            return self.store.create(new_node(self.name, self._info))
        except AlreadyExists:
            return self.store.get("Node", self.name)

    def _hold_lease(self) -> None:
        """Renew the node's Lease, take it when free or expired, or stand by (compare-and-swap).

        Expiry is judged on this process's monotonic clock from when the Lease was last seen
        to change, never by comparing another machine's timestamps (as in leader election).
        """
        assert self.name is not None
        name = lease_name(self.name)
        duration = lease_duration_seconds(self.heartbeat * LEASE_PERIODS)
        for _ in range(_WRITE_ATTEMPTS):
            current = self._lease if self._holds else None
            if current is None:
                try:
                    current = self.store.get("Lease", name)
                except NotFound:
                    lease = acquired_lease(None, name, self.identity, duration, timestamp_now())
                    try:
                        self._lease = self.store.create(lease)
                    except AlreadyExists:
                        continue
                    self._set_holds(True)
                    return
            now = self.clock()
            self._seen = observe(self._seen, current, now)
            record = lease_record(current)
            if not is_free(self._seen, self.identity, now):
                self._lease = None
                self._set_holds(False, record.holder)
                return
            if record.holder == self.identity and record.duration_seconds == duration:
                lease = renewed_lease(current, timestamp_now())
            else:
                lease = acquired_lease(current, name, self.identity, duration, timestamp_now())
            try:
                self._lease = self.store.update(lease)
            except (Conflict, NotFound):
                self._lease = None
                self._holds = False  # read it again: someone else may have taken it
                continue
            self._set_holds(True)
            return
        raise Conflict("Lease", name, "", "changing too fast")

    def _set_holds(self, holds: bool, holder: str = "") -> None:
        if holds and not self._holds:
            log.info("node %s: run by this agent (%s)", self.name, self.identity)
            self._next_resync = 0.0  # compare everything at once
        elif not holds and holder != self._standing_by:
            log.warning(
                "node %s: another agent (%s) runs it; this one stands by until that agent's "
                "Lease is released or expires",
                self.name, holder,
            )  # fmt: skip
        self._holds = holds
        self._standing_by = "" if holds else holder

    @property
    def holds_node(self) -> bool:
        """Whether this agent holds its node's Lease (only then it writes and runs anything)."""
        return self._holds

    def release(self) -> None:
        """Give the node's Lease up (on a clean stop), so another agent takes over at once."""
        lease, self._holds, self._lease = self._lease, False, None
        if lease is None:
            return
        name = lease["metadata"]["name"]
        try:
            self.store.update(released_lease(lease, timestamp_now()))
            log.info("lease %s: released by %s", name, self.identity)
        except (NotFound, Conflict) as exc:  # gone, or taken over meanwhile: not ours
            log.info("lease %s: not released: %s", name, exc)
        except Exception:
            log.exception("lease %s: could not be released", name)

    # -- reconciliation ----------------------------------------------------------------------

    def reconcile(
        self,
        tasks: Sequence[Object],
        policy: Policy = NO_POLICY,
        checkpoints: Sequence[Object] = (),
    ) -> bool:
        """One round for this node: migration steps and checkpoints, then plan against the
        driver, apply, write changed statuses.

        Args:
            tasks: The Tasks bound to this node, as read from the store.
            policy: What the ClusterPolicies allow (tasks asking for more are refused).
            checkpoints: Unfinished Checkpoint objects (those of other nodes' tasks are
                skipped).

        Returns:
            True when the round completed; False when it stopped on an engine error (it is
            retried after a backoff delay).
        """
        assert self.name is not None
        self.rounds += 1
        now = self.clock()
        try:
            observed = self.driver.containers()
        except EngineUnavailable as exc:
            self._set_engine_error(str(exc))
            self.round_failed(exc)
            return False
        self._set_engine_error(None)
        try:
            tasks, observed, restored = run_steps(self, tasks, observed, policy)
            if checkpoints:
                tasks, observed = run_checkpoints(self, checkpoints, tasks, observed)
        except (EngineUnavailable, NetworkNotReady) as exc:
            if isinstance(exc, EngineUnavailable):
                self._set_engine_error(str(exc))
            self.round_failed(exc)
            return False
        stamp = now_rfc3339()
        plan = plan_node(
            self.name, tasks, observed, now=stamp, policy=policy, fresh=restored,
            finished_age=self.finished_age,
        )  # fmt: skip
        seen = {o.container_id: o for o in observed}
        refused: dict[str, tuple[str, str]] = {}
        fresh = set(restored)
        error: Exception | None = None
        if plan.has_actions:
            try:
                self._apply(plan.remove, plan.update, plan.start, seen, refused, fresh)
            except (EngineUnavailable, NetworkNotReady) as exc:
                error = exc
                if isinstance(exc, EngineUnavailable):
                    self._set_engine_error(str(exc))
            statuses = self._replan(tasks, list(seen.values()), refused, stamp, policy, fresh)
        else:
            statuses = plan.statuses
        self._write_statuses(tasks, statuses)
        if error is not None:
            self.round_failed(error)
            return False
        self._failures = 0
        self._next_resync = now + self.resync
        return True

    def _apply(
        self,
        remove: Iterable[tuple[str, str]],
        update: Iterable[tuple[str, str, int]],
        start: Iterable[Any],
        seen: dict[str, Observed],
        refused: dict[str, tuple[str, str]],
        fresh: set[str],
    ) -> None:
        for container_id, why in remove:
            self.driver.remove(container_id)
            self.removes += 1
            gone = seen.pop(container_id, None)
            task = gone.task if gone is not None else "?"
            log.info("node %s: removed container %s of task %s: %s", self.name, container_id,
                     task, why)  # fmt: skip
        for container_id, cpuset, memory in update:
            try:
                self.driver.update(container_id, cpuset, memory)
            except TaskRefused as exc:
                log.warning("node %s: container %s: resize to cores %s refused: %s",
                            self.name, container_id, cpuset, exc)  # fmt: skip
                continue
            self.updates += 1
            if container_id in seen:
                seen[container_id] = dataclasses.replace(
                    seen[container_id], cpuset=cpuset, memory=memory
                )
            log.info("node %s: resized container %s to cores %s", self.name, container_id, cpuset)
        for spec in start:
            try:
                container = self.driver.start(spec)
            except TaskRefused as exc:
                refused[spec.task] = (exc.reason, str(exc))
                continue
            self.starts += 1
            seen[container.container_id] = container
            fresh.add(container.container_id)
            log.info("node %s: started task %s (container %s, cores %s)", self.name, spec.task,
                     container.container_id, spec.cpuset)  # fmt: skip

    def _replan(
        self,
        tasks: Sequence[Object],
        observed: list[Observed],
        refused: Mapping[str, tuple[str, str]],
        stamp: str,
        policy: Policy,
        fresh: set[str],
    ) -> dict[str, Object]:
        """The statuses after the actions: planned again on what the driver now runs.

        A refused start fails its task, except during a migration's Start step: then the
        refusal is the step's ``reason``/``message`` and the phase stays as it is.
        """
        assert self.name is not None
        marked: list[Object] = []
        statuses: dict[str, Object] = {}
        for task in tasks:
            name = str(task["metadata"]["name"])
            if name in refused:
                reason, message = refused[name]
                if (step := actionable(task, self.name)) is not None and step.step == START:
                    status = step_failed(task.get("status") or {}, reason, message)
                    statuses[name] = status
                    marked.append({**task, "status": status})
                    log.warning("node %s: task %s: start for migration %s refused: %s",
                                self.name, name, step.migration, message)  # fmt: skip
                    continue
                status = {
                    k: v for k, v in (task.get("status") or {}).items() if k not in RUNTIME_FIELDS
                }
                # Drivers name the task in their messages already; do not say it twice.
                said = message if message.startswith(f"task {name}:") else f"task {name}: {message}"
                status.update(phase=FAILED, reason=reason, message=said)
                statuses[name] = status
                task = {**task, "status": status}
            marked.append(task)
        again = plan_node(
            self.name, marked, observed, now=stamp, policy=policy, fresh=frozenset(fresh),
            finished_age=self.finished_age,
        )  # fmt: skip
        return {**again.statuses, **statuses}

    def _write_statuses(self, tasks: Sequence[Object], statuses: Mapping[str, Object]) -> None:
        by_name = {str(t["metadata"]["name"]): t for t in tasks}
        for name, status in statuses.items():
            task = by_name[name]
            try:
                written = self.store.update_status({**task, "status": status})
            except Conflict:
                self._report_conflict(name)
                continue
            except NotFound:
                continue  # deleted meanwhile: its container goes in the next round
            self.remember_write(written)
            self._on_transition(written, task.get("status") or {}, status)

    def remember_write(self, task: Object) -> None:
        """Note a Task status this agent wrote, so its watch event does not trigger a round."""
        with self._written_lock:
            name = str(task["metadata"]["name"])
            self._written[name] = str(task["metadata"].get("resourceVersion", ""))

    def replan_soon(self) -> None:
        """Plan everything again in the next round (a write conflicted)."""
        self._next_resync = 0.0

    def _report_conflict(self, task: str) -> None:
        log.debug("node %s: task %s changed while its status was written", self.name, task)
        self.replan_soon()

    def _on_transition(self, task: Object, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        name = task["metadata"]["name"]
        phase, before = new.get("phase"), old.get("phase")
        if phase == before:
            return
        if phase == RUNNING:
            message = (
                f"container {new.get('containerID')} started on node {self.name}, "
                f"cores {new.get('cpuset')}"
            )
            self._event(task, "Started", message, "Normal")
        elif phase == FAILED:
            reason = str(new.get("reason") or "Error")
            message = f"{reason}: {new.get('message') or ''}".rstrip(": ")
            log.warning("node %s: task %s failed: %s", self.name, name, message)
            refused = reason in REFUSED_REASONS  # never run: it asked for what it may not have
            self._event(task, "Refused" if refused else "Failed", message, "Warning")
        elif phase is not None:
            log.info("node %s: task %s %s", self.name, name, phase)

    def _event(self, task: Object, reason: str, message: str, type_: str) -> None:
        self.event(task, reason, message, type_)

    def event(self, obj: Object, reason: str, message: str, type_: str = "Normal") -> None:
        """Record an Event about ``obj`` (a Task, a Checkpoint) from this agent."""
        record_event(self.store, obj, reason, message, component=COMPONENT, type_=type_)

    def round_failed(self, exc: BaseException) -> None:
        """Note a failed round: it is retried after an exponential backoff delay."""
        self._failures += 1
        delay = self._delay(self._failures)
        self._retry_at = self.clock() + delay
        log.warning("node %s: round stopped: %s; retrying in %.2fs", self.name, exc, delay)

    def _delay(self, failures: int) -> float:
        return strategy_delay(self._backoff, max(1, failures))


__all__ = ["COMPONENT", "DEFAULT_CHECKPOINT_DIR", "LEASE_PERIODS", "NodeAgent", "lease_name"]
