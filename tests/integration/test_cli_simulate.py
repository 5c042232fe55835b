"""``swarmapply simulate`` on files: JSON shape, all strategies, tables, input errors,
RESTfulSwarm input, and the worked example of docs/simulate.md, which must be real output."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from swarmapply.cli.main import main
from swarmapply.controllers.placement_model import STRATEGIES

ROOT = Path(__file__).resolve().parents[2]
NODES = str(ROOT / "manifests" / "sim" / "nodes.yaml")
JOBS = str(ROOT / "manifests" / "sim" / "jobs.yaml")

NODE = """\
apiVersion: swarmapply.io/v1
kind: Node
metadata: {name: w1}
spec:
  capacity: {cores: 4, memory: 8Gi}
"""


@pytest.fixture(autouse=True)
def no_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The command must not need a store: point it at a place that cannot hold one."""
    monkeypatch.setenv("SWARMAPPLY_STORE", f"sqlite:///{tmp_path}/missing/dir/state.db")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_shape_for_one_strategy(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "simulate", "--nodes", NODES, "-f", JOBS, "-o", "json")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert set(doc) == {
        "strategy", "placements", "unscheduled", "metrics", "jobs", "capacityCores"
    }  # fmt: skip
    assert {j["job"] for j in doc["jobs"]} >= {p["job"] for p in doc["placements"]}
    assert doc["capacityCores"] > 0
    assert doc["strategy"] == "best-fit"
    assert set(doc["metrics"]) == {
        "makespan",
        "meanWait",
        "p95Wait",
        "coreUtilization",
        "nodesUsed",
    }
    for placement in doc["placements"]:
        assert set(placement) == {"job", "task", "node", "cpuset", "start", "end"}
        assert isinstance(placement["cpuset"], str)
    train = [p for p in doc["placements"] if p["job"] == "train"]
    assert train == [
        {"job": "train", "task": "trainer", "node": "rack-1", "cpuset": "0-7", "start": 30,
         "end": 120}
    ]  # fmt: skip
    assert doc["unscheduled"] == []
    assert doc["metrics"]["makespan"] == 120
    assert doc["metrics"]["coreUtilization"] == pytest.approx(0.847222)


def test_all_strategies_as_json_and_as_a_side_by_side_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "simulate", "--nodes", NODES, "-f", JOBS, "--strategy", "all",
                       "-o", "json")  # fmt: skip
    assert code == 0
    docs = json.loads(out)
    assert [d["strategy"] for d in docs] == list(STRATEGIES)
    by_strategy = {d["strategy"]: d for d in docs}
    assert by_strategy["best-fit"]["metrics"]["makespan"] == 120
    assert by_strategy["first-fit"]["metrics"]["makespan"] == 210
    assert by_strategy["node"]["unscheduled"] == ["etl", "web", "report", "train"]

    code, out, _ = run(capsys, "simulate", "--nodes", NODES, "-f", JOBS, "--strategy", "all")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "STRATEGY", "MAKESPAN", "MEAN-WAIT", "P95-WAIT", "CORE-UTIL", "NODES", "UNSCHEDULED"
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[1:7]] == list(STRATEGIES)
    assert max(len(line) for line in lines) <= 100


def test_table_for_one_strategy(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "simulate", "--nodes", NODES, "-f", JOBS, "--strategy", "first-fit")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "strategy: first-fit"
    assert lines[2].split() == ["JOB", "TASK", "NODE", "CPUSET", "START", "END"]
    assert lines[3].split() == ["etl", "extract", "rack-1", "0-1", "0", "60"]
    assert "makespan:         210s" in lines
    assert "unscheduled:      none" in lines


def test_starvation_and_preemption_options(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        "\n---\n".join(
            f"apiVersion: swarmapply.io/v1\nkind: Job\nmetadata: {{name: {name}}}\n"
            f"spec:\n  priority: {prio}\n  simulation: {{submitAt: {at}, duration: {d}}}\n"
            f"  tasks: [{{name: t, image: busybox, cores: {cores}, memory: 1Gi}}]\n"
            for name, prio, at, d, cores in [("low", 0, 0, 100, 4), ("high", 5, 5, 10, 4)]
        )
    )
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(NODE)
    argv = ["simulate", "--nodes", str(nodes), "-f", str(jobs), "-o", "json"]
    code, out, _ = run(capsys, *argv, "--preemption", "--strategy", "priority")
    assert code == 0
    doc = json.loads(out)
    assert doc["metrics"]["preemptions"] == 1
    assert [(p["job"], p["start"], p["end"]) for p in doc["placements"]] == [
        ("low", 0, 5),
        ("high", 5, 15),
        ("low", 15, 115),
    ]
    code, out, _ = run(capsys, *argv, "--starvation-seconds", "0")
    assert code == 0
    assert "preemptions" not in json.loads(out)["metrics"]
    with pytest.raises(SystemExit) as exit_info:  # argparse: bad usage
        main([*argv, "--starvation-seconds", "-1"])
    assert exit_info.value.code == 2
    assert "expected a number of seconds >= 0, got '-1'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            NODE + "---\n" + (ROOT / "manifests" / "job-hello.yaml").read_text(),
            "document 2: kind: expected a Node in --nodes, got Job",
        ),
        (
            NODE.replace("  capacity: {cores: 4, memory: 8Gi}", "  unschedulable: false"),
            "document 1: spec.capacity: a simulated node needs spec.capacity",
        ),
        (
            NODE.replace("{cores: 4, memory: 8Gi}", "{cores: 4}"),
            "document 1: spec.capacity",
        ),
        (
            NODE + "---\n" + NODE.replace("cores: 4", "cores: lots"),
            "document 2: spec.capacity.cores",
        ),
    ],
)
def test_bad_node_files_name_file_document_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, expected: str
) -> None:
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(text)
    code, out, err = run(capsys, "simulate", "--nodes", str(nodes), "-f", JOBS)
    assert code == 1
    assert out == ""
    assert f"error: {nodes}: {expected}" in err


def test_non_job_objects_in_f_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "simulate", "--nodes", NODES, "-f", NODES)
    assert code == 1
    assert f"{NODES}: document 1: kind: expected a Job in -f, got Node" in err
    assert "(simulated nodes go in --nodes)" in err
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    code, _, err = run(capsys, "simulate", "--nodes", NODES, "-f", str(empty))
    assert (code, err.strip()) == (1, f"error: no Job objects found in {empty}")


def test_restfulswarm_json_jobs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(NODE)
    job = str(ROOT / "manifests" / "restfulswarm" / "job1.json")
    code, out, _ = run(capsys, "simulate", "--nodes", str(nodes), "-f", job, "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert [(p["task"], p["node"], p["cpuset"], p["end"]) for p in doc["placements"]] == [
        ("job1-task1", "w1", "0-1", None),
        ("job1-task2", "w1", "2", None),
    ]
    assert doc["metrics"]["nodesUsed"] == 1


def _doc_examples() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "simulate.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```console\n\$ (.*?)\n(.*?)```", text, flags=re.S)
    return [(command, output) for command, output in blocks]


def test_the_docs_show_the_real_output_of_the_example(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = _doc_examples()
    assert len(examples) >= 3
    monkeypatch.chdir(ROOT)
    for command, expected in examples:
        argv = shlex.split(command)
        assert argv[:2] == ["swarmapply", "simulate"]
        code, out, err = run(capsys, *argv[1:])
        assert (code, err) == (0, "")
        assert out == expected, command
