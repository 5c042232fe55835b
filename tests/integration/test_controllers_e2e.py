"""End to end: real ``swarmapply controllers`` processes on a real store, killed and restarted.

Nodes are declared as their agents would register them (``scheduler_objects``), Jobs are
applied with the command line, and the job controller and the scheduler run as subprocesses
of ``swarmapply controllers`` exactly as an operator would start them. Task phases are moved
by hand, as a node agent would report them. The tests check what a user of the cluster relies
on: every Job gets all its Tasks, every Task that fits is bound, a Job that waits says why,
and no core is ever given twice, also when the controllers are killed with SIGKILL at random
moments and started again, or when the active one of two processes dies and the other takes
over.

Every check polls the store with a deadline (:func:`eventually`); sleeps only choose random
kill moments. Every process a test starts is killed and reaped by the test, by its own pid.

On MongoDB every store call is at least one round trip to the server, and a watch makes one
per change, so the controllers converge far more slowly there than on SQLite (on FerretDB,
about a minute for 30 jobs); the kill-and-restart run uses fewer jobs on that backend.
"""

from __future__ import annotations

import io
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarmapply.api.quantity import format_cpuset, parse_cpuset
from swarmapply.api.store import NotFound, Store
from swarmapply.cli.context import Context
from swarmapply.cli.main import main
from tests.integration.helpers import ControllersProcess, Fleet, eventually
from tests.integration.scheduler_objects import (
    GI,
    MI,
    TASK_LABEL,
    add_node,
    assert_allocation_invariant,
    job_object,
    set_phase,
    task_entry,
)

Object = dict[str, Any]

FINISHED = ("Succeeded", "Failed")
CONTROLLERS = ("job", "scheduler")
#: These tests are about placement and failover; the deployer (Docker networks) stays out.
ONLY = ("--only", ",".join(CONTROLLERS))


def lease_holder(store: Store, controller: str) -> str:
    """The holder of ``controller``'s Lease ("" when there is none or it is released)."""
    try:
        lease = store.get("Lease", f"controller-{controller}")
    except NotFound:
        return ""
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def identity_pid(identity: str) -> int | None:
    """The pid in a default identity ``<hostname>-<pid>-<suffix>``, else None."""
    parts = identity.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def leads(store: Store, process: ControllersProcess, controller: str) -> bool:
    return identity_pid(lease_holder(store, controller)) == process.pid


def leads_or_died(store: Store, process: ControllersProcess) -> bool:
    """Whether ``process`` leads every controller, or has exited (for the caller to see)."""
    return all(leads(store, process, c) for c in CONTROLLERS) or not process.alive()


# ------------------------------------------------------------------------- store helpers


def apply(store_url: str, directory: Path, jobs: Sequence[Object]) -> None:
    """``swarmapply --store URL -f FILE`` with the jobs as one multi-document YAML file."""
    path = directory / f"apply-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump_all(jobs, sort_keys=False))
    out, err = io.StringIO(), io.StringIO()
    code = main(["--store", store_url, "-f", str(path)], Context(stdout=out, stderr=err))
    assert code == 0, f"apply failed ({code}): {out.getvalue()}{err.getvalue()}"


def job_status(store: Store, name: str) -> Object:
    status: Object = store.get("Job", name).get("status") or {}
    return status


def tasks_of(store: Store, job: str) -> list[Object]:
    return list(store.list("Task", field_selector=f"spec.job={job}").items)


def is_live(task: Object) -> bool:
    return (
        not task["metadata"].get("deletionTimestamp")
        and (task.get("status") or {}).get("phase") not in FINISHED
    )


def assert_job_bound(store: Store, name: str) -> None:
    """Job ``name`` is Scheduled and each of its entries has one Task, bound and owned."""
    assert_jobs_bound(store, [name])


def assert_jobs_bound(store: Store, names: Sequence[str]) -> None:
    """:func:`assert_job_bound` for each of ``names``, from one listing of Jobs and Tasks."""
    jobs = {j["metadata"]["name"]: j for j in store.list("Job").items}
    tasks_by_job: dict[str, list[Object]] = defaultdict(list)
    for task in store.list("Task").items:
        tasks_by_job[task["spec"]["job"]].append(task)
    for name in names:
        assert name in jobs, f"job {name} does not exist"
        job = jobs[name]
        status = job.get("status") or {}
        assert status.get("phase") == "Scheduled", f"job {name}: {status}"
        entries = {t["name"]: t for t in job["spec"]["tasks"]}
        tasks = tasks_by_job[name]
        assert sorted(t["metadata"]["labels"][TASK_LABEL] for t in tasks) == sorted(entries)
        for task in tasks:
            entry = entries[task["metadata"]["labels"][TASK_LABEL]]
            [owner] = task["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["name"], owner["uid"]) == (
                "Job",
                name,
                job["metadata"]["uid"],
            )
            assert owner.get("controller") is True
            st = task.get("status") or {}
            assert st.get("phase") == "Scheduled", f"task {task['metadata']['name']}: {st}"
            assert st.get("node"), task
            assert len(parse_cpuset(st["cpuset"])) == entry["cores"], st
            assert st.get("memory") == entry["memory"], st


def unfinished(store: Store, jobs: Sequence[Object]) -> int:
    """How many of ``jobs`` are not (yet) Scheduled."""
    phases = {
        j["metadata"]["name"]: (j.get("status") or {}).get("phase") for j in store.list("Job").items
    }
    return sum(phases.get(j["metadata"]["name"]) != "Scheduled" for j in jobs)


def progress(store: Store) -> tuple[int, int]:
    """How many Tasks exist and how many of them are bound."""
    tasks = store.list("Task").items
    return len(tasks), sum(bool((t.get("status") or {}).get("node")) for t in tasks)


def progress_since(store: Store, before: tuple[int, int], process: ControllersProcess) -> bool:
    """Whether :func:`progress` moved on from ``before``, or ``process`` has exited."""
    return progress(store) != before or not process.alive()


def assert_allocations_match(store: Store) -> None:
    """Each Node's ``status.allocated`` is exactly what its live bound tasks hold."""
    held: dict[str, list[Object]] = defaultdict(list)
    for task in store.list("Task").items:
        st = task.get("status") or {}
        if is_live(task) and st.get("node"):
            held[st["node"]].append(task)
    for node in store.list("Node").items:
        name = node["metadata"]["name"]
        allocated = (node.get("status") or {}).get("allocated") or {}
        tasks = held.get(name, [])
        cores = set().union(*(parse_cpuset(t["status"]["cpuset"]) for t in tasks))
        expected = {
            (t["metadata"]["name"], format_cpuset(parse_cpuset(t["status"]["cpuset"])))
            for t in tasks
        }
        shown = {(e["task"], e["cpuset"]) for e in allocated.get("tasks", [])}
        assert shown == expected, (
            f"node {name}: allocated {sorted(shown)}, bound {sorted(expected)}"
        )
        assert allocated.get("cores", 0) == len(cores), f"node {name}: {allocated}"
        assert allocated.get("cpuset", "") == format_cpuset(cores), f"node {name}: {allocated}"
        memory = sum(int(t["status"]["memory"]) for t in tasks)
        assert allocated.get("memory", 0) == memory, f"node {name}: {allocated}"


def assert_sound(store: Store) -> None:
    """The allocation invariant now, and the Nodes' core maps once the scheduler caught up."""
    assert_allocation_invariant(store)
    eventually(lambda: assert_allocations_match(store), 10, "the Nodes' allocated views")
    assert_allocation_invariant(store)


# ---------------------------------------------------------------------------------- tests


def test_jobs_are_bound_wait_with_a_reason_and_run_when_cores_free_up(
    store_url: str, tmp_path: Path, store: Store
) -> None:
    add_node(store, "node-1", 4, 8 * GI)
    add_node(store, "node-2", 4, 8 * GI)
    with Fleet(tmp_path, *ONLY, "--store", store_url, "--lease-duration", "2") as fleet:
        process = fleet.start()
        # Two jobs fill both nodes (8 cores).
        apply(
            store_url,
            tmp_path,
            [
                job_object("a", [task_entry("x", 2), task_entry("y", 2, 128 * MI)]),
                job_object("b", [task_entry("x", 3), task_entry("y", 1)]),
            ],
        )
        for name in ("a", "b"):
            eventually(partial(assert_job_bound, store, name), 15, f"job {name} to be bound")
        assert_sound(store)

        # A third job does not fit: it waits and says why, in its Job, its Task and an Event.
        apply(store_url, tmp_path, [job_object("c", [task_entry("only", 2)])])
        message = "0/2 nodes can run task c-only of job c: 2 have too few free cores (need 2)"

        def waits() -> None:
            status = job_status(store, "c")
            assert status.get("phase") == "Pending", status
            assert status.get("reason") == "Unschedulable", status
            assert status.get("message") == message, status

        eventually(waits, 10, "job c to wait as Unschedulable")
        [task] = tasks_of(store, "c")
        assert not (task.get("status") or {}).get("node")
        [cond] = [c for c in task["status"]["conditions"] if c["type"] == "Scheduled"]
        assert (cond["status"], cond["reason"], cond["message"]) == (
            "False",
            "Unschedulable",
            message,
        )
        uid = store.get("Job", "c")["metadata"]["uid"]
        events = store.list("Event", field_selector=f"involvedObject.uid={uid}").items
        failed = [e for e in events if e["reason"] == "FailedScheduling"]
        assert [(e["type"], e["message"]) for e in failed] == [("Warning", message)]
        assert_sound(store)

        # Job a's tasks finish (as its agent reports): its cores go to job c.
        for task in tasks_of(store, "a"):
            set_phase(store, task["metadata"]["name"], "Succeeded")
        eventually(lambda: assert_job_bound(store, "c"), 10, "job c to be bound")
        eventually(
            lambda: job_status(store, "a").get("phase") == "Succeeded", 10, "job a to succeed"
        )
        assert job_status(store, "a")["reason"] == "Completed"
        assert "reason" not in job_status(store, "c")
        assert_job_bound(store, "b")
        assert_sound(store)
        assert process.alive(), fleet.logs()
        assert process.stop() == 0, fleet.logs()


@pytest.mark.parametrize(
    ("store_url", "count", "kill_count", "lease"),
    [
        ("sqlite", 30, 4, "1"),
        # Fewer jobs on MongoDB, where converging is much slower (see the module docstring).
        pytest.param("mongodb", 10, 2, "2", marks=[pytest.mark.mongodb, pytest.mark.slow]),
    ],
    indirect=["store_url"],
)
def test_killing_and_restarting_the_controllers_loses_and_duplicates_nothing(
    store_url: str,
    count: int,
    kill_count: int,
    lease: str,
    tmp_path: Path,
    open_test_store: Callable[[str], Store],
) -> None:
    rng = random.Random(20260412)
    jobs = [
        job_object(
            f"j-{i:02d}",
            [task_entry(f"t{k}", rng.choice((1, 2)), 32 * MI) for k in range(rng.randint(1, 3))],
        )
        for i in range(count)
    ]
    demand = sum(t["cores"] for j in jobs for t in j["spec"]["tasks"])
    # Greedy packing of 1- and 2-core tasks on 8-core nodes wastes at most a core per node,
    # so with one core in seven to spare every task fits; "huge" fits nowhere, ever.
    nodes = math.ceil(demand / 7) + 1
    huge = job_object("huge", [task_entry("t0", 9, 32 * MI)])
    store = open_test_store(store_url)
    for n in range(nodes):
        add_node(store, f"node-{n + 1}", 8, 4 * GI)
    kill_after = set(rng.sample(range(2, count), kill_count))
    kills = 0
    busy: list[int] = []
    with Fleet(tmp_path, *ONLY, "--store", store_url, "--lease-duration", lease) as fleet:
        process = fleet.start()
        apply(store_url, tmp_path, [huge])
        for i, job in enumerate(jobs):
            apply(store_url, tmp_path, [job])
            if i not in kill_after:
                continue
            # Kill while it works: when it has started on a backlog (jobs applied while it was
            # waiting for the Lease), or else once it leads, at a random moment after that.
            current = process
            if unfinished(store, jobs[: i + 1]):
                before = progress(store)
                eventually(
                    partial(progress_since, store, before, current),
                    15,
                    f"pid {current.pid} to start on its backlog",
                    interval=0.01,
                )
                delay = rng.uniform(0.0, 0.05)
            else:
                eventually(
                    partial(leads_or_died, store, current),
                    10,
                    f"pid {current.pid} to lead",
                )
                delay = rng.uniform(0.0, 0.3)
            assert current.alive(), fleet.logs()
            time.sleep(delay)  # a random kill moment, not a wait for a result
            current.kill()
            busy.append(unfinished(store, jobs[: i + 1]))
            kills += 1
            assert_allocation_invariant(store)
            process = fleet.start()

        final = process
        eventually(
            lambda: all(leads(store, final, c) for c in CONTROLLERS),
            10,
            f"the last process (pid {final.pid}) to lead",
        )
        names = [str(j["metadata"]["name"]) for j in jobs]

        def converged() -> None:
            assert_jobs_bound(store, names)
            status = job_status(store, "huge")
            assert (status.get("phase"), status.get("reason")) == ("Pending", "Unschedulable")

        eventually(converged, 45, "every job but huge to be bound", interval=0.2)
        assert kills == kill_count
        print(f"jobs not yet bound when each kill struck: {busy}")

        live = [t for t in store.list("Task").items if is_live(t)]
        pairs = Counter((t["spec"]["job"], t["metadata"]["labels"][TASK_LABEL]) for t in live)
        assert [p for p, n in pairs.items() if n > 1] == []
        expected = {
            (str(j["metadata"]["name"]), str(t["name"]))
            for j in [*jobs, huge]
            for t in j["spec"]["tasks"]
        }
        assert set(pairs) == expected
        job_uids = {j["metadata"]["uid"] for j in store.list("Job").items}
        assert all(t["metadata"]["ownerReferences"][0]["uid"] in job_uids for t in live)
        [huge_task] = tasks_of(store, "huge")
        assert not (huge_task.get("status") or {}).get("node")
        assert_sound(store)
        assert process.alive(), fleet.logs()
        assert process.stop() == 0, fleet.logs()


@pytest.mark.mongodb
def test_a_standby_process_takes_over_when_the_active_one_is_killed(
    mongodb_store_url: str,
    tmp_path: Path,
    open_test_store: Callable[[str], Store],
    record_property: Callable[[str, object], None],
) -> None:
    url = mongodb_store_url
    store = open_test_store(url)
    add_node(store, "node-1", 4, 8 * GI)
    add_node(store, "node-2", 4, 8 * GI)
    with Fleet(tmp_path, *ONLY, "--store", url, "--lease-duration", "2") as fleet:
        first = fleet.start()
        eventually(
            partial(leads_or_died, store, first),
            15,
            "the first process to lead",
        )
        second = fleet.start()
        apply(url, tmp_path, [job_object("a", [task_entry("x", 2), task_entry("y", 2)])])
        eventually(lambda: assert_job_bound(store, "a"), 15, "job a to be bound")
        eventually(
            lambda: all(f"lease controller-{c}: held by" in second.output() for c in CONTROLLERS),
            15,
            "the second process to follow",
        )
        assert all(leads(store, first, c) for c in CONTROLLERS)
        assert_sound(store)
        a_cores = {
            (t["status"]["node"], core)
            for t in tasks_of(store, "a")
            for core in parse_cpuset(t["status"]["cpuset"])
        }

        killed = time.monotonic()
        first.kill()
        apply(url, tmp_path, [job_object("b", [task_entry("x", 2), task_entry("y", 2)])])
        eventually(
            lambda: all(leads(store, second, c) for c in CONTROLLERS),
            10,
            "the second process to take over",
        )
        lease_takeover = time.monotonic() - killed
        eventually(lambda: assert_job_bound(store, "b"), 10, "job b to be bound")
        bound_after = time.monotonic() - killed
        record_property("lease_takeover_seconds", round(lease_takeover, 2))
        record_property("job_bound_after_kill_seconds", round(bound_after, 2))
        print(f"takeover: lease {lease_takeover:.2f}s, job b bound {bound_after:.2f}s after kill")
        # Lease 2 s (whole seconds) + a 0.5 s renew interval, plus scheduling.
        assert lease_takeover < 4.0
        assert bound_after < 5.0

        b_cores = {
            (t["status"]["node"], core)
            for t in tasks_of(store, "b")
            for core in parse_cpuset(t["status"]["cpuset"])
        }
        assert not a_cores & b_cores
        assert_job_bound(store, "a")
        assert_sound(store)
        output = second.output()
        for c in CONTROLLERS:
            assert f"lease controller-{c}: acquired by" in output
        assert second.stop() == 0, fleet.logs()
