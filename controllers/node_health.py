"""Node health decisions of the node lifecycle controller (pure).

A node's agent renews the Lease ``node-<name>`` every heartbeat. This module judges, from what
the controller has seen of that Lease and from the Node as read, whether the node is lost, what
its ``Ready`` condition must say, and whether its tasks are to be evicted. It does no I/O and
reads no clock: :mod:`.node_lifecycle` passes the time in and writes the results.

The rules:

* A heartbeat is judged on the controller's own clock, never by comparing the agent's
  timestamps with it (machines' clocks differ): a :class:`Sighting` records when this process
  first saw the Lease in its current state, and the Lease is *stale* once it has not changed
  for ``grace`` seconds. A Lease whose holder is empty (its agent released it on a clean stop)
  is stale at once; a missing Lease is stale ``grace`` seconds after it was first seen missing.
  So a controller that just started waits one grace period before it calls any node lost.
* A node with a stale Lease gets ``Ready`` False, reason ``NodeLost``, and a message saying
  since when it has not heartbeat. Nothing is written while the Lease is fresh: the agent owns
  ``Ready`` then (it reports ``True``, or ``False``/``EngineUnavailable`` when its engine does not
  answer, which counts as not ready too).
* Tasks are evicted (failed with reason ``NodeLost``) once ``Ready`` has not been ``True`` for
  ``eviction_timeout`` seconds, counted from the condition's ``lastTransitionTime``. Never from
  a node whose ``Ready`` is ``True``; and not while the Lease is fresh again but ``Ready`` still
  carries ``NodeLost`` (the agent came back and is about to report).

Not decided here: what becomes of an evicted task (the job controller replaces it according to
the Job's restart policy), and the removal of its container if the node comes back (the agent
removes containers of finished or deleted tasks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from swarmapply.api.store.lifecycle import parse_time
from swarmapply.controllers.conditions import find_condition, set_condition

Object = dict[str, Any]

READY = "Ready"
#: The reason of ``Ready`` False (and of a failed task) when a node's heartbeat stopped.
NODE_LOST = "NodeLost"
#: The Event recorded on a Node the controller marks NotReady.
NODE_NOT_READY = "NodeNotReady"
#: Task phases that end a task (an evicted task is one of them afterwards).
FINISHED = frozenset({"Succeeded", "Failed"})
#: The longest pause between two checks of every node, whatever the grace period.
MAX_PERIOD = 5.0


@dataclass(frozen=True)
class NodeLifecycleSettings:
    """When a node counts as lost and when its tasks are given up.

    Attributes:
        grace: Seconds a node's heartbeat Lease may go unrenewed before the node is NotReady.
        eviction_timeout: Seconds a node stays NotReady before its live tasks are failed
            (reason ``NodeLost``) so that their jobs replace them elsewhere.
        period: Seconds between checks of every node besides those a change triggers; None
            for a quarter of ``grace``, at most :data:`MAX_PERIOD`.
    """

    grace: float = 40.0
    eviction_timeout: float = 60.0
    period: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.grace) and self.grace > 0):
            raise ValueError("grace: expected seconds > 0")
        if not (math.isfinite(self.eviction_timeout) and self.eviction_timeout >= 0):
            raise ValueError("eviction_timeout: expected seconds >= 0")
        if self.period is not None and not (math.isfinite(self.period) and self.period > 0):
            raise ValueError("period: expected seconds > 0, or None")

    @property
    def check_period(self) -> float:
        """The seconds between periodic checks (``period``, or its default)."""
        return self.period if self.period is not None else min(self.grace / 4, MAX_PERIOD)


@dataclass(frozen=True)
class Sighting:
    """A node's heartbeat Lease as this process last saw it, and since when.

    Attributes:
        present: Whether the Lease exists.
        holder: ``spec.holderIdentity`` (empty when released or missing).
        renew_time: ``spec.renewTime`` as written by the agent, if any.
        version: ``metadata.resourceVersion``.
        seen_at: When this state was first seen, on the controller's clock (seconds).
    """

    present: bool
    holder: str
    renew_time: str | None
    version: str
    seen_at: float


def sight(previous: Sighting | None, lease: Mapping[str, Any] | None, now: float) -> Sighting:
    """The sighting after reading a node's Lease (``None`` when it does not exist) at ``now``.

    The time moves only when the Lease changed (holder, ``renewTime`` or resourceVersion), so a
    Lease nobody renews keeps ageing.
    """
    if lease is None:
        state: tuple[bool, str, str | None, str] = (False, "", None, "")
    else:
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renew = spec.get("renewTime")
        state = (
            True,
            holder if isinstance(holder, str) else "",
            renew if isinstance(renew, str) else None,
            str((lease.get("metadata") or {}).get("resourceVersion") or ""),
        )
    if (
        previous is not None
        and (
            previous.present,
            previous.holder,
            previous.renew_time,
            previous.version,
        )
        == state
    ):
        return previous
    return Sighting(*state, seen_at=now)


@dataclass(frozen=True)
class Heartbeat:
    """Whether a node's agent heartbeats, as judged from a :class:`Sighting`.

    Attributes:
        alive: The Lease is held and changed within the grace period.
        why: When not alive, what is wrong (for the ``Ready`` message); else empty.
        stale_at: When alive, the time (controller's clock) it turns stale without a renewal.
    """

    alive: bool
    why: str = ""
    stale_at: float | None = None


def heartbeat(sighting: Sighting, now: float, grace: float, lease: str) -> Heartbeat:
    """Judges a node's heartbeat (see the module docstring).

    Args:
        sighting: What was seen of the node's Lease.
        now: The controller's clock.
        grace: The grace period in seconds.
        lease: The Lease's name (for messages).
    """
    if sighting.present and not sighting.holder:
        when = f" at {sighting.renew_time}" if sighting.renew_time else ""
        return Heartbeat(False, f"its agent released the heartbeat Lease {lease}{when}")
    stale_at = sighting.seen_at + grace
    if now < stale_at:
        return Heartbeat(True, stale_at=stale_at)
    if not sighting.present:
        return Heartbeat(False, f"its heartbeat Lease {lease} does not exist")
    since = sighting.renew_time or "it was acquired"
    return Heartbeat(
        False, f"no heartbeat since {since} (Lease {lease} not renewed within {grace:g}s)"
    )


@dataclass(frozen=True)
class Decision:
    """What the controller does about one node now.

    Attributes:
        conditions: The Node's new ``status.conditions`` (``Ready`` False, ``NodeLost``), or
            None to write nothing.
        event: ``(reason, message)`` of a Warning Event to record on the Node, or None.
        evict: Fail the node's live tasks now.
        not_ready: The ``Ready`` condition when it is not True (after the write), else None.
        recheck: Seconds after which to look at the node again (a grace period or an
            eviction timeout runs out), or None.
    """

    conditions: list[Object] | None = None
    event: tuple[str, str] | None = None
    evict: bool = False
    not_ready: Object | None = None
    recheck: float | None = None


def decide(
    node: Mapping[str, Any],
    sighting: Sighting,
    now: float,
    settings: NodeLifecycleSettings,
    *,
    stamp: str,
    lease: str,
) -> Decision:
    """What to do about ``node`` (see the module docstring for the rules).

    Args:
        node: The Node as read.
        sighting: What was seen of its heartbeat Lease.
        now: The controller's clock, seconds since the epoch (``lastTransitionTime`` is
            compared with it).
        settings: Grace period and eviction timeout.
        stamp: ``now`` as RFC 3339, for a ``Ready`` transition written now.
        lease: The name of the node's Lease (for messages).
    """
    status: Mapping[str, Any] = node.get("status") or {}
    ready = find_condition(status, READY)
    if ready is None and not sighting.present:
        return Decision()  # never run by an agent (a declared node): nothing to judge
    beat = heartbeat(sighting, now, settings.grace, lease)
    recheck = None if beat.stale_at is None else max(0.0, beat.stale_at - now)
    conditions: list[Object] | None = None
    event: tuple[str, str] | None = None
    if not beat.alive:
        message = beat.why
        wanted = ("False", NODE_LOST, message)
        fields = ("status", "reason", "message")
        current = None if ready is None else tuple(ready.get(k) for k in fields)
        if current != wanted:
            conditions = set_condition(
                status.get("conditions"), READY, "False", NODE_LOST, message, now=stamp
            )
            if current is None or current[:2] != wanted[:2]:
                event = (NODE_NOT_READY, message)
            ready = find_condition({"conditions": conditions}, READY)
    if ready is None or ready.get("status") == "True":
        return Decision(conditions, event, recheck=recheck)
    if beat.alive and ready.get("reason") == NODE_LOST:
        # The agent is back and has not reported yet: its report decides.
        return Decision(conditions, event, not_ready=ready, recheck=recheck)
    since = parse_time(ready.get("lastTransitionTime"))
    due = (since.timestamp() if since is not None else now) + settings.eviction_timeout
    if now >= due:
        return Decision(conditions, event, evict=True, not_ready=ready, recheck=recheck)
    wait = due - now
    return Decision(
        conditions,
        event,
        not_ready=ready,
        recheck=wait if recheck is None else min(recheck, wait),
    )


def evictable(tasks: Sequence[Mapping[str, Any]], node: str) -> list[Object]:
    """The live tasks bound to ``node`` that are not being deleted, by name."""
    found = [
        dict(t)
        for t in tasks
        if (t.get("status") or {}).get("node") == node
        and (t.get("status") or {}).get("phase") not in FINISHED
        and not (t.get("metadata") or {}).get("deletionTimestamp")
    ]
    return sorted(found, key=lambda t: str(t["metadata"]["name"]))


def lost_status(
    task: Mapping[str, Any], node: str, not_ready: Mapping[str, Any], stamp: str
) -> Object:
    """The status of a task given up with its node (pure).

    Phase ``Failed``, reason ``NodeLost``, a message naming the node, since when it is not
    ready and why, and ``finishTime``. The binding (``node``, ``cpuset``, ``memory``) and the
    ``containerID`` stay, so the record says where the task was and what its agent must remove
    if the node comes back.
    """
    status: Object = dict(task.get("status") or {})
    since = not_ready.get("lastTransitionTime") or "an unknown time"
    why = not_ready.get("message") or not_ready.get("reason") or "not ready"
    status.update(
        phase="Failed",
        reason=NODE_LOST,
        message=f"node {node} has not been Ready since {since} ({why}); the task is lost",
        finishTime=status.get("finishTime") or stamp,
    )
    return status


def rfc3339(seconds: float) -> str:
    """Seconds since the epoch as RFC 3339 UTC with microseconds."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


__all__ = [
    "FINISHED",
    "MAX_PERIOD",
    "NODE_LOST",
    "NODE_NOT_READY",
    "READY",
    "Decision",
    "Heartbeat",
    "NodeLifecycleSettings",
    "Sighting",
    "decide",
    "evictable",
    "heartbeat",
    "lost_status",
    "rfc3339",
    "sight",
]
