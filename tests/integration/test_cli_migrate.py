"""migrate, update and checkpoint commands, and RESTfulSwarm requests given to ``apply -f``,
against a real store. No controllers run: the tests write the statuses the scheduler, the
migrator and the agents would write, to exercise ``--wait``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from swarmapply.api.admission import admit
from swarmapply.api.store import Store, open_store
from swarmapply.cli.main import main
from swarmapply.controllers.job_tasks import build_task

MI = 2**20
JOB = {
    "apiVersion": "swarmapply.io/v1",
    "kind": "Job",
    "metadata": {"name": "web"},
    "spec": {
        "tasks": [
            {"name": "server", "image": "busybox", "cores": 1, "memory": "64Mi"},
            {"name": "db", "image": "busybox", "cores": 2, "memory": "32Mi"},
        ]
    },
}


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An SQLite store, made the command line's default."""
    store_url = f"sqlite:///{tmp_path}/state.db"
    monkeypatch.setenv("SWARMAPPLY_STORE", store_url)
    return store_url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def add_node(store: Store, name: str) -> None:
    node = {"apiVersion": "swarmapply.io/v1", "kind": "Node", "metadata": {"name": name}}
    created = store.create({**node, "spec": {}})
    status = {"capacity": {"cores": 4, "memory": 8 * 2**30, "coreIds": [0, 1, 2, 3]}}
    store.update_status({**created, "status": status})


def cluster(url: str, bind: bool = True) -> None:
    """Nodes n1, n2; Job web with tasks web-server (n1, core 0) and web-db (n1, cores 1-2)."""
    with open_store(url) as store:
        add_node(store, "n1")
        add_node(store, "n2")
        job = store.create(admit([("job.json", json.dumps(JOB))])[0].obj)
        for entry, cpuset in zip(job["spec"]["tasks"], ("0", "1-2"), strict=True):
            task = store.create(build_task(job, entry))
            if bind:
                status = {
                    "phase": "Running",
                    "node": "n1",
                    "cpuset": cpuset,
                    "memory": entry["memory"],
                }
                store.update_status({**task, "status": status})
        store.update_status({**job, "status": {"phase": "Running"}})


def one(store: Store, kind: str) -> dict[str, Any]:
    items = store.list(kind).items
    assert len(items) == 1, items
    return items[0]


@pytest.fixture
def controller(url: str) -> Iterator[Callable[[Callable[[Store], bool]], None]]:
    """Starts a thread that calls ``step(store)`` until it returns True (plays a controller)."""
    threads: list[threading.Thread] = []
    stop = threading.Event()

    def start(step: Callable[[Store], bool]) -> None:
        def loop() -> None:
            with open_store(url) as store:
                deadline = time.monotonic() + 10
                while not stop.is_set() and time.monotonic() < deadline:
                    if step(store):
                        return
                    time.sleep(0.02)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    stop.set()
    for thread in threads:
        thread.join(5)


def phases(*statuses: dict[str, Any], kind: str = "Migration") -> Callable[[Store], bool]:
    """A controller step writing these statuses, one after another, to the one object."""
    left = list(statuses)

    def step(store: Store) -> bool:
        items = store.list(kind).items
        if not items:
            return False
        store.update_status({**items[0], "status": left.pop(0)})
        return not left

    return step


# ---------------------------------------------------------------------------- migrate


def test_migrate_task_creates_a_migration(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    cluster(url)
    code, out, err = run(capsys, "migrate", "task", "web-server", "--to", "n2", "--mode", "live")
    assert (code, err) == (0, "")
    with open_store(url) as store:
        migration = one(store, "Migration")
    name = migration["metadata"]["name"]
    assert name.startswith("web-server-")
    assert out == f"migration.swarmapply.io/{name} created\n"
    assert migration["spec"] == {"task": "web-server", "toNode": "n2", "mode": "live"}


def test_migrate_job_defaults_to_auto_and_any_node(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster(url)
    assert run(capsys, "migrate", "job", "web")[0] == 0
    with open_store(url) as store:
        assert one(store, "Migration")["spec"] == {"job": "web", "mode": "auto"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("task", "nope"), 'error: task "nope" not found'),
        (("job", "nope"), 'error: job "nope" not found'),
        (("task", "web-server", "--to", "n9"), 'error: --to: node "n9" not found'),
        (("task", "web-server", "--to", "n1"), 'already runs on node "n1"'),
        (("job", "web", "--to", "n1"), 'every task of job "web" already runs on "n1"'),
    ],
)
def test_migrate_checks_up_front(
    url: str, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    cluster(url)
    code, out, err = run(capsys, "migrate", *argv)
    assert code == 1 and out == ""
    assert message in err
    with open_store(url) as store:
        assert store.list("Migration").items == []


def test_migrate_refuses_unbound_tasks(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    cluster(url, bind=False)
    code, _, err = run(capsys, "migrate", "task", "web-server")
    assert code == 1 and 'task "web-server" is not bound to a node yet (phase Pending)' in err
    code, _, err = run(capsys, "migrate", "job", "web")
    assert code == 1 and 'job "web" has no task bound to a node' in err


def test_migrate_wait_prints_phases_until_succeeded(
    url: str, capsys: pytest.CaptureFixture[str], controller: Any
) -> None:
    cluster(url)
    move = {"task": "web-server", "sourceNode": "n1", "sourceCpuset": "0", "memory": 64 * MI}
    reserved = {**move, "targetNode": "n2", "targetCpuset": "3"}
    controller(
        phases(
            {"phase": "Reserved", "tasks": [reserved]},
            {"phase": "Checkpointing", "mode": "live", "tasks": [reserved]},
            {"phase": "Succeeded", "mode": "live", "tasks": [reserved], "timings": {"total": 2}},
        )
    )
    code, out, err = run(capsys, "migrate", "task", "web-server", "--to", "n2", "--wait")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].endswith(" created")
    assert lines[-1].endswith(" Succeeded (live; web-server: n1 -> n2 cores 3; 2.0s)")
    assert any(" Checkpointing (live;" in line for line in lines)


def test_migrate_wait_fails_with_the_reason(
    url: str, capsys: pytest.CaptureFixture[str], controller: Any
) -> None:
    cluster(url)
    controller(
        phases({"phase": "Failed", "reason": "Unschedulable", "message": "no node has 1 core"})
    )
    code, out, err = run(capsys, "migrate", "task", "web-server", "--wait", "--timeout", "10")
    assert code == 1
    assert out.splitlines()[-1].endswith(" Failed (Unschedulable: no node has 1 core)")
    assert "failed: Unschedulable: no node has 1 core" in err


def test_migrate_wait_times_out(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    cluster(url)
    code, _, err = run(capsys, "migrate", "task", "web-server", "--wait", "--timeout", "0.2")
    assert code == 1 and "timed out after 0.2s waiting for migration.swarmapply.io/" in err


def test_migrate_rejects_a_bad_timeout(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["migrate", "task", "x", "--timeout", "-1"])
    assert exited.value.code == 2
    assert "expected a number of seconds > 0" in capsys.readouterr().err


# ----------------------------------------------------------------------------- update


def job_entry(url: str, name: str) -> dict[str, Any]:
    with open_store(url) as store:
        job = store.get("Job", "web")
    entry: dict[str, Any] = next(e for e in job["spec"]["tasks"] if e["name"] == name)
    return entry


def test_update_task_writes_the_job_entry(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    cluster(url)
    code, out, err = run(capsys, "update", "task", "web-server", "--cores", "2", "--memory", "128m")
    assert (code, err) == (0, "")
    assert out == "task web-server resize requested: cores 1 -> 2, memory 64Mi -> 128Mi\n"
    entry = job_entry(url, "server")
    assert (entry["cores"], entry["memory"]) == (2, 128 * MI)
    code, out, _ = run(capsys, "update", "task", "web-server", "--cores", "2")
    assert code == 0 and "unchanged" in out


def test_update_cpuset_pins_the_entry_to_the_task_node(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster(url)
    code, out, _ = run(capsys, "update", "task", "web-db", "--cpuset", "1,2,3")
    assert code == 0
    assert out == "task web-db resize requested: cores 2 -> 3, cpuset - -> 1-3\n"
    entry = job_entry(url, "db")
    assert (entry["node"], entry["cpuset"], entry["cores"]) == ("n1", "1-3", 3)
    code, _, err = run(capsys, "update", "task", "web-db", "--cores", "2")
    assert code == 1 and "--cores: task 'db' is pinned to cpuset '1-3'" in err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        ((), 2, "give --cores N or --cpuset LIST"),
        (("--cores", "0"), 2, "--cores: expected a number of cores >= 1"),
        (("--cpuset", "x"), 2, "--cpuset:"),
        (("--memory", "lots"), 2, "--memory:"),
        (("--memory", "1m"), 1, "spec.tasks[0].memory: expected at least 6Mi"),
    ],
)
def test_update_rejects_bad_values(
    url: str, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], code: int, message: str
) -> None:
    cluster(url)
    result = run(capsys, "update", "task", "web-server", *argv)
    assert result[0] == code and message in result[2]
    assert job_entry(url, "server")["memory"] == 64 * MI


def test_update_wait_until_the_task_shows_it(
    url: str, capsys: pytest.CaptureFixture[str], controller: Any
) -> None:
    cluster(url)

    def scheduler(store: Store) -> bool:
        entry = next(e for e in store.get("Job", "web")["spec"]["tasks"] if e["name"] == "server")
        if entry["cores"] != 2:
            return False
        task = store.get("Task", "web-server")
        status = {**task["status"], "cpuset": "0,3", "memory": 128 * MI}
        store.update_status({**task, "status": status})
        return True

    controller(scheduler)
    argv = ("update", "task", "web-server", "--cores", "2", "--memory", "128Mi", "--wait")
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "task web-server resized: cpuset 0,3, memory 128Mi"


def test_update_wait_reports_a_refused_resize(
    url: str, capsys: pytest.CaptureFixture[str], controller: Any
) -> None:
    cluster(url)

    def scheduler(store: Store) -> bool:
        if job_entry(url, "server")["cores"] != 4:
            return False
        task = store.get("Task", "web-server")
        condition = {
            "type": "Resized",
            "status": "False",
            "reason": "DoesNotFit",
            "message": "node n1 has 1 free core",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
        store.update_status({**task, "status": {**task["status"], "conditions": [condition]}})
        return True

    controller(scheduler)
    code, _, err = run(capsys, "update", "task", "web-server", "--cores", "4", "--wait")
    assert code == 1
    assert "was not resized: DoesNotFit: node n1 has 1 free core" in err


# ------------------------------------------------------------------------- checkpoint


def test_checkpoint_wait_prints_path_and_size(
    url: str, capsys: pytest.CaptureFixture[str], controller: Any
) -> None:
    cluster(url)
    done = {"phase": "Succeeded", "node": "n1", "path": "/cp/x", "sizeBytes": 3 * MI}
    controller(phases({"phase": "Running", "node": "n1"}, done, kind="Checkpoint"))
    code, out, err = run(capsys, "checkpoint", "task", "web-server", "--stop", "--wait")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1].endswith(" Succeeded: /cp/x on node n1 (3Mi)")
    with open_store(url) as store:
        assert one(store, "Checkpoint")["spec"] == {"task": "web-server", "leaveRunning": False}


def test_checkpoint_failure_and_checks(
    url: str, capsys: pytest.CaptureFixture[str], controller: Any
) -> None:
    cluster(url)
    assert 'task "nope" not found' in run(capsys, "checkpoint", "task", "nope")[2]
    failed = {"phase": "Failed", "reason": "CheckpointUnsupported", "message": "sim driver"}
    controller(phases(failed, kind="Checkpoint"))
    code, _, err = run(capsys, "checkpoint", "task", "web-server", "--wait")
    assert code == 1 and "failed: CheckpointUnsupported: sim driver" in err
    with open_store(url) as store:
        assert one(store, "Checkpoint")["spec"]["leaveRunning"] is True


# ------------------------------------------------------------------ RESTfulSwarm -f


def write(tmp_path: Path, doc: Any) -> str:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_apply_migration_and_group_migration(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster(url)
    one_move = {"job": "web", "container": "server", "from": "n1@10.0.0.1", "to": "n2@10.0.0.2"}
    group = [one_move, {**one_move, "container": "db", "info": {}}]
    path = write(tmp_path, group)
    code, out, err = run(capsys, "-f", path)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 2 and all(line.endswith(" created") for line in lines)
    with open_store(url) as store:
        specs = sorted(m["spec"]["task"] for m in store.list("Migration").items)
        assert specs == ["web-db", "web-server"]
        assert {m["spec"]["toNode"] for m in store.list("Migration").items} == {"n2"}
    # The same requests again: the Migrations they made exist, nothing more is done.
    code, out, _ = run(capsys, "-f", path)
    assert code == 0 and out.count(" unchanged") == 2


def test_apply_migration_follows_the_live_attempt(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster(url)
    with open_store(url) as store:
        old = store.get("Task", "web-server")
        job = store.get("Job", "web")
        store.delete("Task", "web-server")
        newer = build_task(job, job["spec"]["tasks"][0], attempt=1)
        created = store.create(newer)
        store.update_status({**created, "status": {**old["status"]}})
    path = write(tmp_path, {"job": "web", "container": "server", "to": "n2"})
    assert run(capsys, "-f", path)[0] == 0
    with open_store(url) as store:
        assert one(store, "Migration")["spec"]["task"] == newer["metadata"]["name"]


def test_apply_migration_errors_name_file_document_and_field(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster(url)
    good = {"job": "web", "container": "server", "to": "n2"}
    docs = [
        {**good, "from": "n3@10.0.0.3"},
        {**good, "container": "cache"},
        {**good, "to": "n9"},
        {**good, "job": "nope"},
    ]
    path = write(tmp_path, docs)
    code, out, err = run(capsys, "-f", path)
    assert code == 1 and out == ""
    assert f'{path}: document 1: [0].from: task "web-server" runs on node "n1", not "n3"' in err
    assert f'{path}: document 1: [1].container: job "web" has no task "cache"' in err
    assert f'{path}: document 1: [2].to: node "n9" not found' in err
    assert f'{path}: document 1: [3].job: job "nope" not found' in err
    assert "nothing was changed: 4 errors" in err
    with open_store(url) as store:
        assert store.list("Migration").items == []


def test_apply_checkpoint_requests(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster(url)
    path = write(tmp_path, [{"node": "n1@10.0.0.1", "containers": ["server", "web-db"]}])
    code, out, err = run(capsys, "-f", path, "--dry-run")
    assert code == 0 and out.count("created (dry run)") == 2
    code, out, err = run(capsys, "-f", path)
    assert (code, err) == (0, "")
    with open_store(url) as store:
        tasks = sorted(c["spec"]["task"] for c in store.list("Checkpoint").items)
    assert tasks == ["web-db", "web-server"]
    bad = write(tmp_path, {"node": "n2", "containers": ["server"]})
    code, _, err = run(capsys, "-f", bad)
    assert code == 1
    assert f'{bad}: document 1: containers[0]: no running task "server" on node "n2"' in err


def test_apply_update_request_resizes_through_the_job(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster(url)
    doc = {
        "job": "web",
        "node": "n1",
        "container_name": "server",
        "cpuset_cpus": "0,3",
        "mem_limit": "20m",
    }
    code, out, err = run(capsys, "-f", write(tmp_path, doc))
    assert (code, err) == (0, "")
    assert out == (
        "job.swarmapply.io/web configured (task web-server: cores 1 -> 2,"
        " cpuset - -> 0,3, memory 64Mi -> 20Mi)\n"
    )
    entry = job_entry(url, "server")
    assert (entry["node"], entry["cpuset"], entry["memory"]) == ("n1", "0,3", 20 * MI)
    assert run(capsys, "-f", write(tmp_path, doc))[1] == "job.swarmapply.io/web unchanged\n"
    bad = write(tmp_path, {**doc, "node": "n2", "mem_limit": "1m"})
    code, _, err = run(capsys, "-f", bad)
    assert code == 1 and 'document 1: node: task "web-server" runs on node "n1", not "n2"' in err
    small = write(tmp_path, {**doc, "mem_limit": "1m"})
    code, _, err = run(capsys, "-f", small)
    assert code == 1
    assert "document 1: mem_limit: the job would be invalid: expected at least 6Mi" in err


@pytest.mark.mongodb
def test_requests_on_mongodb(
    mongodb_store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SWARMAPPLY_STORE", mongodb_store_url)
    cluster(mongodb_store_url)
    move = {"job": "web", "container": "server", "from": "n1", "to": "n2"}
    update = {"job": "web", "container_name": "db", "mem_limit": "48m"}
    code, out, err = run(capsys, "-f", write(tmp_path, [move, update]))
    assert (code, err) == (0, "")
    assert out.splitlines()[1] == (
        "job.swarmapply.io/web configured (task web-db: memory 32Mi -> 48Mi)"
    )
    code, out, _ = run(capsys, "checkpoint", "task", "web-server")
    assert code == 0 and out.startswith("checkpoint.swarmapply.io/web-server-")
    with open_store(mongodb_store_url) as store:
        assert one(store, "Migration")["spec"]["task"] == "web-server"
        assert job_entry(mongodb_store_url, "db")["memory"] == 48 * MI


# ---------------------------------------------------------------------- get, describe


def test_get_and_describe_a_migration_and_a_checkpoint(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster(url)
    run(capsys, "migrate", "task", "web-server", "--to", "n2")
    run(capsys, "checkpoint", "task", "web-db")
    with open_store(url) as store:
        migration = one(store, "Migration")
        move = {"task": "web-server", "sourceNode": "n1", "sourceCpuset": "0", "memory": 64 * MI}
        status = {
            "phase": "Failed",
            "mode": "cold",
            "tasks": [{**move, "targetNode": "n2", "targetCpuset": "1"}],
            "timings": {"reserve": 0.25, "stop": 1.5},
            "reason": "StartRefused",
            "message": "image missing on n2",
        }
        store.update_status({**migration, "status": status})
        checkpoint = one(store, "Checkpoint")
        done = {"phase": "Succeeded", "node": "n1", "path": "/cp/a", "sizeBytes": 5 * MI}
        store.update_status({**checkpoint, "status": done})
    code, out, _ = run(capsys, "get", "migrations")
    header, row = out.splitlines()
    assert header.split() == ["NAME", "TASK/JOB", "MODE", "PHASE", "SOURCE", "TARGET", "AGE"]
    assert row.split()[1:6] == ["task/web-server", "cold", "Failed", "n1", "n2"]
    code, out, _ = run(capsys, "get", "checkpoints")
    header, row = out.splitlines()
    assert header.split() == ["NAME", "TASK", "PHASE", "NODE", "SIZE", "AGE"]
    assert row.split()[1:5] == ["web-db", "Succeeded", "n1", "5Mi"]
    code, out, _ = run(capsys, "describe", "migration", migration["metadata"]["name"])
    assert code == 0
    assert "  Reason:               StartRefused" in out
    assert "  Message:              image missing on n2" in out
    assert any(
        line.split()[:5] == ["web-server", "n1", "0", "n2", "1"] for line in out.splitlines()
    )
    assert any(line.split() == ["stop", "1.500"] for line in out.splitlines())
    code, out, _ = run(capsys, "describe", "checkpoint", checkpoint["metadata"]["name"])
    assert "  Path:                 /cp/a" in out and "  Size:                 5Mi" in out


def test_the_example_requests_apply_to_the_example_job(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = Path(__file__).resolve().parents[2] / "manifests" / "restfulswarm"
    assert run(capsys, "-f", str(folder / "job1.json"))[0] == 0
    with open_store(url) as store:
        add_node(store, "host1")
        add_node(store, "host2")
        job = store.get("Job", "job1")
        for entry, cpuset in zip(job["spec"]["tasks"], ("0-1", "2"), strict=True):
            task = store.create(build_task(job, entry))
            status = {"phase": "Running", "node": "host1", "cpuset": cpuset}
            store.update_status({**task, "status": {**status, "memory": entry["memory"]}})
    requests = folder / "requests"
    code, out, err = run(capsys, "-f", str(requests / "migration.req"))
    assert (code, err) == (0, "") and out.endswith(" created\n")
    code, out, _ = run(capsys, "-f", str(requests / "group-migration.req"))
    assert code == 0 and [line.split()[-1] for line in out.splitlines()] == ["unchanged", "created"]
    code, out, _ = run(capsys, "-f", str(requests / "checkpoint.req"))
    assert code == 0 and out.count(" created") == 2
    code, out, _ = run(capsys, "-f", str(requests / "update.req"))
    assert code == 0 and out == (
        "job.swarmapply.io/job1 configured"
        " (task job1-job1-task1: cpuset - -> 1-2, memory 64Mi -> 128Mi)\n"
    )
    # A directory apply skips the requests (their names do not end in .json); the job's own
    # manifest still says 64m, so applying it would set the resized memory back.
    code, out, _ = run(capsys, "-f", str(folder), "--dry-run")
    assert code == 0 and out == "job.swarmapply.io/job1 configured (dry run)\n"
