"""The Node status a node agent reports, merged into the stored Node (pure)."""

from __future__ import annotations

from typing import Any

from swarmapply.agent.model import NodeInfo
from swarmapply.agent.registration import (
    AGENT_READY,
    ENGINE_UNAVAILABLE,
    capacity,
    new_node,
    reported_status,
)
from swarmapply.api.admission import validate_object

GI = 1024**3
INFO = NodeInfo(
    name="n1",
    core_ids=(3, 1, 2, 0),
    memory=16 * GI,
    address="10.0.0.5",
    engine_version="27.1.0",
    swarm_node_id="abc123",
    role="worker",
)
ALLOCATED = {"cores": 2, "memory": GI, "cpuset": "0-1", "tasks": []}


def ready_condition(status: dict[str, Any]) -> dict[str, Any]:
    [condition] = [c for c in status["conditions"] if c["type"] == "Ready"]
    return condition


def test_new_node_has_empty_spec_plus_address() -> None:
    assert new_node("n1", INFO)["spec"] == {"address": "10.0.0.5"}
    assert new_node("n1", None)["spec"] == {}
    assert not validate_object(new_node("n1", INFO))


def test_capacity_counts_sorted_core_ids() -> None:
    assert capacity(INFO) == {"cores": 4, "memory": 16 * GI, "coreIds": [0, 1, 2, 3]}


def test_first_report_is_ready_with_everything_the_driver_said() -> None:
    status = reported_status(
        None, INFO, driver="docker", engine_error=None, now="2026-01-01T00:00:00Z",
        heartbeat="2026-01-01T00:00:00Z",
    )  # fmt: skip
    assert status["capacity"]["coreIds"] == [0, 1, 2, 3]
    assert status["address"] == "10.0.0.5"
    assert status["engineVersion"] == "27.1.0"
    assert status["swarmNodeID"] == "abc123" and status["role"] == "worker"
    assert status["driver"] == "docker"
    assert status["heartbeatTime"] == "2026-01-01T00:00:00Z"
    condition = ready_condition(status)
    assert (condition["status"], condition["reason"]) == ("True", AGENT_READY)
    node = {**new_node("n1", INFO), "status": status}
    assert not validate_object(node)


def test_scheduler_fields_and_other_conditions_are_kept() -> None:
    other = {
        "type": "DiskPressure",
        "status": "False",
        "reason": "Fine",
        "message": "ok",
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }
    current = {"allocated": ALLOCATED, "observedGeneration": 3, "conditions": [other]}
    status = reported_status(
        current, INFO, driver="sim", engine_error=None, now="2026-01-01T00:00:00Z"
    )
    assert status["allocated"] == ALLOCATED
    assert status["observedGeneration"] == 3
    assert other in status["conditions"]
    assert current == {"allocated": ALLOCATED, "observedGeneration": 3, "conditions": [other]}


def test_same_report_twice_is_no_change_and_heartbeat_is_kept_when_not_given() -> None:
    first = reported_status(
        None, INFO, driver="sim", engine_error=None, now="2026-01-01T00:00:00Z",
        heartbeat="2026-01-01T00:00:00Z",
    )  # fmt: skip
    again = reported_status(
        first, INFO, driver="sim", engine_error=None, now="2026-01-01T00:09:00Z"
    )
    assert again == first


def test_engine_error_flips_ready_false_and_keeps_last_capacity() -> None:
    up = reported_status(None, INFO, driver="docker", engine_error=None, now="2026-01-01T00:00:00Z")
    down = reported_status(
        up, None, driver="docker", engine_error="cannot connect", now="2026-01-01T00:01:00Z"
    )
    condition = ready_condition(down)
    assert condition["status"] == "False"
    assert condition["reason"] == ENGINE_UNAVAILABLE
    assert condition["message"] == "cannot connect"
    assert condition["lastTransitionTime"] == "2026-01-01T00:01:00Z"
    assert down["capacity"] == up["capacity"]
    back = reported_status(
        down, INFO, driver="docker", engine_error=None, now="2026-01-01T00:02:00Z"
    )
    assert ready_condition(back)["status"] == "True"
    assert ready_condition(back)["lastTransitionTime"] == "2026-01-01T00:02:00Z"


def test_facts_the_driver_no_longer_reports_are_dropped() -> None:
    joined = reported_status(None, INFO, driver="docker", engine_error=None, now="t")
    left = NodeInfo(name="n1", core_ids=(0,), memory=GI)
    status = reported_status(joined, left, driver="docker", engine_error=None, now="t")
    assert "swarmNodeID" not in status and "role" not in status and "address" not in status
    assert status["capacity"] == {"cores": 1, "memory": GI, "coreIds": [0]}
