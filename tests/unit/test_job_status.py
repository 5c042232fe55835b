"""The job controller's pure core: task naming, restart decisions, the plan, status, Events."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmapply.api.admission import admit, validate_object
from swarmapply.api.names import dns1123_label_error
from swarmapply.controllers import job_status as js
from swarmapply.controllers import job_tasks as jt

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
LATER = NOW + timedelta(seconds=30)
T_NOW = "2026-01-02T03:04:05Z"
T_LATER = "2026-01-02T03:04:35Z"

label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)


def make_job(
    tasks: tuple[str, ...] = ("a", "b"), status: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    manifest = {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Job",
        "metadata": {"name": "web"},
        "spec": {
            "tasks": [{"name": t, "image": "busybox", "memory": "10m"} for t in tasks],
            **spec,
        },
    }
    import json

    (admitted,) = admit([("job", json.dumps(manifest))])
    job = admitted.obj
    job["metadata"].update(uid="job-uid", generation=1, resourceVersion="1")
    if status is not None:
        job["status"] = status
    return job


def task(
    job: dict[str, Any],
    entry: str,
    phase: str | None = None,
    attempt: int = 0,
    failures: int = 0,
    **status: Any,
) -> dict[str, Any]:
    (spec_entry,) = [e for e in job["spec"]["tasks"] if e["name"] == entry]
    obj = jt.build_task(job, spec_entry, attempt, failures)
    obj["metadata"]["resourceVersion"] = "5"
    if phase is not None:
        status = {"phase": phase, **status}
        if phase != "Pending":
            status.setdefault("node", "n1")
    if status:
        obj["status"] = status
    return obj


# ------------------------------------------------------------------------------- naming


def test_short_names_are_job_dash_task() -> None:
    assert jt.task_name("web", "db") == "web-db"
    assert jt.task_name("a" * 31, "b" * 31) == "a" * 31 + "-" + "b" * 31  # exactly 63


def test_long_names_and_later_attempts_carry_a_hash() -> None:
    long = jt.task_name("a" * 40, "b" * 40)
    assert len(long) == 63 and long.startswith("a" * 40 + "-bbb")
    assert jt.task_name("web", "db", 1).startswith("web-db-")
    assert jt.task_name("web", "db", 1) != jt.task_name("web", "db", 2)
    assert len(jt.task_name("web", "db", 1)) == len("web-db-") + 10
    # A prefix ending in '-' loses it, so the label stays valid.
    name = jt.task_name("a" * 51, "bb")
    assert name.startswith("a" * 51 + "-") and dns1123_label_error(name) is None
    with pytest.raises(ValueError, match="attempt"):
        jt.task_name("web", "db", -1)


@given(job=label, task=label, attempt=st.integers(min_value=0, max_value=10**6))
def test_names_are_bounded_valid_and_deterministic(job: str, task: str, attempt: int) -> None:
    name = jt.task_name(job, task, attempt)
    assert len(name) <= 63
    assert dns1123_label_error(name) is None
    assert name == jt.task_name(job, task, attempt)
    if attempt:
        assert name != jt.task_name(job, task, 0)
        assert name[-11] == "-" and all(c in "0123456789abcdef" for c in name[-10:])


# ----------------------------------------------------------------------------- task objects


def test_task_objects_are_valid_tasks_with_owner_labels_and_spec() -> None:
    job = make_job(priority=5, restartPolicy="OnFailure", network={"name": "net"})
    job["spec"]["tasks"][0].update(
        command=["sleep", "1"], environment={"A": "1"}, node="n1", cpuset="0-1", cores=2
    )
    obj = jt.build_task(job, job["spec"]["tasks"][0], attempt=2, failures=1)
    assert validate_object(obj) == []
    meta = obj["metadata"]
    assert meta["name"] == jt.task_name("web", "a", 2)
    assert meta["labels"] == {"swarmapply.io/job": "web", "swarmapply.io/task": "a"}
    assert meta["annotations"] == {"swarmapply.io/attempt": "2", "swarmapply.io/failures": "1"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "swarmapply.io/v1",
            "kind": "Job",
            "name": "web",
            "uid": "job-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert obj["spec"] == {
        "job": "web",
        "image": "busybox",
        "command": ["sleep", "1"],
        "cores": 2,
        "memory": 10 * 1024 * 1024,
        "node": "n1",
        "cpuset": "0-1",
        "environment": {"A": "1"},
        "network": "net",
        "priority": 5,
        "restartPolicy": "OnFailure",
    }
    assert jt.attempt_of(obj) == 2 and jt.failures_of(obj) == 1 and jt.task_key(obj) == "a"


def test_network_defaults_to_the_job_name() -> None:
    job = make_job()
    del job["spec"]["network"]
    assert jt.task_spec(job, job["spec"]["tasks"][0])["network"] == "web"


def test_the_simulated_duration_is_copied_for_the_sim_driver() -> None:
    job = make_job()
    assert "simulation" not in jt.task_spec(job, job["spec"]["tasks"][0])
    job["spec"]["simulation"] = {"duration": 30, "submitAt": 5}
    spec = jt.task_spec(job, job["spec"]["tasks"][0])
    assert spec["simulation"] == {"duration": 30}  # submitAt matters only to simulate
    task = {"apiVersion": "swarmapply.io/v1", "kind": "Task", "metadata": {"name": "web-a"}}
    assert validate_object({**task, "spec": spec}) == []


# ------------------------------------------------------------------------- restart decisions


def live(job: dict[str, Any], *tasks: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return jt.live_tasks(job, list(tasks))


@pytest.mark.parametrize(
    ("policy", "limit", "phase", "failures", "replace", "restarts", "give_up"),
    [
        ("Never", None, "Failed", 0, (), 0, "TaskFailed"),
        ("Never", None, "Succeeded", 0, (), 0, None),
        ("OnFailure", None, "Failed", 0, ("a",), 1, None),
        ("OnFailure", None, "Failed", 5, ("a",), 6, None),  # the 6th restart is allowed
        ("OnFailure", None, "Failed", 6, (), 6, "BackoffLimitExceeded"),
        ("OnFailure", 0, "Failed", 0, (), 0, "BackoffLimitExceeded"),
        ("OnFailure", 2, "Succeeded", 1, (), 1, None),
        ("Always", 2, "Failed", 1, ("a",), 2, None),
        ("Always", 0, "Succeeded", 3, ("a",), 3, None),  # successes are not failures
        ("OnFailure", None, "Running", 2, (), 2, None),
    ],
)
def test_restart_decision(
    policy: str,
    limit: int | None,
    phase: str,
    failures: int,
    replace: tuple[str, ...],
    restarts: int,
    give_up: str | None,
) -> None:
    spec: dict[str, Any] = {"restartPolicy": policy}
    if limit is not None:
        spec["backoffLimit"] = limit
    job = make_job(("a", "b"), **spec)
    decision = jt.restart_decision(
        job, live(job, task(job, "a", phase, failures=failures), task(job, "b", "Running"))
    )
    assert decision.replace == replace
    assert decision.restarts == restarts
    assert (decision.give_up or (None,))[0] == give_up


def test_failures_on_all_tasks_count_together_and_messages_name_the_task() -> None:
    job = make_job(("a", "b"), restartPolicy="OnFailure", backoffLimit=2)
    tasks = live(job, task(job, "a", "Failed", failures=1, exitCode=3), task(job, "b", "Failed"))
    decision = jt.restart_decision(job, tasks)
    assert decision.replace == ()
    assert decision.give_up is not None
    reason, message = decision.give_up
    assert reason == "BackoffLimitExceeded"
    assert "task a (Task web-a) failed with exit code 3" in message
    assert "3 failures exceed spec.backoffLimit 2" in message


def test_the_failure_message_gives_the_tasks_reason() -> None:
    job = make_job(("a",), restartPolicy="Never")
    pulled = live(job, task(job, "a", "Failed", reason="ImagePullFailed"))
    assert jt.restart_decision(job, pulled).give_up == (
        "TaskFailed",
        "task a (Task web-a) failed (ImagePullFailed); restartPolicy is Never",
    )
    oom = live(job, task(job, "a", "Failed", exitCode=137, reason="OOMKilled"))
    assert "failed with exit code 137 (OOMKilled)" in str(jt.restart_decision(job, oom).give_up)
    plain = live(job, task(job, "a", "Failed", exitCode=1, reason="Error"))
    assert "failed with exit code 1;" in str(jt.restart_decision(job, plain).give_up)


def test_a_finished_job_restarts_nothing() -> None:
    job = make_job(("a",), restartPolicy="Always", status={"phase": "Failed"})
    decision = jt.restart_decision(job, live(job, task(job, "a", "Failed")))
    assert decision == jt.RestartDecision((), 1, 0, None)


# ------------------------------------------------------------------------------------ plan


def names(objs: list[dict[str, Any]]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def test_plan_creates_missing_tasks_and_nothing_when_all_exist() -> None:
    job = make_job()
    plan = jt.plan_tasks(job, [])
    assert names(plan.create) == ["web-a", "web-b"]
    assert plan.created_missing == ["web-a", "web-b"]
    existing = [task(job, "a"), task(job, "b")]
    again = jt.plan_tasks(job, existing)
    assert again.empty
    assert names(again.after) == ["web-a", "web-b"]


def test_plan_replaces_a_failed_task_before_deleting_it() -> None:
    job = make_job(restartPolicy="OnFailure")
    failed = task(job, "a", "Failed", exitCode=1)
    plan = jt.plan_tasks(job, [failed, task(job, "b", "Running")])
    (new,) = plan.create
    assert new["metadata"]["name"] == jt.task_name("web", "a", 1)
    assert new["metadata"]["annotations"]["swarmapply.io/failures"] == "1"
    assert names(plan.delete) == ["web-a"]
    assert plan.replacements[0].why == "failed with exit code 1"
    # Killed after the create: the rerun only deletes the old attempt.
    rerun = jt.plan_tasks(job, [failed, new, task(job, "b", "Running")])
    assert rerun.create == [] and names(rerun.delete) == ["web-a"]


def test_plan_restarts_succeeded_tasks_under_always_without_counting_a_failure() -> None:
    job = make_job(restartPolicy="Always")
    done, failed = task(job, "a", "Succeeded", failures=1), task(job, "b", "Failed")
    plan = jt.plan_tasks(job, [done, failed])
    assert names(plan.create) == [jt.task_name("web", "a", 1), jt.task_name("web", "b", 1)]
    assert [jt.failures_of(t) for t in plan.create] == [1, 1]
    assert [r.why for r in plan.replacements] == ["succeeded (restartPolicy Always)", "failed"]
    assert names(plan.delete) == ["web-a", "web-b"] and plan.created_missing == []


def test_plan_deletes_removed_entries_and_leftovers_of_an_earlier_job() -> None:
    job = make_job(("a",))
    old = make_job(("a", "b"))
    old["metadata"]["uid"] = "old-uid"
    stale = task(old, "a")
    stale["metadata"]["name"] = "web-a-old"
    orphan = task(old, "b")
    orphan["metadata"]["name"] = "web-b-orphan"
    orphan["metadata"]["ownerReferences"] = []  # deliberately orphaned: left alone
    plan = jt.plan_tasks(job, [task(job, "a"), task(make_job(("a", "b")), "b"), stale, orphan])
    assert names(plan.delete) == ["web-b"]
    assert names(plan.leftovers) == ["web-a-old"]
    assert plan.create == []


def test_plan_updates_pending_tasks_and_replaces_bound_ones() -> None:
    job = make_job()
    pending, bound = task(job, "a"), task(job, "b", "Running")
    job["spec"]["tasks"][0]["image"] = "busybox:2"
    job["spec"]["tasks"][1]["image"] = "busybox:2"
    plan = jt.plan_tasks(job, [pending, bound])
    assert names(plan.update) == ["web-a"]
    assert plan.update[0]["spec"]["image"] == "busybox:2"
    assert plan.update[0]["metadata"]["resourceVersion"] == "5"  # compare-and-swap
    assert names(plan.create) == [jt.task_name("web", "b", 1)]
    assert plan.replacements[0].why == "spec changed"
    assert names(plan.delete) == ["web-b"]


def test_priority_changes_are_made_in_place_even_on_running_tasks() -> None:
    job = make_job()
    running = task(job, "a", "Running")
    job["spec"]["priority"] = 9
    assert jt.spec_change(running, jt.task_spec(job, job["spec"]["tasks"][0])) == "update"
    assert jt.spec_change(task(job, "a", "Succeeded"), {"image": "x"}) == "none"


def test_plan_of_a_finished_job_creates_nothing() -> None:
    job = make_job(restartPolicy="OnFailure", status={"phase": "Failed"})
    plan = jt.plan_tasks(job, [task(job, "a", "Failed")])
    assert plan.empty


def test_a_new_attempt_goes_past_a_terminating_one() -> None:
    job = make_job(("a",))
    going = task(job, "a", "Running", attempt=3)
    going["metadata"]["deletionTimestamp"] = T_NOW
    plan = jt.plan_tasks(job, [going])
    assert names(plan.create) == [jt.task_name("web", "a", 4)]
    assert plan.delete == []


# ---------------------------------------------------------------------------------- status


def status_of(job: dict[str, Any], *tasks: dict[str, Any], now: datetime = NOW) -> dict[str, Any]:
    return js.aggregate(job, list(tasks), now)


@pytest.mark.parametrize(
    ("phases", "expected", "ready", "succeeded"),
    [
        ((None, None), "Pending", 0, 0),
        (("Scheduled", None), "Pending", 0, 0),
        (("Scheduled", "Scheduled"), "Scheduled", 0, 0),
        (("Running", "Scheduled"), "Scheduled", 1, 0),
        (("Running", "Running"), "Running", 2, 0),
        (("Running", "Succeeded"), "Running", 1, 1),
        (("Succeeded", "Succeeded"), "Succeeded", 0, 2),
        (("Failed", "Running"), "Failed", 1, 0),
    ],
)
def test_phase_table(
    phases: tuple[str | None, str | None], expected: str, ready: int, succeeded: int
) -> None:
    job = make_job()
    status = status_of(job, task(job, "a", phases[0]), task(job, "b", phases[1]))
    assert status["phase"] == expected
    assert status["tasksTotal"] == 2
    assert status["tasksReady"] == ready
    assert status["tasksSucceeded"] == succeeded
    assert status["tasksFailed"] == (1 if expected == "Failed" else 0)
    assert status["observedGeneration"] == 1
    assert validate_object({**job, "status": status}) == []


def test_missing_tasks_are_pending_and_a_replaced_failure_is_not_a_job_failure() -> None:
    job = make_job(restartPolicy="OnFailure")
    assert status_of(job)["phase"] == "Pending"
    status = status_of(job, task(job, "a", "Failed", failures=2), task(job, "b", "Running"))
    assert status["phase"] == "Pending"
    assert status["restarts"] == 3 and status["tasksFailed"] == 0


def test_unschedulable_message_is_copied_while_pending() -> None:
    job = make_job()
    waiting = task(job, "b")
    message = "0/5 nodes can run task b: 3 have too few free cores, 2 are cordoned"
    waiting["status"] = {
        "conditions": [
            {"type": "Scheduled", "status": "False", "reason": "Unschedulable", "message": message}
        ]
    }
    status = status_of(job, task(job, "a", "Scheduled"), waiting)
    assert status["phase"] == "Pending"
    assert status["reason"] == "Unschedulable" and status["message"] == message
    scheduled = status["conditions"][0]
    assert scheduled == {
        "type": "Scheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastTransitionTime": T_NOW,
    }


def test_times_and_conditions_are_kept_across_reconciles() -> None:
    job = make_job()
    running = status_of(job, task(job, "a", "Running"), task(job, "b", "Running"))
    assert running["startTime"] == T_NOW
    assert running["conditions"][0]["lastTransitionTime"] == T_NOW
    job["status"] = running
    again = status_of(job, task(job, "a", "Running"), task(job, "b", "Running"), now=LATER)
    assert again == running  # nothing changed: nothing to write
    done = status_of(job, task(job, "a", "Succeeded"), task(job, "b", "Succeeded"), now=LATER)
    assert done["phase"] == "Succeeded"
    assert done["startTime"] == T_NOW and done["completionTime"] == T_LATER
    assert done["conditions"] == [
        {**running["conditions"][0]},
        {
            "type": "Complete",
            "status": "True",
            "reason": "Completed",
            "message": "all 2 tasks succeeded",
            "lastTransitionTime": T_LATER,
        },
    ]
    job["status"] = done
    # A finished job keeps phase, times and conditions whatever its tasks do later.
    later = status_of(job, task(job, "b", "Succeeded"), now=LATER + timedelta(hours=1))
    assert {k: later[k] for k in ("phase", "startTime", "completionTime", "conditions")} == {
        k: done[k] for k in ("phase", "startTime", "completionTime", "conditions")
    }
    assert later["tasksSucceeded"] == 1


def test_start_time_from_tasks_when_finishing_without_being_seen_running() -> None:
    job = make_job(("a",))
    status = status_of(job, task(job, "a", "Succeeded", startTime="2026-01-01T00:00:00Z"))
    assert status["startTime"] == "2026-01-01T00:00:00Z"
    assert status["completionTime"] == T_NOW


def test_failed_status_says_why() -> None:
    job = make_job(("a",))
    status = status_of(job, task(job, "a", "Failed", exitCode=137))
    assert status["phase"] == "Failed" and status["reason"] == "TaskFailed"
    assert "exit code 137" in status["message"]
    assert status["conditions"][-1]["type"] == "Failed"
    assert status["completionTime"] == T_NOW


def test_scheduled_condition_flips_once() -> None:
    job = make_job(("a",))
    pending = status_of(job, task(job, "a"))
    assert pending["conditions"][0]["status"] == "False"
    job["status"] = pending
    scheduled = status_of(job, task(job, "a", "Scheduled"), now=LATER)
    assert scheduled["conditions"][0]["status"] == "True"
    assert scheduled["conditions"][0]["lastTransitionTime"] == T_LATER
    job["status"] = scheduled
    running = status_of(job, task(job, "a", "Running"), now=LATER + timedelta(seconds=9))
    assert running["conditions"][0]["lastTransitionTime"] == T_LATER


def test_conditions_are_exactly_the_jobs_and_keep_their_transition_time() -> None:
    job = make_job(("a",))
    job["status"] = {
        "phase": "Scheduled",
        "conditions": [
            {"type": "Other", "status": "True", "lastTransitionTime": T_NOW},
            {"type": "Scheduled", "status": "True", "reason": "X", "lastTransitionTime": T_NOW},
        ],
    }
    status = status_of(job, task(job, "a", "Running"), now=LATER)
    assert status["conditions"] == [
        {
            "type": "Scheduled",
            "status": "True",
            "reason": "Scheduled",
            "message": "all 1 tasks are placed",
            "lastTransitionTime": T_NOW,
        }
    ]


# ---------------------------------------------------------------------------------- events


def test_phase_events_only_on_transitions() -> None:
    assert js.phase_events({}, {"phase": "Pending"}) == []
    assert js.phase_events({"phase": "Scheduled"}, {"phase": "Running", "tasksTotal": 2}) == [
        ("Normal", "Running", "all 2 tasks are running or done")
    ]
    assert js.phase_events({"phase": "Running"}, {"phase": "Running"}) == []
    assert js.phase_events(None, {"phase": "Failed", "reason": "TaskFailed", "message": "x"}) == [
        ("Warning", "TaskFailed", "x")
    ]
    assert js.phase_events({"phase": "Running"}, {"phase": "Succeeded"})[0][1] == "Completed"


# --------------------------------------------------------------------------------------- ttl


def test_ttl_remaining() -> None:
    job = make_job(ttlSecondsAfterFinished=60)
    assert js.ttl_remaining(job, NOW) is None
    job["status"] = {"phase": "Succeeded", "completionTime": T_NOW}
    assert js.ttl_remaining(job, LATER) == 30.0
    assert js.ttl_remaining(job, NOW + timedelta(seconds=61)) == -1.0
    no_ttl = copy.deepcopy(job)
    del no_ttl["spec"]["ttlSecondsAfterFinished"]
    assert js.ttl_remaining(no_ttl, LATER) is None


@pytest.mark.parametrize(
    ("completion", "remaining"),
    [
        ("2026-01-02T04:04:05+01:00", 30.0),  # an offset is honoured
        ("2026-01-02T03:04:05.750Z", 30.75),  # fractions of a second count
        ("2026-01-02T03:04:05", 30.0),  # no zone: UTC
        ("yesterday", None),
        ("", None),
    ],
)
def test_ttl_reads_rfc3339_completion_times(completion: str, remaining: float | None) -> None:
    job = make_job(ttlSecondsAfterFinished=60)
    job["status"] = {"phase": "Failed", "completionTime": completion}
    assert js.ttl_remaining(job, LATER) == remaining


def test_cores_and_memory_changes_are_live_resizes_but_a_new_node_replaces() -> None:
    job = make_job()
    running = task(job, "a", "Running")
    entry = job["spec"]["tasks"][0]
    entry["cores"], entry["memory"] = 2, 1 << 28
    assert jt.spec_change(running, jt.task_spec(job, entry)) == "update"
    entry["cpuset"] = "0-1"
    assert jt.spec_change(running, jt.task_spec(job, entry)) == "update"
    entry["node"] = "elsewhere"
    assert jt.spec_change(running, jt.task_spec(job, entry)) == "replace"
