"""The Node a node agent registers and keeps reporting, merged into the stored one (pure).

A node agent owns some of its Node's status (capacity, address, engine version, Swarm facts,
driver, heartbeat time and the ``Ready`` condition); the scheduler owns ``status.allocated``
and users own ``spec.unschedulable``. Functions here build the agent's part from what the
driver reports (:class:`~swarmapply.agent.model.NodeInfo`) and merge it into the Node as read,
leaving every field the agent does not own exactly as it was. They do no I/O; the agent loop
(:mod:`swarmapply.agent.agent`) writes the result with compare-and-swap.

Guarantees: ``allocated``, ``observedGeneration`` and conditions other than ``Ready`` are never
changed; the ``Ready`` condition's ``lastTransitionTime`` moves only when its status flips
(so reporting the same thing twice is no change). Not done here: marking a node NotReady on
missed heartbeats (the node lifecycle controller does that from the Lease).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from swarmapply.agent.model import NodeInfo
from swarmapply.controllers.conditions import set_condition

Object = dict[str, Any]

API_VERSION = "swarmapply.io/v1"
READY = "Ready"
#: Reasons of the Ready condition the agent writes.
AGENT_READY = "AgentReady"
ENGINE_UNAVAILABLE = "EngineUnavailable"
#: The status fields the agent reports (besides the Ready condition).
AGENT_FIELDS = (
    "capacity",
    "address",
    "engineVersion",
    "swarmNodeID",
    "role",
    "swarmState",
    "heartbeatTime",
    "driver",
)


def new_node(name: str, info: NodeInfo | None) -> Object:
    """The Node to create when none exists: an empty spec plus the address if known (pure)."""
    spec: Object = {}
    if info is not None and info.address:
        spec["address"] = info.address
    return {"apiVersion": API_VERSION, "kind": "Node", "metadata": {"name": name}, "spec": spec}


def capacity(info: NodeInfo) -> Object:
    """``status.capacity`` from what the driver reports: core ids, their count, memory."""
    ids = sorted(set(info.core_ids))
    return {"cores": len(ids), "memory": int(info.memory), "coreIds": ids}


def reported_status(
    current: Mapping[str, Any] | None,
    info: NodeInfo | None,
    *,
    driver: str,
    engine_error: str | None,
    now: str,
    heartbeat: str | None = None,
) -> Object:
    """The Node's status after the agent reports, merged into ``current`` (pure).

    Args:
        current: The Node's status as read (None or empty for a new Node).
        info: What the driver reported, or None when the engine has not answered yet (the
            previously reported capacity and engine facts are then kept).
        driver: ``docker`` or ``sim``.
        engine_error: Why the engine cannot be used, or None when it answers. Sets the
            ``Ready`` condition False (reason ``EngineUnavailable``) or True (``AgentReady``).
        now: RFC 3339 time for a ``Ready`` transition.
        heartbeat: The new ``heartbeatTime``, or None to keep the current one.

    Returns:
        A new status dict; fields the agent does not own are copied unchanged.
    """
    status: Object = copy.deepcopy(dict(current or {}))
    status["driver"] = driver
    if info is not None:
        status["capacity"] = capacity(info)
        for key, value in (
            ("address", info.address),
            ("engineVersion", info.engine_version),
            ("swarmNodeID", info.swarm_node_id),
            ("role", info.role),
            ("swarmState", info.swarm_state),
        ):
            if value:
                status[key] = value
            else:
                status.pop(key, None)
    if heartbeat is not None:
        status["heartbeatTime"] = heartbeat
    if engine_error is None:
        ready, reason, message = "True", AGENT_READY, f"the {driver} agent is ready"
    else:
        ready, reason, message = "False", ENGINE_UNAVAILABLE, engine_error
    status["conditions"] = set_condition(
        status.get("conditions"), READY, ready, reason, message, now=now
    )
    return status


def with_status(node: Mapping[str, Any], status: Object) -> Object:
    """``node`` (as read, resourceVersion kept for compare-and-swap) carrying ``status``."""
    return {**node, "status": status}


__all__ = [
    "AGENT_FIELDS",
    "AGENT_READY",
    "ENGINE_UNAVAILABLE",
    "READY",
    "capacity",
    "new_node",
    "reported_status",
    "with_status",
]
