"""Unit tests of the node lifecycle decisions (controllers/node_health.py)."""

from __future__ import annotations

from typing import Any

import pytest

from swarmapply.api.admission import validate_object
from swarmapply.api.store.lifecycle import parse_time
from swarmapply.controllers.node_health import (
    MAX_PERIOD,
    NODE_LOST,
    NODE_NOT_READY,
    NodeLifecycleSettings,
    Sighting,
    decide,
    evictable,
    heartbeat,
    lost_status,
    rfc3339,
    sight,
)

Object = dict[str, Any]

T0 = 1_800_000_000.0  # seconds since the epoch
SETTINGS = NodeLifecycleSettings(grace=2.0, eviction_timeout=1.0)
LEASE = "node-n1"


def lease(
    holder: str = "agent-1", renew: str = "2027-01-15T08:00:00.000000Z", rv: str = "5"
) -> Object:
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE, "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "renewTime": renew, "leaseDurationSeconds": 2},
    }


def node(ready: str | None = "True", reason: str = "AgentReady", since: float = T0,
         message: str = "the docker agent is ready") -> Object:  # fmt: skip
    status: Object = {}
    if ready is not None:
        status["conditions"] = [
            {
                "type": "Ready",
                "status": ready,
                "reason": reason,
                "message": message,
                "lastTransitionTime": rfc3339(since),
            }
        ]
    return {"apiVersion": "swarmapply.io/v1", "kind": "Node", "metadata": {"name": "n1"},
            "spec": {}, "status": status}  # fmt: skip


def judge(n: Object, s: Sighting, now: float, settings: NodeLifecycleSettings = SETTINGS) -> Any:
    return decide(n, s, now, settings, stamp=rfc3339(now), lease=LEASE)


def ready_of(conditions: list[Object]) -> Object:
    [ready] = [c for c in conditions if c["type"] == "Ready"]
    return ready


# ------------------------------------------------------------------------------ settings


def test_settings_defaults_and_period() -> None:
    default = NodeLifecycleSettings()
    assert (default.grace, default.eviction_timeout) == (40.0, 60.0)
    assert default.check_period == MAX_PERIOD  # a quarter of 40 s, capped
    assert NodeLifecycleSettings(grace=2.0).check_period == 0.5
    assert NodeLifecycleSettings(grace=2.0, period=0.1).check_period == 0.1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"grace": 0}, "grace"),
        ({"grace": float("inf")}, "grace"),
        ({"eviction_timeout": -1}, "eviction_timeout"),
        ({"period": 0}, "period"),
    ],
)
def test_settings_refuse_bad_values_naming_the_field(kwargs: Object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        NodeLifecycleSettings(**kwargs)


# ------------------------------------------------------------------------------ sightings


def test_a_sighting_ages_until_the_lease_changes() -> None:
    first = sight(None, lease(), T0)
    assert first.seen_at == T0 and first.present and first.holder == "agent-1"
    same = sight(first, lease(), T0 + 5)
    assert same is first  # unchanged Lease: still seen since T0
    renewed = sight(same, lease(renew="2027-01-15T08:00:01.000000Z", rv="6"), T0 + 6)
    assert renewed.seen_at == T0 + 6
    missing = sight(renewed, None, T0 + 7)
    assert (missing.present, missing.seen_at) == (False, T0 + 7)
    assert sight(missing, None, T0 + 9) is missing


def test_heartbeat_is_alive_within_grace_on_the_controllers_clock() -> None:
    seen = sight(None, lease(renew="2000-01-01T00:00:00Z"), T0)  # the agent's clock is off
    beat = heartbeat(seen, T0 + 1.9, 2.0, LEASE)
    assert beat.alive and beat.stale_at == T0 + 2.0
    stale = heartbeat(seen, T0 + 2.0, 2.0, LEASE)
    assert not stale.alive
    assert "no heartbeat since 2000-01-01T00:00:00Z" in stale.why and "2s" in stale.why


def test_a_released_lease_is_stale_at_once_and_a_missing_one_after_grace() -> None:
    released = sight(None, lease(holder=""), T0)
    beat = heartbeat(released, T0, 2.0, LEASE)
    assert not beat.alive and "released" in beat.why
    missing = sight(None, None, T0)
    assert heartbeat(missing, T0 + 1, 2.0, LEASE).alive
    gone = heartbeat(missing, T0 + 2, 2.0, LEASE)
    assert not gone.alive and "does not exist" in gone.why


# ------------------------------------------------------------------------------ decisions


def test_a_fresh_lease_writes_nothing_and_rechecks_when_grace_runs_out() -> None:
    d = judge(node(), sight(None, lease(), T0), T0 + 0.5)
    assert d.conditions is None and d.event is None and not d.evict
    assert d.recheck == pytest.approx(1.5)


def test_a_stale_lease_makes_the_node_not_ready_once() -> None:
    seen = sight(None, lease(), T0)
    d = judge(node(), seen, T0 + 3)
    assert d.conditions is not None and not d.evict
    ready = ready_of(d.conditions)
    assert (ready["status"], ready["reason"]) == ("False", NODE_LOST)
    assert "no heartbeat since 2027-01-15T08:00:00.000000Z" in ready["message"]
    assert ready["lastTransitionTime"] == rfc3339(T0 + 3)
    assert d.event is not None and d.event[0] == NODE_NOT_READY
    assert d.recheck == pytest.approx(1.0)  # the eviction timeout
    # Written: the same judgement again changes nothing.
    written = {**node(), "status": {"conditions": d.conditions}}
    again = judge(written, seen, T0 + 3.5)
    assert again.conditions is None and again.event is None and not again.evict
    assert again.recheck == pytest.approx(0.5)
    assert validate_object(written) == []


def test_tasks_are_evicted_after_the_eviction_timeout_from_the_transition() -> None:
    seen = sight(None, lease(), T0)
    lost = node("False", NODE_LOST, since=T0 + 3, message="node n1: no heartbeat")
    assert not judge(lost, seen, T0 + 3.9).evict
    d = judge(lost, seen, T0 + 4.0)
    assert d.evict and d.not_ready is not None and d.conditions is not None  # message updated
    assert d.event is None  # same status and reason: no new Event


def test_an_agent_that_reports_its_engine_unavailable_counts_as_not_ready() -> None:
    seen = sight(None, lease(), T0 + 10)  # heartbeating
    down = node("False", "EngineUnavailable", since=T0 + 9, message="engine down")
    waiting = judge(down, seen, T0 + 9.5)
    assert not waiting.evict and waiting.conditions is None
    assert waiting.recheck == pytest.approx(0.5)
    d = judge(down, seen, T0 + 10.0)
    assert d.evict and d.conditions is None  # the agent's condition is left as it is


def test_a_stale_lease_over_an_engine_failure_keeps_the_transition_time() -> None:
    seen = sight(None, lease(), T0)
    down = node("False", "EngineUnavailable", since=T0 - 30)
    d = judge(down, seen, T0 + 5)
    assert d.conditions is not None and d.evict
    ready = ready_of(d.conditions)
    assert ready["reason"] == NODE_LOST and ready["lastTransitionTime"] == rfc3339(T0 - 30)
    assert d.event is not None  # the reason changed


def test_never_evicts_from_a_ready_node_and_waits_for_an_agent_that_came_back() -> None:
    assert not judge(node("True", since=T0 - 100), sight(None, lease(), T0), T0 + 1).evict
    back = node("False", NODE_LOST, since=T0 - 100)
    d = judge(back, sight(None, lease(rv="99"), T0), T0 + 1)  # renewed again
    assert not d.evict and d.conditions is None


def test_a_node_without_agent_or_lease_is_left_alone() -> None:
    d = judge(node(ready=None), sight(None, None, T0), T0 + 100)
    assert d == type(d)()


def test_a_lost_node_without_a_ready_condition_gets_one() -> None:
    d = judge(node(ready=None), sight(None, lease(), T0), T0 + 2)
    assert d.conditions is not None and ready_of(d.conditions)["reason"] == NODE_LOST


# ------------------------------------------------------------------------------ evictions


def task(name: str, node_name: str | None, phase: str, **meta: Any) -> Object:
    status: Object = {"phase": phase}
    if node_name:
        status.update(node=node_name, cpuset="0", memory=1024, containerID="c-" + name)
    spec = {"job": "j", "image": "busybox", "cores": 1, "memory": 1024}
    return {"apiVersion": "swarmapply.io/v1", "kind": "Task",
            "metadata": {"name": name, **meta}, "spec": spec, "status": status}  # fmt: skip


def test_evictable_are_the_live_tasks_bound_to_the_node() -> None:
    tasks = [
        task("b", "n1", "Running"),
        task("a", "n1", "Scheduled"),
        task("c", "n1", "Succeeded"),
        task("d", "n1", "Failed"),
        task("e", "n2", "Running"),
        task("f", None, "Pending"),
        task("g", "n1", "Running", deletionTimestamp="2027-01-01T00:00:00Z"),
    ]
    assert [t["metadata"]["name"] for t in evictable(tasks, "n1")] == ["a", "b"]


def test_lost_status_fails_the_task_and_keeps_its_binding() -> None:
    ready = {"status": "False", "reason": NODE_LOST, "message": "node n1: no heartbeat since X",
             "lastTransitionTime": "2027-01-15T08:00:03Z"}  # fmt: skip
    before = task("a", "n1", "Running")
    status = lost_status(before, "n1", ready, "2027-01-15T08:00:05.000000Z")
    assert status["phase"] == "Failed" and status["reason"] == NODE_LOST
    assert "node n1 has not been Ready since 2027-01-15T08:00:03Z" in status["message"]
    assert "no heartbeat since X" in status["message"]
    assert (status["node"], status["cpuset"], status["containerID"]) == ("n1", "0", "c-a")
    assert status["finishTime"] == "2027-01-15T08:00:05.000000Z"
    assert before["status"]["phase"] == "Running"  # not modified
    assert validate_object({**before, "status": status}) == []


def test_rfc3339_keeps_microseconds() -> None:
    stamp = rfc3339(T0 + 0.25)
    parsed = parse_time(stamp)
    assert parsed is not None and parsed.timestamp() == pytest.approx(T0 + 0.25)
