"""The command line against a real embedded store: apply, dry run, get."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from swarmapply.api.store import open_store
from swarmapply.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
JOB = """\
apiVersion: swarmapply.io/v1
kind: Job
metadata:
  name: web
  labels: {app: web}
spec:
  tasks:
    - {name: server, image: busybox, command: sleep 30, cores: 2, memory: 64m}
"""


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/state.db"
    monkeypatch.setenv("SWARMAPPLY_STORE", url)
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_apply_creates_then_is_unchanged_then_configured(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB)
    assert run(capsys, "-f", str(manifest)) == (0, "job.swarmapply.io/web created\n", "")
    assert run(capsys, "-f", str(manifest))[1] == "job.swarmapply.io/web unchanged\n"
    manifest.write_text(JOB.replace("cores: 2", "cores: 3").replace("{app: web}", "{}"))
    assert run(capsys, "apply", "-f", str(manifest))[1] == "job.swarmapply.io/web configured\n"
    with open_store(store_url) as store:
        job = store.get("Job", "web")
    assert job["spec"]["tasks"][0]["cores"] == 3
    assert job["spec"]["tasks"][0]["memory"] == 64 * 2**20
    assert job["metadata"]["generation"] == 2
    assert "labels" not in job["metadata"] or job["metadata"]["labels"] == {}


def test_apply_keeps_status_written_by_controllers(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB)
    run(capsys, "-f", str(manifest))
    with open_store(store_url) as store:
        job = store.get("Job", "web")
        store.update_status({**job, "status": {"phase": "Running"}})
    manifest.write_text(JOB.replace("sleep 30", "sleep 60"))
    assert run(capsys, "-f", str(manifest))[1] == "job.swarmapply.io/web configured\n"
    with open_store(store_url) as store:
        assert store.get("Job", "web")["status"] == {"phase": "Running"}


def test_invalid_input_writes_nothing_and_names_every_problem(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "a-good.yaml"
    good.write_text(JOB)
    bad = tmp_path / "b-bad.yaml"
    bad.write_text(JOB.replace("name: web", "name: other").replace("cores: 2", "cores: 0"))
    code, out, err = run(capsys, "-f", str(tmp_path))
    assert code == 1 and out == ""
    assert f"{bad}: document 1: spec.tasks[0].cores:" in err
    assert "nothing was written" in err
    with open_store(store_url) as store:
        assert store.list("Job").items == []


def test_dry_run_writes_nothing(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB)
    assert run(capsys, "apply", "--dry-run", "-f", str(manifest))[1] == (
        "job.swarmapply.io/web created (dry run)\n"
    )
    with open_store(store_url) as store:
        assert store.list("Job").items == []


def test_restfulswarm_document_applies_and_converts(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = ROOT / "manifests" / "restfulswarm" / "job1.json"
    document = json.loads(source.read_text())
    assert run(capsys, "-f", str(source))[0] == 0
    code, out, _ = run(capsys, "get", "job", document["job_name"], "-o", "json")
    assert code == 0
    job = json.loads(out)
    tasks = {t["name"]: t for t in job["spec"]["tasks"]}
    assert set(tasks) == set(document["job_info"]["tasks"])
    for key, original in document["job_info"]["tasks"].items():
        assert tasks[key]["image"] == original["image"]
        assert tasks[key]["cores"] == original["req_cores"]
    assert job["spec"]["network"]["name"] == document["job_info"]["network"]["name"]


def test_get_formats(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "-f", str(ROOT / "manifests"), "-R")[0] == 0
    code, table, _ = run(capsys, "get", "jobs")
    assert code == 0 and table.splitlines()[0].split() == [
        "NAME",
        "PHASE",
        "TASKS",
        "CORES",
        "MEMORY",
        "AGE",
    ]
    listed = yaml.safe_load(run(capsys, "get", "no", "-o", "yaml")[1])
    assert listed["kind"] == "List" and len(listed["items"]) >= 1
    names = run(capsys, "get", "jobs", "-o", "name")[1].split()
    assert all(n.startswith("job.swarmapply.io/") for n in names)
    code, _, err = run(capsys, "get", "job", "missing")
    assert code == 1 and 'Job "missing" not found' in err
    code, _, err = run(capsys, "get", "jbos")
    assert code == 1 and "unknown kind" in err
