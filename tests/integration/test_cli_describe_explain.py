"""``describe`` and ``explain`` against a real embedded store, in-process and as a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from swarmapply.api.store import Store, open_store
from swarmapply.cli.main import main

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "job-hello.yaml"

V1 = "swarmapply.io/v1"
MiB = 2**20


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _event(store: Store, name: str, about: dict[str, Any], **fields: Any) -> None:
    meta = about["metadata"]
    store.create(
        {
            "apiVersion": V1,
            "kind": "Event",
            "metadata": {"name": name},
            "involvedObject": {"kind": about["kind"], "name": meta["name"], "uid": meta["uid"]},
            **fields,
        }
    )


def seed(url: str, job_status: dict[str, Any]) -> None:
    """A Job ``web`` with two Tasks on Node ``n1``, and two Events about the job."""
    with open_store(url) as store:
        job = store.create(
            {
                "apiVersion": V1,
                "kind": "Job",
                "metadata": {
                    "name": "web",
                    "labels": {"app": "web"},
                    "annotations": {
                        "team": "core",
                        "swarmapply.io/last-applied-configuration": '{"huge": "json"}',
                    },
                },
                "spec": {
                    "tasks": [
                        {"name": "a", "image": "busybox", "cores": 2, "memory": 64 * MiB},
                        {
                            "name": "b",
                            "image": "busybox",
                            "cores": 1,
                            "memory": 32 * MiB,
                            "node": "n1",
                            "cpuset": "3",
                        },
                    ],
                    "network": {"subnet": "10.10.0.0/24"},
                    "priority": 5,
                },
            }
        )
        store.update_status({**job, "status": job_status})
        owner = {"apiVersion": V1, "kind": "Job", "name": "web", "uid": job["metadata"]["uid"]}
        for name, cpuset, cores in (("a", "0-1", 2), ("b", "3", 1)):
            task = store.create(
                {
                    "apiVersion": V1,
                    "kind": "Task",
                    "metadata": {"name": f"web-{name}", "ownerReferences": [owner]},
                    "spec": {
                        "job": "web",
                        "image": "busybox",
                        "command": ["sleep", "30"],
                        "cores": cores,
                        "memory": 32 * MiB,
                    },
                }
            )
            store.update_status(
                {
                    **task,
                    "status": {
                        "phase": "Running",
                        "node": "n1",
                        "cpuset": cpuset,
                        "containerID": f"c0ffee{name}",
                    },
                }
            )
        node = store.create(
            {
                "apiVersion": V1,
                "kind": "Node",
                "metadata": {"name": "n1"},
                "spec": {"address": "10.0.0.1"},
            }
        )
        store.update_status(
            {
                **node,
                "status": {
                    "capacity": {"cores": 4, "memory": 1024 * MiB},
                    "allocated": {"cores": 3, "memory": 64 * MiB, "cpuset": "0-1,3"},
                    "heartbeatTime": "2024-05-01T12:00:00Z",
                },
            }
        )
        # Created newest first: the order shown must come from the timestamps.
        _event(
            store,
            "web-late",
            job,
            type="Warning",
            reason="FailedScheduling",
            message="0/1 nodes have 8 free cores",
            source={"component": "scheduler"},
            lastTimestamp="2024-05-01T12:05:00Z",
        )
        _event(
            store,
            "web-early",
            job,
            type="Normal",
            reason="Created",
            message="created 2 tasks",
            source={"component": "job-controller"},
            lastTimestamp="2024-05-01T12:00:00Z",
        )


UNSCHEDULED = {
    "phase": "Pending",
    "tasksTotal": 2,
    "tasksReady": 1,
    "conditions": [
        {
            "type": "Scheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/1 nodes have 8 free cores",
            "lastTransitionTime": "2024-05-01T12:05:00Z",
        }
    ],
}


def test_describe_job_shows_spec_tasks_conditions_and_events_newest_last(
    cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(cli_store, UNSCHEDULED)
    code, out, err = run(capsys, "describe", "job", "web")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["Name:", "web"]
    assert "app=web" in out and "team: core" in out
    assert "last-applied" not in out
    assert any(line.split() == ["Priority:", "5"] for line in lines)
    assert any(line.split() == ["Subnet:", "10.10.0.0/24"] for line in lines)
    assert any(line.split() == ["b", "busybox", "1", "32Mi", "n1:3"] for line in lines)
    assert any(line.split() == ["Tasks", "ready:", "1/2"] for line in lines)
    assert "Pending because: Unschedulable: 0/1 nodes have 8 free cores" in lines
    assert any(line.split()[:3] == ["Scheduled", "False", "Unschedulable"] for line in lines)
    owned = lines.index("Owned tasks:")
    assert lines[owned + 1].split() == ["NAME", "PHASE", "NODE", "CPUSET"]
    assert lines[owned + 2].split() == ["web-a", "Running", "n1", "0-1"]
    assert lines[owned + 3].split() == ["web-b", "Running", "n1", "3"]
    events = lines.index("Events:")
    assert lines[events + 1].split() == ["TYPE", "REASON", "AGE", "FROM", "MESSAGE"]
    assert lines[events + 2].split()[:2] == ["Normal", "Created"]
    assert lines[events + 3].split()[:2] == ["Warning", "FailedScheduling"]
    assert lines[events + 3].split()[3:] == [
        "scheduler",
        "0/1",
        "nodes",
        "have",
        "8",
        "free",
        "cores",
    ]
    ages = re.compile(r"\b\d+[smhd]\b")  # relative ages move on between two runs
    assert ages.sub("AGE", run(capsys, "describe", "jobs/web")[1]) == ages.sub("AGE", out)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ({"phase": "Pending"}, "FailedScheduling: 0/1 nodes have 8 free cores"),
        (
            {"conditions": [{"type": "Ready", "status": "False", "reason": "NoNetwork"}]},
            "NoNetwork",
        ),
    ],
)
def test_pending_reason_falls_back_to_other_conditions_then_the_newest_warning(
    cli_store: str, capsys: pytest.CaptureFixture[str], status: dict[str, Any], reason: str
) -> None:
    seed(cli_store, status)
    out = run(capsys, "describe", "job", "web")[1]
    assert f"Pending because: {reason}" in out.splitlines()


def test_pending_reason_without_any_report(
    cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_store(cli_store) as store:
        store.create(
            {
                "apiVersion": V1,
                "kind": "Job",
                "metadata": {"name": "new"},
                "spec": {"tasks": [{"name": "a", "image": "busybox", "memory": MiB}]},
            }
        )
    code, out, _ = run(capsys, "describe", "job", "new")
    assert code == 0
    assert "Pending because: not yet scheduled (no scheduler has reported on it)" in out
    assert "Owned tasks: <none>" in out.splitlines()
    assert out.splitlines()[-1] == "Events: <none>"


def test_running_job_has_no_pending_line(
    cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(cli_store, {"phase": "Running", "tasksReady": 2})
    out = run(capsys, "describe", "job", "web")[1]
    assert "Pending because" not in out
    assert any(line.split() == ["Phase:", "Running"] for line in out.splitlines())


def test_describe_node_shows_bound_tasks_and_core_map(
    cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(cli_store, UNSCHEDULED)
    code, out, _ = run(capsys, "describe", "no", "n1")
    assert code == 0
    lines = out.splitlines()
    assert any(line.split() == ["Address:", "10.0.0.1"] for line in lines)
    assert any(line.split() == ["Cores:", "3", "(0-1,3)"] for line in lines)
    bound = lines.index("Bound tasks:")
    assert lines[bound + 2].split() == ["web-a", "web", "Running", "0-1", "32Mi"]
    core_map = lines.index("Core map:")
    assert [line.split() for line in lines[core_map + 1 : core_map + 6]] == [
        ["CORE", "TASK"],
        ["0", "web-a"],
        ["1", "web-a"],
        ["2", "<free>"],
        ["3", "web-b"],
    ]


def test_describe_task_and_a_generic_kind(
    cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(cli_store, UNSCHEDULED)
    out = run(capsys, "describe", "task", "web-a")[1]
    lines = out.splitlines()
    assert any(line.split() == ["Owned", "by:", "Job/web"] for line in lines)
    assert any(line.split() == ["Command:", "sleep", "30"] for line in lines)
    assert any(line.split() == ["Container", "ID:", "c0ffeea"] for line in lines)
    out = run(capsys, "describe", "event", "web-late")[1]
    assert "InvolvedObject:" in out and "  name: web" in out.splitlines()
    assert any(line.split() == ["Reason:", "FailedScheduling"] for line in out.splitlines())


def test_describe_missing_object_or_kind_fails_with_a_message(
    cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    open_store(cli_store).close()  # the store exists, the object does not
    assert run(capsys, "describe", "job", "nope") == (1, "", 'error: Job "nope" not found\n')
    code, out, err = run(capsys, "describe", "gadget", "x")
    assert (code, out) == (1, "")
    assert err.startswith("error: unknown kind 'gadget'; known kinds: jobs")
    code, _, err = run(capsys, "describe", "job")
    assert code == 2 and "needs a name" in err


def test_reading_a_store_that_does_not_exist_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/typo/state.db"
    for argv in (["describe", "job", "web"], ["get", "jobs"], ["plan", "-f", str(MANIFEST)]):
        code, out, err = run(capsys, "--store", url, *argv)
        assert (code, out) == (1, ""), argv
        assert err.startswith(f"error: no store at {tmp_path}/typo/state.db"), argv
    assert not (tmp_path / "typo").exists()  # reading created nothing


def test_describe_as_a_subprocess(cli_store: str, tmp_path: Path) -> None:
    seed(cli_store, UNSCHEDULED)
    env = {**os.environ, "SWARMAPPLY_STORE": cli_store}
    done = subprocess.run(
        [sys.executable, "-m", "swarmapply", "describe", "job", "web"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Pending because: Unschedulable: 0/1 nodes have 8 free cores" in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "swarmapply", "describe", "node", "ghost"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (missing.returncode, missing.stderr) == (1, 'error: Node "ghost" not found\n')


def test_explain_a_field_inside_list_items(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "job.spec.tasks.cores")
    assert code == 0
    lines = out.splitlines()
    assert lines[:2] == ["KIND:     Job", f"VERSION:  {V1}"]
    assert "FIELD:    spec.tasks.cores <integer>" in lines
    assert "DEFAULT:  1" in lines
    assert "How many CPU cores the task gets" in out
    assert "FIELDS:" not in out


def test_explain_a_kind_by_plural_lists_its_fields(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "explain", "jobs")[1]
    lines = out.splitlines()
    assert "TYPE:     <object>" in lines
    assert "  spec        <object> -required-" in lines
    assert "  metadata    <object> -required-" in lines
    assert "  status      <object>" in lines
    out = run(capsys, "explain", "job.spec.network")[1]
    assert '    default: "overlay"' in out.splitlines()
    out = run(capsys, "explain", "node.status.capacity")[1]
    assert "FIELD:    status.capacity <object>" in out
    assert any(line.split() == ["coreIds", "<[]integer>"] for line in out.splitlines())
    out = run(capsys, "explain", "job.status")[1]
    assert "    enum: Pending, Scheduled, Running, Succeeded, Failed" in out.splitlines()


def test_explain_unknown_field_names_the_path_and_the_valid_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "explain", "job.spec.tasks.corez")
    assert (code, out) == (1, "")
    assert "'spec.tasks.corez'" in err
    assert "name, image, command, cores, memory" in err
    code, _, err = run(capsys, "explain", "jobz")
    assert code == 1 and "unknown kind 'jobz'" in err


def test_explain_recursive_prints_the_tree(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "explain", "job.spec", "--recursive")[1]
    lines = out.splitlines()
    tasks = next(i for i, line in enumerate(lines) if line.startswith("  tasks "))
    assert lines[tasks].split() == ["tasks", "<[]object>", "-required-"]
    assert lines[tasks + 1].split() == ["name", "<string>", "-required-"]
    assert lines[tasks + 1].startswith("    name")
    assert any(line.startswith("      containerPort") for line in lines)
    assert any(line.startswith("    subnet") for line in lines)
    assert "How many CPU cores" not in out


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("job.SPEC", "error: Job has no field 'SPEC'; its fields: apiVersion, kind"),
        ("job.spec.tasks.cores.x", "spec.tasks.cores is integer and has no fields"),
        ("job.spec..tasks", "has an empty part"),
    ],
)
def test_explain_says_exactly_what_is_wrong_with_a_path(
    path: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "explain", path)
    assert code == 1 and message in err and err.count("has no field") <= 2
