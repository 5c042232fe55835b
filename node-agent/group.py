"""Many node agents in one loop: one store watch, one Task list per round, shared event threads.

See :mod:`swarmapply.agent.agent` for what each :class:`~swarmapply.agent.agent.NodeAgent`
does in its round; this module decides when rounds happen. A single node is a group of one.

Besides Tasks it watches Checkpoint objects (a new one asks for a round on the node its task
is bound to) and lists the unfinished ones once per round, with the ClusterPolicies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from tenacity import wait_exponential

from swarmapply.agent.agent import NodeAgent
from swarmapply.agent.policy import cluster_policy
from swarmapply.agent.sim import SimCluster, SimDriver
from swarmapply.agent.steps import CHECKPOINT_FINISHED
from swarmapply.api.store import Gone, Store
from swarmapply.controllers.workqueue import strategy_delay

log = logging.getLogger(__name__)

#: A round reconciling at most this many nodes lists their Tasks one node at a time (field
#: selector); more nodes share one list of all Tasks.
PER_NODE_LISTS = 4

Object = dict[str, Any]


class AgentGroup:
    """Runs many :class:`NodeAgent` in one loop (see the module docstring).

    Args:
        store: The store (shared by every agent).
        agents: The agents; their node names must be distinct.
        watch_timeout: Seconds after which an idle store watch restarts (to notice stop).
    """

    def __init__(
        self, store: Store, agents: Sequence[NodeAgent], *, watch_timeout: float = 1.0
    ) -> None:
        self.store = store
        self.agents = list(agents)
        self.watch_timeout = watch_timeout
        self.clock = self.agents[0].clock if self.agents else time.monotonic
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._dirty: set[str] = set()
        self._where: dict[str, str] = {}  # Task name -> our node it is bound to
        self._uid_node: dict[str, str] = {}  # Task uid -> our node
        self._by_name: dict[str, NodeAgent] = {}
        self._index()

    def _index(self) -> None:
        for agent in self.agents:
            if agent.name is not None and agent.name not in self._by_name:
                self._by_name[agent.name] = agent

    def agent(self, name: str) -> NodeAgent:
        """The agent of node ``name``.

        Raises:
            KeyError: No agent of this group has that node.
        """
        return self._by_name[name]

    @property
    def starts(self) -> int:
        """Containers started by all the agents so far."""
        return sum(a.starts for a in self.agents)

    def mark(self, node: str) -> None:
        """Ask for a round on ``node`` soon (thread-safe)."""
        with self._lock:
            self._dirty.add(node)
        self._wake.set()

    # -- one round ---------------------------------------------------------------------------

    def run_once(self) -> int:
        """Report (register/heartbeat) what is due, then reconcile dirty and due nodes.

        Returns:
            How many nodes were reconciled.
        """
        for agent in self.agents:
            try:
                agent.report()
            except Exception:
                log.exception("node %s: could not report the node", agent.name or "?")
        self._index()
        now = self.clock()
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        names: list[str] = []
        for name, agent in self._by_name.items():
            if not agent.holds_node:
                continue  # another agent runs it; a full resync follows when this one takes over
            wanted = name in dirty or agent.resync_due(now)
            if wanted and agent.in_backoff(now):
                with self._lock:
                    self._dirty.add(name)
            elif wanted:
                names.append(name)
        if not names:
            return 0
        try:
            partition = self._tasks(names)
            policy = cluster_policy(self.store.list("ClusterPolicy").items)
            checkpoints = [
                c
                for c in self.store.list("Checkpoint").items
                if (c.get("status") or {}).get("phase") not in CHECKPOINT_FINISHED
            ]
        except Exception:
            log.exception("agent: could not list tasks, policies and checkpoints; retrying")
            with self._lock:
                self._dirty.update(names)
            return 0
        for name in names:
            agent = self._by_name[name]
            try:
                tasks = partition.get(name, [])
                names_here = {t["metadata"]["name"] for t in tasks}
                mine = [c for c in checkpoints if (c.get("spec") or {}).get("task") in names_here]
                agent.reconcile(tasks, policy, mine)
            except Exception as exc:  # a store failure or a driver bug: logged, retried
                log.exception("node %s: round failed", name)
                agent.round_failed(exc)
        return len(names)

    def _tasks(self, names: Sequence[str]) -> dict[str, list[Object]]:
        """The Tasks bound to each of ``names``, from one list (or a few selective ones)."""
        if len(names) <= PER_NODE_LISTS:
            items: list[Object] = []
            for name in names:
                items.extend(self.store.list("Task", field_selector=f"status.node={name}").items)
        else:
            items = self.store.list("Task").items
        partition: dict[str, list[Object]] = {}
        with self._lock:
            for task in items:
                node = (task.get("status") or {}).get("node")
                if node in self._by_name:
                    partition.setdefault(node, []).append(task)
                    self._where[task["metadata"]["name"]] = node
                    uid = task["metadata"].get("uid")
                    if uid:
                        self._uid_node[uid] = node
        return partition

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run every agent until ``stop`` is set; returns after the helper threads ended and
        the node Leases were released."""
        threads = [
            threading.Thread(target=self._watch, args=(stop,), name="agent-watch", daemon=True),
            threading.Thread(
                target=self._watch,
                args=(stop, "Checkpoint"),
                name="agent-watch-checkpoints",
                daemon=True,
            ),
        ]
        for label, source, node in self._event_sources():
            threads.append(
                threading.Thread(
                    target=self._driver_events,
                    args=(source, node, stop),
                    name=f"agent-events-{label}",
                    daemon=True,
                )
            )
        for thread in threads:
            thread.start()
        try:
            while not stop.is_set():
                self._wake.clear()
                self.run_once()
                now = self.clock()
                due = min((a.next_due() for a in self.agents), default=now + self.watch_timeout)
                timeout = max(0.0, min(due - now, self.watch_timeout))
                if timeout > 0:
                    self._wake.wait(timeout)
        finally:
            stop.set()
            for thread in threads:
                thread.join(self.watch_timeout + 2.0)
            for agent in self.agents:
                agent.release()

    def _event_sources(
        self,
    ) -> list[tuple[str, Callable[[threading.Event], Iterator[str]], NodeAgent | None]]:
        """One event stream per driver; one for all the sim nodes of each SimCluster."""
        sources: list[tuple[str, Callable[[threading.Event], Iterator[str]], NodeAgent | None]]
        sources = []
        clusters: dict[int, SimCluster] = {}
        for agent in self.agents:
            if isinstance(agent.driver, SimDriver):
                clusters.setdefault(id(agent.driver.cluster), agent.driver.cluster)
            else:
                sources.append((agent.name or "node", agent.driver.events, agent))
        for cluster in clusters.values():
            sources.append(("sim", cluster.events, None))
        return sources

    def _driver_events(
        self,
        source: Callable[[threading.Event], Iterator[str]],
        agent: NodeAgent | None,
        stop: threading.Event,
    ) -> None:
        failures = 0
        backoff = wait_exponential(multiplier=0.1, max=5.0)
        while not stop.is_set():
            try:
                for uid in source(stop):
                    with self._lock:
                        node = self._uid_node.get(uid)
                    if node is None and agent is not None:
                        node = agent.name
                    if node is not None:
                        self.mark(node)
                    failures = 0
                if not stop.is_set():
                    stop.wait(0.1)  # the stream ended by itself: open it again
            except Exception as exc:
                failures += 1
                delay = strategy_delay(backoff, failures)
                log.warning("agent: driver events failed: %s; again in %.2fs", exc, delay)
                stop.wait(delay)

    def _watch(self, stop: threading.Event, kind: str = "Task") -> None:
        since: int | None = None
        failures = 0
        backoff = wait_exponential(multiplier=0.05, max=5.0)
        while not stop.is_set():
            try:
                if since is None:
                    since = self.store.revision()
                    self._mark_all()
                for event in self.store.watch(kind, since, stop=stop, timeout=self.watch_timeout):
                    since = max(since, event.revision)
                    if kind == "Task":
                        self._on_task(event.type, event.object)
                    else:
                        self._on_checkpoint(event.type, event.object)
                failures = 0
            except Gone:
                since = None
            except Exception as exc:
                failures += 1
                since = None
                delay = strategy_delay(backoff, failures)
                log.warning("agent: %s watch failed: %s; again in %.2fs", kind, exc, delay)
                stop.wait(delay)

    def _mark_all(self) -> None:
        with self._lock:
            self._dirty.update(self._by_name)
        self._wake.set()

    def _on_checkpoint(self, type_: str, checkpoint: Mapping[str, Any]) -> None:
        """A new or changed unfinished Checkpoint: a round for its task's node, if ours."""
        if type_ == "DELETED":
            return
        if (checkpoint.get("status") or {}).get("phase") in CHECKPOINT_FINISHED:
            return
        task = str((checkpoint.get("spec") or {}).get("task", ""))
        with self._lock:
            node = self._where.get(task)
        if node is not None:
            self.mark(node)

    def _on_task(self, type_: str, task: Mapping[str, Any]) -> None:
        meta = task.get("metadata") or {}
        name = str(meta.get("name", ""))
        bound = (task.get("status") or {}).get("node")
        node = bound if isinstance(bound, str) and bound in self._by_name else None
        with self._lock:
            before = self._where.pop(name, None) if type_ == "DELETED" else self._where.get(name)
            if node is None and before is None:
                return
            if type_ != "DELETED" and node is not None:
                agent = self._by_name[node]
                if agent.own_write(name, str(meta.get("resourceVersion", ""))):
                    return
                self._where[name] = node
                if meta.get("uid"):
                    self._uid_node[str(meta["uid"])] = node
            elif type_ != "DELETED":
                self._where.pop(name, None)
            if node is not None:
                self._dirty.add(node)
            if before is not None:
                self._dirty.add(before)
        self._wake.set()


__all__ = ["PER_NODE_LISTS", "AgentGroup"]
