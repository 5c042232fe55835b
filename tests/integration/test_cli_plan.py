"""``swarmapply plan`` against a real store: where jobs would go, or why they'd wait; no writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarmapply.api.store import Store
from swarmapply.cli.main import main
from tests.integration.scheduler_objects import MI, add_job, add_node, bind, task_entry

JOB = """\
apiVersion: swarmapply.io/v1
kind: Job
metadata:
  name: web
spec:
  tasks:
    - {name: server, image: busybox, cores: 3, memory: 64m}
    - {name: cache, image: busybox, cores: 2, memory: 32m}
"""

BIG = """\
apiVersion: swarmapply.io/v1
kind: Job
metadata:
  name: big
spec:
  tasks:
    - {name: huge, image: busybox, cores: 9, memory: 64m}
"""


@pytest.fixture
def store(store: Store, cli_store: str) -> Store:
    """The CLI's store (each backend in turn) with two Ready 4-core nodes."""
    add_node(store, "n1", 4)
    add_node(store, "n2", 4)
    return store


def plan(
    capsys: pytest.CaptureFixture[str],
    store: Store,
    tmp_path: Path,
    *manifests: str,
    opts: tuple[str, ...] = (),
) -> tuple[int, str, str]:
    """Run ``swarmapply plan`` on the manifests; asserts it wrote nothing to the store."""
    paths = []
    for i, text in enumerate(manifests):
        path = tmp_path / f"m{i}.yaml"
        path.write_text(text)
        paths += ["-f", str(path)]
    before = store.revision()
    code = main(["--store", store.url, "plan", *paths, *opts])
    out, err = capsys.readouterr()
    assert store.revision() == before, "plan wrote to the store"
    return code, out, err


def test_a_job_that_fits_prints_node_and_cpuset(
    capsys: pytest.CaptureFixture[str], store: Store, tmp_path: Path
) -> None:
    code, out, err = plan(capsys, store, tmp_path, JOB)
    assert (code, err) == (0, "")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["JOB", "TASK", "NODE", "CPUSET", "MEMORY"]
    assert sorted(rows[1:]) == [
        ["web", "cache", "n2", "0-1", "32Mi"],
        ["web", "server", "n1", "0-2", "64Mi"],
    ]
    assert "would wait" not in out


def test_a_job_that_waits_exits_2_with_the_reason(
    capsys: pytest.CaptureFixture[str], store: Store, tmp_path: Path
) -> None:
    code, out, err = plan(capsys, store, tmp_path, BIG)
    assert (code, err) == (2, "")
    assert out == (
        "job big would wait: 0/2 nodes can run task huge of job big: "
        "2 have too few cores (need 9)\n"
    )


def test_json_output_shape(
    capsys: pytest.CaptureFixture[str], store: Store, tmp_path: Path
) -> None:
    code, out, _ = plan(capsys, store, tmp_path, JOB, BIG, opts=("-o", "json"))
    assert code == 2
    assert json.loads(out) == [
        {
            "job": "web",
            "placed": True,
            "placements": [
                {"task": "server", "node": "n1", "cpuset": "0-2", "memory": 64 * MI},
                {"task": "cache", "node": "n2", "cpuset": "0-1", "memory": 32 * MI},
            ],
            "reason": None,
        },
        {
            "job": "big",
            "placed": False,
            "placements": [],
            "reason": "0/2 nodes can run task huge of job big: 2 have too few cores (need 9)",
        },
    ]


def test_several_jobs_are_one_queue_each_seeing_what_the_earlier_took(
    capsys: pytest.CaptureFixture[str], store: Store, tmp_path: Path
) -> None:
    second = JOB.replace("name: web", "name: web2")
    code, out, _ = plan(capsys, store, tmp_path, JOB, second, opts=("-o", "json"))
    assert code == 2
    first, later = json.loads(out)
    assert first["placed"] and not later["placed"]
    assert later["reason"].startswith("0/2 nodes can run task server of job web2")


def test_a_running_job_counts_its_own_cores_as_taken(
    capsys: pytest.CaptureFixture[str], store: Store, tmp_path: Path
) -> None:
    add_job(store, "web", [task_entry("server", 3, 64 * MI), task_entry("cache", 2, 32 * MI)])
    bind(store, "web-server", "n1", "0-2")
    bind(store, "web-cache", "n2", "0-1")
    code, out, _ = plan(capsys, store, tmp_path, JOB)
    assert code == 2
    assert out.startswith("job web would wait: ")
    # A finished task no longer holds its cores.
    bind(store, "web-server", "n1", "0-2", phase="Succeeded")
    code, out, _ = plan(capsys, store, tmp_path, JOB, opts=("-o", "json"))
    assert code == 0
    [decision] = json.loads(out)
    assert {p["task"]: (p["node"], p["cpuset"]) for p in decision["placements"]} == {
        "server": ("n1", "0-2"),
        "cache": ("n2", "2-3"),
    }


def test_only_ready_schedulable_nodes_and_the_strategy_option(
    capsys: pytest.CaptureFixture[str], store: Store, tmp_path: Path
) -> None:
    add_node(store, "n0", 8, ready=False)
    add_node(store, "n3", 8, unschedulable=True)
    one = JOB.replace("    - {name: cache, image: busybox, cores: 2, memory: 32m}\n", "").replace(
        "cores: 3", "cores: 1"
    )
    add_job(store, "busy", [task_entry("a", 2)])
    bind(store, "busy-a", "n2", "0-1")
    code, out, _ = plan(capsys, store, tmp_path, one, opts=("-o", "json"))
    assert code == 0
    assert json.loads(out)[0]["placements"][0]["node"] == "n2"  # best-fit: the fuller node
    code, out, _ = plan(
        capsys, store, tmp_path, one, opts=("-o", "json", "--strategy", "first-fit")
    )
    assert code == 0
    assert json.loads(out)[0]["placements"][0]["node"] == "n1"


def test_files_without_a_job_exit_1_with_a_message(
    capsys: pytest.CaptureFixture[str], store: Store, tmp_path: Path
) -> None:
    node = "apiVersion: swarmapply.io/v1\nkind: Node\nmetadata: {name: n7}\nspec: {}\n"
    code, out, err = plan(capsys, store, tmp_path, node)
    assert code == 1 and out == ""
    assert err == f"error: no Job in {tmp_path / 'm0.yaml'}; plan places jobs only\n"


def test_an_invalid_manifest_exits_1_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], store: Store, tmp_path: Path
) -> None:
    code, out, err = plan(capsys, store, tmp_path, JOB.replace("cores: 3", "cores: lots"))
    assert code == 1 and out == ""
    assert "document 1: spec.tasks[0].cores: expected an integer >= 1" in err


def test_bad_usage_exits_1_because_2_means_would_wait(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["plan"], ["plan", "-f", "j.yaml", "--strategy", "bogus"], ["plan", "-o", "x"]):
        with pytest.raises(SystemExit) as usage:
            main(argv)
        assert usage.value.code == 1, argv
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["get"])
    assert usage.value.code == 2  # other commands keep argparse's usual code
