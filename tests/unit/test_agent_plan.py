"""The node agent's planner: from bound Tasks and observed containers to actions and statuses."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmapply.agent.driver import TaskRefused
from swarmapply.agent.model import Observed, container_spec
from swarmapply.agent.plan import NodePlan, plan_node
from swarmapply.agent.policy import Policy
from swarmapply.agent.sim import SimCluster

NOW = "2024-05-01T12:00:00Z"
MI = 1 << 20


def task(
    name: str = "web-a",
    uid: str = "u-a",
    *,
    node: str | None = "n1",
    phase: str = "Scheduled",
    cpuset: str | None = "0-1",
    memory: int = 64 * MI,
    deleting: bool = False,
    spec: dict[str, Any] | None = None,
    **status: Any,
) -> dict[str, Any]:
    st_: dict[str, Any] = {"phase": phase, **status}
    if node is not None:
        st_["node"] = node
    if cpuset is not None:
        st_["cpuset"] = cpuset
        st_["memory"] = memory
    meta: dict[str, Any] = {"name": name, "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2024-05-01T11:00:00Z"
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Task",
        "metadata": meta,
        "spec": {"job": "web", "image": "busybox", "cores": 2, "memory": memory, **(spec or {})},
        "status": st_,
    }


def seen(
    uid: str = "u-a",
    state: str = "running",
    *,
    cid: str = "c-1",
    name: str = "web-a",
    cpuset: str = "0-1",
    memory: int = 64 * MI,
    **kw: Any,
) -> Observed:
    kw.setdefault("started_at", "2024-05-01T11:59:00.123456789Z" if state != "created" else None)
    return Observed(cid, name, uid, state, cpuset=cpuset, memory=memory, **kw)


def plan(tasks: list[dict[str, Any]], observed: list[Observed], **kw: Any) -> NodePlan:
    return plan_node("n1", tasks, observed, now=NOW, **kw)


# -- starting ------------------------------------------------------------------------------


def test_a_bound_task_without_a_container_is_started_and_its_status_waits() -> None:
    t = task(spec={"command": ["sleep", "5"]})
    result = plan([t], [])
    assert result.start == (container_spec(t),)
    assert result.remove == () and result.update == ()
    assert result.statuses == {}, "nothing is Running before its container has started"


@pytest.mark.parametrize(
    "container",
    [seen(state="created"), seen(state="missing", error=None)],
    ids=["created", "missing-without-error"],
)
def test_a_container_that_never_started_is_started_again(container: Observed) -> None:
    result = plan([task()], [container])
    assert [s.task_uid for s in result.start] == ["u-a"]
    assert result.statuses == {} and result.remove == ()


@pytest.mark.parametrize(
    "t",
    [
        task(phase="Pending", node=None, cpuset=None),
        task(node="n2"),
        task(phase="Succeeded"),
        task(phase="Failed"),
        task(deleting=True),
        task(cpuset=None),
    ],
    ids=["unbound", "elsewhere", "succeeded", "failed", "deleting", "no-cpuset"],
)
def test_tasks_not_meant_to_run_here_start_nothing(t: dict[str, Any]) -> None:
    assert plan([t], []).empty


def test_a_task_whose_container_cannot_be_built_fails_with_invalid_spec() -> None:
    t = task()
    del t["spec"]["image"]
    result = plan([t], [])
    assert result.start == ()
    assert result.statuses["web-a"]["phase"] == "Failed"
    assert result.statuses["web-a"]["reason"] == "InvalidSpec"
    assert result.statuses["web-a"]["message"].startswith("task web-a: cannot build")


def test_a_task_whose_container_vanished_is_failed_not_started_again() -> None:
    t = task(phase="Running", containerID="c-old", startTime="2024-05-01T11:00:00Z")
    result = plan([t], [])
    assert result.start == ()
    status = result.statuses["web-a"]
    assert status["phase"] == "Failed" and status["reason"] == "ContainerLost"
    assert "c-old" in status["message"] and "n1" in status["message"]
    assert status["containerID"] == "c-old"


# -- observing -----------------------------------------------------------------------------

RUNNING = {"phase": "Running", "containerID": "c-1", "startTime": "2024-05-01T11:59:00Z"}


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        (seen(), RUNNING),
        (seen(state="paused"), RUNNING),
        (
            seen(state="exited", exit_code=0, finished_at="2024-05-01T11:59:30Z"),
            {
                "phase": "Succeeded",
                "containerID": "c-1",
                "startTime": "2024-05-01T11:59:00Z",
                "finishTime": "2024-05-01T11:59:30Z",
                "exitCode": 0,
                "reason": "Completed",
                "message": "container c-1 exited with code 0",
            },
        ),
        (
            seen(state="exited", exit_code=3, finished_at="2024-05-01T11:59:30.5Z"),
            {
                "phase": "Failed",
                "containerID": "c-1",
                "startTime": "2024-05-01T11:59:00Z",
                "finishTime": "2024-05-01T11:59:30Z",
                "exitCode": 3,
                "reason": "Error",
                "message": "container c-1 exited with code 3",
            },
        ),
        (
            seen(state="exited", exit_code=137, oom_killed=True, finished_at=None),
            {
                "phase": "Failed",
                "containerID": "c-1",
                "startTime": "2024-05-01T11:59:00Z",
                "finishTime": NOW,
                "exitCode": 137,
                "reason": "OOMKilled",
                "message": "container c-1 was killed for exceeding its memory limit of 64Mi "
                "(exit code 137)",
            },
        ),
        (
            seen(state="dead", exit_code=0, finished_at="2024-05-01T11:59:30Z"),
            {
                "phase": "Failed",
                "containerID": "c-1",
                "startTime": "2024-05-01T11:59:00Z",
                "finishTime": "2024-05-01T11:59:30Z",
                "exitCode": 0,
                "reason": "Error",
                "message": "container c-1 is dead (exit code 0)",
            },
        ),
        (
            seen(state="exited", started_at="0001-01-01T00:00:00Z", finished_at=None),
            {
                "phase": "Failed",
                "containerID": "c-1",
                "finishTime": NOW,
                "reason": "Error",
                "message": "container c-1 is exited without an exit code",
            },
        ),
        (
            seen(state="missing", error="ImagePullFailed: pull access denied for nope"),
            {
                "phase": "Failed",
                "reason": "ImagePullFailed",
                "message": "task web-a: pull access denied for nope",
            },
        ),
        (
            seen(state="missing", error="engine said no"),
            {"phase": "Failed", "reason": "EngineError", "message": "task web-a: engine said no"},
        ),
    ],
    ids=[
        "running",
        "paused",
        "exit-0",
        "exit-3",
        "oom",
        "dead",
        "no-exit-code",
        "image-pull",
        "engine-error",
    ],
)
def test_the_container_state_becomes_the_task_status(
    container: Observed, expected: dict[str, Any]
) -> None:
    t = task()
    result = plan([t], [container])
    assert result.start == () and result.remove == () and result.update == ()
    scheduler = {"node": "n1", "cpuset": "0-1", "memory": 64 * MI}
    assert result.statuses == {"web-a": {**scheduler, **expected}}


def test_running_keeps_the_scheduler_fields_and_start_time_and_drops_old_reasons() -> None:
    conditions = [{"type": "Scheduled", "status": "True", "reason": "Placed"}]
    t = task(
        conditions=conditions,
        restarts=2,
        reason="Waiting",
        message="old",
        startTime="2024-05-01T10:00:00Z",
    )
    status = plan([t], [seen()]).statuses["web-a"]
    assert status == {
        "phase": "Running",
        "node": "n1",
        "cpuset": "0-1",
        "memory": 64 * MI,
        "conditions": conditions,
        "restarts": 2,
        "containerID": "c-1",
        "startTime": "2024-05-01T10:00:00Z",
    }


def test_an_unchanged_status_is_not_written_again() -> None:
    t = task(phase="Running", containerID="c-1", startTime="2024-05-01T11:59:00Z")
    assert plan([t], [seen()]).empty


def test_a_running_container_without_a_start_time_is_stamped_now() -> None:
    status = plan([task()], [seen(started_at=None)]).statuses["web-a"]
    assert status["startTime"] == NOW


def test_a_finished_phase_is_never_changed() -> None:
    done = task(phase="Succeeded", containerID="c-1", exitCode=0)
    failed = task("web-b", "u-b", phase="Failed", containerID="c-2", exitCode=1)
    observed = [
        seen(state="exited", exit_code=1),
        seen("u-b", "exited", cid="c-2", name="web-b", exit_code=0),
    ]
    assert plan([done, failed], observed).empty, "exited containers of finished tasks are kept"


def test_the_stopped_container_of_a_finished_task_goes_after_finished_age() -> None:
    old = task(phase="Succeeded", containerID="c-1", exitCode=0, finishTime="2024-05-01T10:00:00Z")
    recent = task("web-b", "u-b", phase="Failed", containerID="c-2", exitCode=1,
                  finishTime="2024-05-01T11:59:00Z")  # fmt: skip
    observed = [seen(state="exited"), seen("u-b", "exited", cid="c-2", name="web-b")]
    result = plan([old, recent], observed, finished_age=3600)
    assert [cid for cid, _ in result.remove] == ["c-1"]
    assert "finished more than 3600s ago" in result.remove[0][1]
    assert result.statuses == {}  # a finished task's status is never changed
    assert plan([old, recent], observed).empty  # no age given: kept as long as the Task


# -- resizing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpuset", "memory", "expected"),
    [
        ("0-1", 64 * MI, ()),
        ("0,1", 64 * MI, ()),
        ("0-2", 64 * MI, (("c-1", "0-1", 64 * MI),)),
        ("0-1", 32 * MI, (("c-1", "0-1", 64 * MI),)),
        ("2,3", 128 * MI, (("c-1", "0-1", 64 * MI),)),
    ],
    ids=["same", "same-spelled-differently", "cores", "memory", "both"],
)
def test_a_running_container_is_resized_in_place_to_its_binding(
    cpuset: str, memory: int, expected: tuple[tuple[str, str, int], ...]
) -> None:
    result = plan([task(cpuset="0-1")], [seen(cpuset=cpuset, memory=memory)])
    assert result.update == expected
    assert result.start == () and result.remove == ()


def test_an_exited_container_is_not_resized() -> None:
    result = plan([task(cpuset="0-1")], [seen(state="exited", exit_code=0, cpuset="3")])
    assert result.update == ()


# -- removing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tasks", "why"),
    [
        ([], "task web-a (uid u-a) no longer exists"),
        ([task(node="n2")], "task web-a is bound to node n2, not n1"),
        ([task(node=None, cpuset=None, phase="Pending")], "task web-a is not bound to a node"),
        ([task(deleting=True)], "task web-a is being deleted"),
        ([task(deleting=True, phase="Succeeded")], "task web-a is being deleted"),
        (
            [task(phase="Failed")],
            "task web-a is Failed; its container must not keep running on cores the "
            "scheduler has given back",
        ),
    ],
    ids=["gone", "elsewhere", "unbound", "deleting", "deleting-finished", "finished-running"],
)
def test_containers_that_no_task_here_wants_are_removed(
    tasks: list[dict[str, Any]], why: str
) -> None:
    result = plan(tasks, [seen()])
    assert [c for c, _ in result.remove] == ["c-1"]
    assert result.remove[0][1].startswith(why)
    assert result.start == () and result.statuses == {}


def test_a_task_recreated_under_the_same_name_does_not_adopt_the_old_container() -> None:
    result = plan([task(uid="u-new")], [seen(uid="u-old")])
    assert result.remove == (("c-1", "task web-a (uid u-old) no longer exists"),)
    assert [s.task_uid for s in result.start] == ["u-new"]


@pytest.mark.parametrize(
    ("containers", "recorded", "kept"),
    [
        (
            [seen(state="exited", exit_code=0, cid="c-1"), seen(cid="c-2")],
            None,
            "c-2",
        ),
        (
            [
                seen(state="exited", exit_code=0, cid="c-1", started_at="2024-05-01T11:00:00Z"),
                seen(state="exited", exit_code=0, cid="c-2", started_at="2024-05-01T10:00:00Z"),
            ],
            None,
            "c-1",
        ),
        ([seen(cid="c-1"), seen(cid="c-2")], "c-1", "c-1"),
        ([seen(cid="c-1"), seen(cid="c-2"), seen(state="created", cid="c-3")], "c-2", "c-2"),
    ],
    ids=["running-wins", "newest-wins", "recorded-wins", "three"],
)
def test_duplicate_containers_of_one_task_keep_one(
    containers: list[Observed], recorded: str | None, kept: str
) -> None:
    extra: dict[str, Any] = {"containerID": recorded} if recorded else {}
    result = plan([task(**extra)], containers)
    removed = {c for c, _ in result.remove}
    assert removed == {c.container_id for c in containers} - {kept}
    assert all(f"{kept} is kept" in why for _, why in result.remove)
    assert result.start == ()
    status = result.statuses.get("web-a", {})
    assert status.get("containerID", recorded) == kept


# -- refusing --------------------------------------------------------------------------------


def test_a_refused_setting_fails_the_task_and_starts_nothing() -> None:
    t = task(spec={"securityContext": {"privileged": True}})
    result = plan([t], [])
    assert result.start == ()
    status = result.statuses["web-a"]
    assert status["phase"] == "Failed" and status["reason"] == "RefusedSetting"
    assert status["message"].startswith("task web-a: spec.securityContext.privileged: ")
    allowed = plan([t], [], policy=Policy(privileged=True))
    assert len(allowed.start) == 1 and allowed.statuses == {}


def test_a_running_container_is_not_refused_when_the_policy_goes() -> None:
    t = task(spec={"securityContext": {"hostPID": True}}, phase="Running", containerID="c1")
    running = Observed("c1", "web-a", "u-a", "running", cpuset="0-1", memory=64 * MI)
    result = plan([t], [running])
    assert result.remove == () and result.start == ()
    assert result.statuses.get("web-a", {"phase": "Running"})["phase"] == "Running"


# -- idempotence -----------------------------------------------------------------------------

CPUSETS = ("0", "1-2", "3", "0-3", "2")
SCENARIO = st.fixed_dictionaries(
    {
        "node": st.sampled_from(["n1", "n1", "n1", "n2", None]),
        "phase": st.sampled_from(["Scheduled", "Running", "Succeeded", "Failed"]),
        "deleting": st.booleans(),
        "cpuset": st.sampled_from(CPUSETS),
        "memory": st.sampled_from([32 * MI, 64 * MI]),
        "recorded": st.booleans(),
        "danger": st.booleans(),
        "container": st.sampled_from(["none", "none", "same", "resized", "fail", "oom", "ends"]),
        "container_cpuset": st.sampled_from(CPUSETS),
        "duration": st.sampled_from([None, 1.0, 5.0]),
    }
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def apply(result: NodePlan, driver: Any, tasks: list[dict[str, Any]]) -> None:
    for container_id, _ in result.remove:
        driver.remove(container_id)
    for container_id, cpuset, memory in result.update:
        driver.update(container_id, cpuset, memory)
    for spec in result.start:
        try:
            driver.start(spec)
        except TaskRefused as error:  # not expected: every cpuset fits the node
            raise AssertionError(error) from error
    for t in tasks:
        if t["metadata"]["name"] in result.statuses:
            t["status"] = result.statuses[t["metadata"]["name"]]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenarios=st.lists(SCENARIO, max_size=8),
    orphans=st.integers(min_value=0, max_value=2),
    elapsed=st.sampled_from([0.0, 2.0, 10.0]),
)
def test_planning_again_after_applying_a_plan_asks_for_nothing(
    scenarios: list[dict[str, Any]], orphans: int, elapsed: float
) -> None:
    clock = FakeClock()
    cluster = SimCluster(clock=clock, wall=lambda: NOW)
    driver = cluster.add_node("n1", cores=4, memory=1 << 30)
    tasks: list[dict[str, Any]] = []
    for i, s in enumerate(scenarios):
        extra: dict[str, Any] = {}
        if s["duration"]:
            extra["simulation"] = {"duration": s["duration"]}
        if s["danger"]:
            extra["volumes"] = [{"source": "/etc", "target": "/x"}]
        status: dict[str, Any] = {}
        if s["recorded"] and s["phase"] == "Running":
            status["containerID"] = f"lost-{i}"
        t = task(
            f"t{i}",
            f"u{i}",
            node=s["node"],
            phase=s["phase"],
            cpuset=s["cpuset"] if s["node"] else None,
            memory=s["memory"],
            deleting=s["deleting"],
            spec=extra,
            **status,
        )
        tasks.append(t)
        if s["container"] == "none":
            continue
        bound = copy.deepcopy(t)
        bound["status"].update(node="n1", cpuset=s["container_cpuset"], memory=s["memory"])
        spec = container_spec(bound)
        driver.start(spec)
        if s["container"] == "same":
            driver.start(spec)  # idempotent: no second container
        if s["container"] == "fail":
            cluster.fail(spec.task_uid, exit_code=i % 3)
        if s["container"] == "oom":
            cluster.oom(spec.task_uid)
    for k in range(orphans):
        ghost = container_spec(task(f"ghost{k}", f"ghost-{k}", cpuset="0"))
        driver.start(dataclasses.replace(ghost, duration=1.0 if k else None))
    clock.now += elapsed

    first = plan_node("n1", tasks, driver.containers(), now=NOW)
    apply(first, driver, tasks)
    second = plan_node("n1", tasks, driver.containers(), now=NOW)
    assert not second.has_actions, second
    apply(second, driver, tasks)
    assert plan_node("n1", tasks, driver.containers(), now=NOW).empty

    live = {t["metadata"]["uid"]: t for t in tasks}
    by_uid: dict[str, int] = {}
    for c in driver.containers():
        by_uid[c.task_uid] = by_uid.get(c.task_uid, 0) + 1
        t = live[c.task_uid]  # no orphan survives
        assert t["status"].get("node") == "n1" and "deletionTimestamp" not in t["metadata"]
        if c.state == "running":
            assert t["status"]["phase"] == "Running"
            assert c.cpuset == t["status"]["cpuset"]
    assert all(n == 1 for n in by_uid.values())
    for t, s in zip(tasks, scenarios, strict=True):
        if s["phase"] in ("Succeeded", "Failed"):
            assert t["status"]["phase"] == s["phase"], "a finished phase never changes"
