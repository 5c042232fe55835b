"""Unit tests of the pruner's plan: each rule, and what must survive it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from swarmapply.agent.model import JOB_NAME, MANAGED_BY, MANAGER, NODE_NAME, TASK_OBJECT, TASK_UID
from swarmapply.controllers.prune_plan import (
    ContainerInfo,
    NetworkEntry,
    PrunerSettings,
    compaction_target,
    container_removals,
    event_removals,
    format_age,
    plan_prune,
)
from swarmapply.controllers.pruner import (
    container_from_listing,
    network_entry_from_listing,
)

Object = dict[str, Any]

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=timezone.utc)
HOUR = 3600.0


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def job(name: str, phase: str | None = "Running", *, ttl: int | None = None,
        completed: float | None = None, network: str | None = None) -> Object:  # fmt: skip
    spec: Object = {"tasks": []}
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    if network:
        spec["network"] = {"name": network}
    status: Object = {}
    if phase:
        status["phase"] = phase
    if completed is not None:
        status["completionTime"] = ago(completed)
    return {
        "kind": "Job",
        "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": "7"},
        "spec": spec,
        "status": status,
    }


def task(name: str, job_name: str, phase: str = "Running", *, finished: float | None = None,
         network: str | None = None) -> Object:  # fmt: skip
    status: Object = {"phase": phase, "node": "n1"}
    if finished is not None:
        status["finishTime"] = ago(finished)
    spec: Object = {"job": job_name, "image": "x"}
    if network:
        spec["network"] = network
    return {
        "kind": "Task",
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "ownerReferences": [{"kind": "Job", "name": job_name, "uid": f"uid-{job_name}"}],
        },
        "spec": spec,
        "status": status,
    }


def node(name: str) -> Object:
    return {"kind": "Node", "metadata": {"name": name}}


def container(cid: str, task_uid: str, state: str = "exited", *, node_name: str = "n1",
              ours: bool = True) -> ContainerInfo:  # fmt: skip
    labels = {TASK_UID: task_uid, TASK_OBJECT: "t", NODE_NAME: node_name}
    if ours:
        labels[MANAGED_BY] = MANAGER
    return ContainerInfo(id=cid * 16, name=f"c-{cid}", state=state, labels=labels)


def network(name: str, job_name: str, *, created: float = 10 * HOUR, ours: bool = True
            ) -> NetworkEntry:  # fmt: skip
    labels = {JOB_NAME: job_name}
    if ours:
        labels[MANAGED_BY] = MANAGER
    return NetworkEntry(id=f"net-{name}", name=name, labels=labels,
                        created=NOW - timedelta(seconds=created))  # fmt: skip


SETTINGS = PrunerSettings(finished_age=HOUR, event_age=HOUR, network_age=HOUR)


def names(removals: Any) -> list[str]:
    return [r.name for r in removals]


# --- containers -------------------------------------------------------------------------


def test_exited_container_of_a_task_finished_long_ago_is_removed() -> None:
    tasks = [task("a", "j", "Succeeded", finished=2 * HOUR)]
    plan = plan_prune(jobs=[job("j", "Succeeded")], tasks=tasks, nodes=[node("n1")],
                      containers=[container("1", "uid-a")], now=NOW, settings=SETTINGS)  # fmt: skip
    assert [r.id for r in plan.containers] == ["1" * 16]
    assert plan.containers[0].reason == "task a Succeeded 2h ago"
    assert (
        plan.containers[0].line() == f"removed container {'1' * 12} c-1 (task a Succeeded 2h ago)"
    )


def test_container_of_a_task_finished_recently_stays_for_its_logs() -> None:
    tasks = [task("a", "j", "Failed", finished=HOUR - 1)]
    removals = container_removals([container("1", "uid-a")], tasks, ["n1"], NOW, HOUR)
    assert removals == []


def test_finished_task_without_finish_time_is_kept() -> None:
    tasks = [task("a", "j", "Succeeded")]
    assert container_removals([container("1", "uid-a")], tasks, ["n1"], NOW, 0) == []


@pytest.mark.parametrize("state", ["running", "paused", "restarting"])
def test_active_container_of_a_finished_task_is_left_to_its_agent(state: str) -> None:
    tasks = [task("a", "j", "Succeeded", finished=2 * HOUR)]
    assert container_removals([container("1", "uid-a", state)], tasks, ["n1"], NOW, HOUR) == []


@pytest.mark.parametrize("phase", ["Pending", "Scheduled", "Running"])
@pytest.mark.parametrize("state", ["running", "exited", "created"])
def test_container_of_a_live_task_is_never_touched(phase: str, state: str) -> None:
    tasks = [task("a", "j", phase)]
    assert container_removals([container("1", "uid-a", state)], tasks, ["n1"], NOW, 0) == []


def test_container_of_a_task_being_deleted_is_left_to_its_agent() -> None:
    doomed = task("a", "j", "Succeeded", finished=2 * HOUR)
    doomed["metadata"]["deletionTimestamp"] = ago(1)
    assert container_removals([container("1", "uid-a")], [doomed], ["n1"], NOW, 0) == []


@pytest.mark.parametrize("state", ["running", "exited"])
def test_orphan_container_of_a_known_node_is_removed(state: str) -> None:
    removals = container_removals([container("1", "uid-gone", state)], [], ["n1"], NOW, HOUR)
    assert len(removals) == 1
    assert "orphan: no Task has uid uid-gone" in removals[0].reason
    assert state in removals[0].reason


def test_orphan_on_a_node_this_store_does_not_know_is_left_alone() -> None:
    orphan = container("1", "uid-gone", node_name="other-cluster")
    assert container_removals([orphan], [], ["n1"], NOW, HOUR) == []


def test_container_without_our_labels_is_never_touched() -> None:
    stranger = container("1", "uid-gone", ours=False)
    unlabelled = ContainerInfo(id="2" * 16, name="db", state="exited", labels={})
    assert container_removals([stranger, unlabelled], [], ["n1"], NOW, 0) == []


def test_container_with_our_label_but_no_task_uid_is_left_alone() -> None:
    odd = ContainerInfo("3" * 16, "x", "exited", {MANAGED_BY: MANAGER, NODE_NAME: "n1"})
    assert container_removals([odd], [], ["n1"], NOW, 0) == []


# --- jobs -------------------------------------------------------------------------------


def test_job_past_its_ttl_is_removed_and_its_finished_containers_with_it() -> None:
    jobs = [job("old", "Succeeded", ttl=60, completed=120)]
    tasks = [task("a", "old", "Succeeded", finished=120)]
    plan = plan_prune(jobs=jobs, tasks=tasks, nodes=[node("n1")],
                      containers=[container("1", "uid-a")], networks=[network("old", "old")],
                      now=NOW, settings=SETTINGS)  # fmt: skip
    assert names(plan.jobs) == ["old"]
    assert plan.jobs[0].resource_version == "7"
    assert "past ttlSecondsAfterFinished=60" in plan.jobs[0].reason
    assert [r.after_job for r in plan.containers] == ["old"]
    assert [(r.name, r.after_job) for r in plan.networks] == [("old", "old")]
    assert plan.removals[0].kind == "Job"  # carried out first


@pytest.mark.parametrize(
    "the_job",
    [
        job("j", "Succeeded", ttl=60, completed=30),  # not yet
        job("j", "Succeeded", completed=10 * HOUR),  # no TTL
        job("j", "Running", ttl=0),  # not finished
    ],
)
def test_jobs_not_due_are_kept(the_job: Object) -> None:
    assert plan_prune(jobs=[the_job], tasks=[], now=NOW, settings=SETTINGS).jobs == ()


def test_job_already_being_deleted_is_not_deleted_again() -> None:
    doomed = job("j", "Succeeded", ttl=0, completed=10)
    doomed["metadata"]["deletionTimestamp"] = ago(1)
    assert plan_prune(jobs=[doomed], tasks=[], now=NOW, settings=SETTINGS).jobs == ()


def test_running_container_of_an_expiring_job_is_left_to_its_agent() -> None:
    jobs = [job("old", "Failed", ttl=0, completed=10)]
    tasks = [task("a", "old", "Running")]
    plan = plan_prune(jobs=jobs, tasks=tasks, nodes=[node("n1")],
                      containers=[container("1", "uid-a", "running")], now=NOW,
                      settings=SETTINGS)  # fmt: skip
    assert names(plan.jobs) == ["old"]
    assert plan.containers == ()


# --- networks ---------------------------------------------------------------------------


def test_network_of_a_job_with_a_live_task_survives() -> None:
    jobs = [job("j", "Running")]
    tasks = [task("a", "j", "Running")]
    plan = plan_prune(jobs=jobs, tasks=tasks, networks=[network("j", "j")], now=NOW,
                      settings=SETTINGS)  # fmt: skip
    assert plan.networks == ()


def test_network_of_a_new_job_without_tasks_survives() -> None:
    plan = plan_prune(jobs=[job("j", None)], tasks=[], networks=[network("j", "j", created=0)],
                      now=NOW, settings=SETTINGS)  # fmt: skip
    assert plan.networks == ()


def test_network_of_a_finished_job_is_removed() -> None:
    jobs = [job("j", "Succeeded")]
    tasks = [task("a", "j", "Succeeded", finished=10)]
    plan = plan_prune(jobs=jobs, tasks=tasks, networks=[network("j", "j", created=0)], now=NOW,
                      settings=SETTINGS)  # fmt: skip
    assert [(r.name, r.id) for r in plan.networks] == [("j", "net-j")]
    assert plan.networks[0].reason == "job j is Succeeded and no live task uses it"


def test_network_of_a_gone_job_is_removed_once_old_enough() -> None:
    old = network("gone", "gone", created=2 * HOUR)
    young = network("young", "young", created=60)
    plan = plan_prune(jobs=[], tasks=[], networks=[old, young], now=NOW, settings=SETTINGS)
    assert names(plan.networks) == ["gone"]
    assert "job gone is gone" in plan.networks[0].reason


def test_network_used_by_another_live_job_survives_its_own_job() -> None:
    """The deployer reuses an existing network of the right name for another job."""
    jobs = [job("b", "Running", network="shared")]
    plan = plan_prune(jobs=jobs, tasks=[], networks=[network("shared", "a")], now=NOW,
                      settings=SETTINGS)  # fmt: skip
    assert plan.networks == ()


def test_network_named_by_a_live_task_survives() -> None:
    tasks = [task("x", "gone-job", "Running", network="net")]
    plan = plan_prune(jobs=[], tasks=tasks, networks=[network("net", "a")], now=NOW,
                      settings=SETTINGS)  # fmt: skip
    assert plan.networks == ()


def test_network_without_our_labels_is_never_touched() -> None:
    plan = plan_prune(jobs=[], tasks=[], networks=[network("bridge", "x", ours=False),
                      NetworkEntry("id", "plain", {MANAGED_BY: MANAGER})], now=NOW,
                      settings=SETTINGS)  # fmt: skip
    assert plan.networks == ()


def test_no_engine_means_no_engine_removals() -> None:
    plan = plan_prune(jobs=[], tasks=[], nodes=[node("n1")], containers=None, networks=None,
                      now=NOW, settings=SETTINGS)  # fmt: skip
    assert plan.empty


# --- events, checkpoints, compaction ----------------------------------------------------


def event(name: str, **times: str) -> Object:
    involved = {"kind": "Job", "name": "j"}
    meta = {"name": name, "resourceVersion": "3"}
    return {"kind": "Event", "metadata": meta, "involvedObject": involved, "reason": "Created",
            **times}  # fmt: skip


def test_old_events_go_recent_ones_stay() -> None:
    events = [
        event("old", firstTimestamp=ago(3 * HOUR), lastTimestamp=ago(2 * HOUR)),
        event("repeated", firstTimestamp=ago(3 * HOUR), lastTimestamp=ago(60)),
        event("first-only", firstTimestamp=ago(2 * HOUR)),
        event("no-time"),
    ]
    removals = event_removals(events, NOW, HOUR)
    assert names(removals) == ["old", "first-only"]
    assert removals[0].reason == "Created on Job j, last 2h ago"
    assert removals[0].resource_version == "3"


def checkpoint(name: str, task_name: str) -> Object:
    return {"kind": "Checkpoint", "metadata": {"name": name}, "spec": {"task": task_name}}


def test_checkpoints_of_gone_tasks_go() -> None:
    tasks = [task("a", "j")]
    plan = plan_prune(jobs=[job("j")], tasks=tasks, now=NOW, settings=SETTINGS,
                      checkpoints=[checkpoint("keep", "a"), checkpoint("stale", "b")])  # fmt: skip
    assert names(plan.checkpoints) == ["stale"]
    assert plan.checkpoints[0].reason == "its task b is gone"


def test_compaction_keeps_the_recent_history() -> None:
    assert compaction_target(25000, 10000) == 15000
    assert compaction_target(500, 10000) is None
    assert compaction_target(500, 0) is None
    assert compaction_target(None, 10) is None
    plan = plan_prune(jobs=[], tasks=[], now=NOW, settings=PrunerSettings(history_revisions=5),
                      revision=12)  # fmt: skip
    assert plan.compact_to == 7


# --- helpers ----------------------------------------------------------------------------


def test_settings_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="interval"):
        PrunerSettings(interval=0)
    with pytest.raises(ValueError, match="finished_age"):
        PrunerSettings(finished_age=-1)
    with pytest.raises(ValueError, match="history_revisions"):
        PrunerSettings(history_revisions=-1)


def test_format_age() -> None:
    assert [format_age(s) for s in (-3, 45, 120, 7300, 200000)] == ["0s", "45s", "2m", "2h", "2d"]


def test_engine_listings_are_translated() -> None:
    entry = {"Id": "abc", "Names": ["/t-1"], "State": "exited", "Labels": {MANAGED_BY: MANAGER}}
    assert container_from_listing(entry) == ContainerInfo("abc", "t-1", "exited",
                                                          {MANAGED_BY: MANAGER})  # fmt: skip
    net = network_entry_from_listing(
        {"Id": "n", "Name": "j", "Labels": None, "Created": "2026-01-02T11:00:00.123456789Z"}
    )
    assert net.created == NOW - timedelta(hours=1) + timedelta(microseconds=123456)
    assert net.labels == {}


def test_build_reaches_the_engine_as_the_deployer_does() -> None:
    from typing import cast

    from swarmapply.api.store import Store
    from swarmapply.controllers.pruner import DockerPruneEngine, Pruner, build
    from swarmapply.controllers.settings import ControllerSettings, DeployerSettings

    settings = ControllerSettings(deployer=DeployerSettings(docker_host="tcp://manager:2375"))
    pruner = build(cast(Store, object()), settings)  # nothing is contacted before a pass
    assert isinstance(pruner, Pruner) and pruner.name == "pruner"
    assert pruner.settings == PrunerSettings()
    assert isinstance(pruner.engine, DockerPruneEngine)
    assert pruner.engine.where == "tcp://manager:2375"
