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


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_apply_creates_then_is_unchanged_then_configured(
    tmp_path: Path, cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB)
    assert run(capsys, "-f", str(manifest)) == (0, "job.swarmapply.io/web created\n", "")
    assert run(capsys, "-f", str(manifest))[1] == "job.swarmapply.io/web unchanged\n"
    manifest.write_text(JOB.replace("cores: 2", "cores: 3").replace("{app: web}", "{}"))
    assert run(capsys, "apply", "-f", str(manifest))[1] == "job.swarmapply.io/web configured\n"
    with open_store(cli_store) as store:
        job = store.get("Job", "web")
    assert job["spec"]["tasks"][0]["cores"] == 3
    assert job["spec"]["tasks"][0]["memory"] == 64 * 2**20
    assert job["metadata"]["generation"] == 2
    assert "labels" not in job["metadata"] or job["metadata"]["labels"] == {}


def test_apply_keeps_status_written_by_controllers(
    tmp_path: Path, cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB)
    run(capsys, "-f", str(manifest))
    with open_store(cli_store) as store:
        job = store.get("Job", "web")
        store.update_status({**job, "status": {"phase": "Running"}})
    manifest.write_text(JOB.replace("sleep 30", "sleep 60"))
    assert run(capsys, "-f", str(manifest))[1] == "job.swarmapply.io/web configured\n"
    with open_store(cli_store) as store:
        assert store.get("Job", "web")["status"] == {"phase": "Running"}


def test_invalid_input_writes_nothing_and_names_every_problem(
    tmp_path: Path, cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "a-good.yaml"
    good.write_text(JOB)
    bad = tmp_path / "b-bad.yaml"
    bad.write_text(JOB.replace("name: web", "name: other").replace("cores: 2", "cores: 0"))
    code, out, err = run(capsys, "-f", str(tmp_path))
    assert code == 1 and out == ""
    assert f"{bad}: document 1: spec.tasks[0].cores:" in err
    assert "nothing was changed" in err
    with open_store(cli_store) as store:
        assert store.list("Job").items == []


def test_dry_run_writes_nothing(
    tmp_path: Path, cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB)
    assert run(capsys, "apply", "--dry-run", "-f", str(manifest))[1] == (
        "job.swarmapply.io/web created (dry run)\n"
    )
    with open_store(cli_store) as store:
        assert store.list("Job").items == []


def test_restfulswarm_document_applies_and_converts(
    cli_store: str, capsys: pytest.CaptureFixture[str]
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


def test_get_formats(cli_store: str, capsys: pytest.CaptureFixture[str]) -> None:
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
    wide = run(capsys, "get", "jobs", "-o", "wide")[1].splitlines()
    assert wide[0].split() == [
        "NAME", "PHASE", "TASKS", "CORES", "MEMORY", "AGE", "PRIORITY", "NETWORK", "RESTART"
    ]  # fmt: skip
    assert any(line.split()[0] == "hello" and "hello-net" in line.split() for line in wide)
    listed = yaml.safe_load(run(capsys, "get", "no", "-o", "yaml")[1])
    assert listed["kind"] == "List" and len(listed["items"]) >= 1
    names = run(capsys, "get", "jobs", "-o", "name")[1].split()
    assert all(n.startswith("job.swarmapply.io/") for n in names)
    code, _, err = run(capsys, "get", "job", "missing")
    assert code == 1 and 'Job "missing" not found' in err
    code, _, err = run(capsys, "get", "jbos")
    assert code == 1 and "unknown kind" in err


def test_reapply_removes_a_field_removed_from_the_file_and_keeps_others_fields(
    tmp_path: Path, cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB.replace("spec:\n", "spec:\n  ttlSecondsAfterFinished: 60\n"))
    run(capsys, "-f", str(manifest))
    with open_store(cli_store) as store:
        live = store.get("Job", "web")
        assert live["spec"]["ttlSecondsAfterFinished"] == 60
        live["metadata"]["labels"]["added-by"] = "operator"
        store.update(live)
    manifest.write_text(JOB)
    assert run(capsys, "-f", str(manifest))[1] == "job.swarmapply.io/web configured\n"
    assert run(capsys, "-f", str(manifest))[1] == "job.swarmapply.io/web unchanged\n"
    with open_store(cli_store) as store:
        job = store.get("Job", "web")
    assert "ttlSecondsAfterFinished" not in job["spec"]
    assert job["metadata"]["labels"] == {"app": "web", "added-by": "operator"}
    assert job["metadata"]["generation"] == 2


def test_diff_shows_what_apply_would_change(
    tmp_path: Path, cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB)
    code, out, _ = run(capsys, "diff", "-f", str(manifest))
    assert code == 1 and "+++ applied/job.swarmapply.io/web" in out and "+  name: web" in out
    run(capsys, "-f", str(manifest))
    assert run(capsys, "diff", "-f", str(manifest)) == (0, "", "")
    manifest.write_text(JOB.replace("cores: 2", "cores: 4"))
    code, out, _ = run(capsys, "diff", "-f", str(manifest))
    assert code == 1
    assert "-    cores: 2" in out and "+    cores: 4" in out
    with open_store(cli_store) as store:
        assert store.get("Job", "web")["spec"]["tasks"][0]["cores"] == 2
    (tmp_path / "bad.yaml").write_text("kind: Job\n")
    code, _, err = run(capsys, "diff", "-f", str(tmp_path / "bad.yaml"))
    assert code == 2 and "bad.yaml: document 1" in err


def test_get_watch_streams_changes(cli_store: str) -> None:
    import io
    import threading
    import time

    from swarmapply.cli.context import Context
    from swarmapply.cli.get import run as get_run
    from swarmapply.cli.main import build_parser

    def node(name: str) -> dict[str, object]:
        return {"apiVersion": "swarmapply.io/v1", "kind": "Node", "metadata": {"name": name},
                "spec": {}}  # fmt: skip

    with open_store(cli_store) as store:
        store.create(node("n1"))
    stop = threading.Event()
    out = io.StringIO()
    ctx = Context(stdout=out)
    args = build_parser().parse_args(["get", "nodes", "-w"])
    watcher = threading.Thread(target=get_run, args=(args, ctx, stop))
    watcher.start()
    try:
        with open_store(cli_store) as store:
            store.create(node("n2"))
            store.delete("Node", "n1")
        deadline = time.monotonic() + 10
        while "(deleted)" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        watcher.join(timeout=10)
        ctx.close()
    lines = [line.split()[0] for line in out.getvalue().splitlines()]
    assert lines == ["NAME", "n1", "n2", "n1"]
    assert out.getvalue().splitlines()[-1].endswith("(deleted)")


def test_version_usage_errors_and_an_unreachable_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from swarmapply import __version__

    assert run(capsys, "version") == (0, f"swarmapply {__version__}\n", "")
    with pytest.raises(SystemExit) as usage:
        main(["get"])
    assert usage.value.code == 2
    assert "usage: swarmapply get" in capsys.readouterr().err
    code, _, err = run(capsys, "--store", "mongodb://127.0.0.1:1/x", "get", "jobs")
    assert code == 1
    assert err.count("\n") == 1 and "mongodb://127.0.0.1:1/x" in err
    code, _, err = run(capsys, "get", "jobs", "--store", f"sqlite:///{tmp_path}")
    assert code == 1 and "unable to open" in err and "Traceback" not in err


def test_the_command_runs_as_a_program(tmp_path: Path, cli_store: str) -> None:
    import subprocess
    import sys

    source = ROOT / "manifests"
    applied = subprocess.run(
        [sys.executable, "-m", "swarmapply", "-f", str(source), "-R"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    assert "job.swarmapply.io/hello created" in applied.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "swarmapply", "get", "jobs", "-o", "name"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "job.swarmapply.io/hello" in listed.stdout.split()


@pytest.mark.parametrize(
    "command",
    ["apply", "diff", "get", "describe", "delete", "explain", "wait", "completion", "version"],
)
def test_every_command_documents_examples_in_its_help(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and f"swarmapply {command}" in out.split("example", 1)[1]


def test_apply_never_imposes_defaults_the_manifest_did_not_set(
    tmp_path: Path, cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB)  # sets neither priority nor restartPolicy
    run(capsys, "-f", str(manifest))
    with open_store(cli_store) as store:
        live = store.get("Job", "web")
        assert live["spec"]["priority"] == 0  # the default, filled in on create
        store.update({**live, "spec": {**live["spec"], "priority": 42}})
    assert run(capsys, "diff", "-f", str(manifest))[0] == 0
    assert run(capsys, "-f", str(manifest))[1] == "job.swarmapply.io/web unchanged\n"
    manifest.write_text(JOB.replace("spec:\n", "spec:\n  restartPolicy: OnFailure\n"))
    run(capsys, "-f", str(manifest))
    manifest.write_text(JOB)  # removing restartPolicy again brings back its default
    run(capsys, "-f", str(manifest))
    with open_store(cli_store) as store:
        spec = store.get("Job", "web")["spec"]
    assert spec["priority"] == 42 and spec["restartPolicy"] == "Never"


def test_apply_refuses_unnamed_objects_and_empty_input(
    tmp_path: Path, cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "gen.yaml"
    manifest.write_text(JOB.replace("name: web", "generateName: web-"))
    code, _, err = run(capsys, "-f", str(manifest))
    assert code == 1 and "metadata.name: apply needs a name" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "-f", str(tmp_path / "empty"))
    assert code == 1 and "no objects found" in err
    with open_store(cli_store) as store:
        assert store.list("Job").items == []


def test_get_reports_missing_names_but_shows_the_rest(
    tmp_path: Path, cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB)
    run(capsys, "-f", str(manifest))
    code, out, err = run(capsys, "get", "job", "missing", "web", "-o", "name")
    assert (code, out) == (1, "job.swarmapply.io/web\n")
    assert 'Job "missing" not found' in err
    code, _, err = run(capsys, "get", "job", "web", "-l", "app=web")
    assert code == 2 and "not both" in err
    assert run(capsys, "get", "migrations", "-o", "name")[1] == ""


def test_store_passwords_never_appear_in_messages(capsys: pytest.CaptureFixture[str]) -> None:
    from swarmapply.api.store import redact_url

    assert redact_url("mongodb://admin:s3cret@db:27017/x") == "mongodb://admin:***@db:27017/x"
    assert redact_url("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
    code, _, err = run(capsys, "get", "jobs", "--store", "mongodb://admin:s3cret@127.0.0.1:1/x")
    assert code == 1 and "s3cret" not in err and "admin:***@" in err


def test_get_events_shows_what_happened_oldest_first(
    cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_store(cli_store) as store:
        for name, when, reason in (("b", "2026-01-02T00:00:00Z", "Later"),
                                   ("a", "2026-01-03T00:00:00Z", "Latest"),
                                   ("c", "2026-01-01T00:00:00Z", "Earliest")):  # fmt: skip
            store.create({
                "apiVersion": "swarmapply.io/v1", "kind": "Event", "metadata": {"name": name},
                "involvedObject": {"kind": "Job", "name": "web", "uid": "u"},
                "type": "Normal", "reason": reason, "message": f"{reason} thing", "count": 2,
                "lastTimestamp": when,
            })  # fmt: skip
    lines = run(capsys, "get", "ev")[1].splitlines()
    assert lines[0].split()[:7] == ["NAME", "LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert [line.split()[0] for line in lines[1:]] == ["c", "b", "a"]
    assert "job/web" in lines[1] and "Earliest thing (x2)" in lines[1]


def test_watch_as_json_is_one_stream_of_events(cli_store: str) -> None:
    import io
    import json as jsonlib
    import threading
    import time

    from swarmapply.cli.context import Context
    from swarmapply.cli.get import run as get_run
    from swarmapply.cli.main import build_parser

    node = {"apiVersion": "swarmapply.io/v1", "kind": "Node", "spec": {}}
    with open_store(cli_store) as store:
        store.create({**node, "metadata": {"name": "n1"}})
    out, stop = io.StringIO(), threading.Event()
    ctx = Context(stdout=out)
    args = build_parser().parse_args(["get", "nodes", "-w", "-o", "json"])
    watcher = threading.Thread(target=get_run, args=(args, ctx, stop))
    watcher.start()
    try:
        with open_store(cli_store) as store:
            store.create({**node, "metadata": {"name": "n2"}})
        deadline = time.monotonic() + 10
        while out.getvalue().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        watcher.join(timeout=10)
        ctx.close()
    events = [jsonlib.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "n1"),
        ("ADDED", "n2"),
    ]


def test_a_dangling_link_in_a_directory_is_reported(
    tmp_path: Path, cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "a.yaml").write_text(JOB)
    (tmp_path / "jobs" / "gone.yaml").symlink_to(tmp_path / "nowhere.yaml")
    code, out, err = run(capsys, "-f", str(tmp_path / "jobs"))
    assert code == 1 and out == "" and "gone.yaml" in err


def test_the_apply_shorthand_follows_global_options_and_ignores_file_names(
    tmp_path: Path,
    cli_store: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "version").write_text(JOB)  # a file named like a command
    assert run(capsys, "--debug", "-f", "version")[1] == "job.swarmapply.io/web created\n"
    assert run(capsys, "--store", cli_store, "-f", "version")[1] == (
        "job.swarmapply.io/web unchanged\n"
    )


def test_objects_held_by_finalizers_show_as_terminating(
    cli_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_store(cli_store) as store:
        store.create({"apiVersion": "swarmapply.io/v1", "kind": "Job",
                      "metadata": {"name": "held", "finalizers": ["x"]},
                      "spec": {"tasks": []}})  # fmt: skip
        store.delete("Job", "held")
    assert run(capsys, "get", "jobs")[1].splitlines()[1].split()[1] == "Terminating"
