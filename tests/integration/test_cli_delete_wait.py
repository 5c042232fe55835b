"""The delete, wait and completion commands against a real embedded (SQLite) store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from swarmapply.api.store import NotFound, Store, open_store
from swarmapply.cli.main import main

JOB_MANIFEST = """\
apiVersion: swarmapply.io/v1
kind: Job
metadata:
  name: web
spec:
  tasks:
    - {name: server, image: busybox, command: sleep 30, cores: 2, memory: 64m}
"""


@pytest.fixture
def store(store: Store, cli_store: str) -> Store:
    """Each store backend in turn, as the command line's default store."""
    return store


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Runs a command that must fail as bad usage (exit 2); returns its stderr."""
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    assert exc.value.code == 2
    return capsys.readouterr().err


def make_job(store: Store, name: str, finalizers: list[str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if finalizers:
        metadata["finalizers"] = finalizers
    return store.create(
        {"apiVersion": "swarmapply.io/v1", "kind": "Job", "metadata": metadata, "spec": {}}
    )


def make_task(store: Store, name: str, owner: dict[str, Any]) -> dict[str, Any]:
    ref = {"kind": "Job", "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}
    return store.create(
        {
            "apiVersion": "swarmapply.io/v1",
            "kind": "Task",
            "metadata": {"name": name, "ownerReferences": [ref]},
            "spec": {},
        }
    )


def exists(store: Store, kind: str, name: str) -> bool:
    try:
        store.get(kind, name)
    except NotFound:
        return False
    return True


def later(store_url: str, action: Callable[[Store], None], delay: float = 0.3) -> threading.Thread:
    """Runs ``action`` on its own store connection after ``delay`` seconds, in a thread."""

    def body() -> None:
        time.sleep(delay)
        with open_store(store_url) as own:
            action(own)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------------------------- delete


def test_delete_by_name_cascades_to_owned_tasks(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    job = make_job(store, "web")
    make_task(store, "web-0", job)
    make_task(store, "web-1", job)
    make_job(store, "other")
    assert run(capsys, "delete", "job", "web", "other") == (
        0,
        "job.swarmapply.io/web deleted\njob.swarmapply.io/other deleted\n",
        "",
    )
    assert store.list("Job").items == []
    assert store.list("Task").items == []


def test_delete_without_cascade_orphans_tasks(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    job = make_job(store, "web")
    make_task(store, "web-0", job)
    code, out, _ = run(capsys, "delete", "jobs", "web", "--cascade=false")
    assert (code, out) == (0, "job.swarmapply.io/web deleted\n")
    task = store.get("Task", "web-0")
    assert not task["metadata"].get("ownerReferences")


def test_delete_by_manifest(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB_MANIFEST)
    assert run(capsys, "apply", "-f", str(manifest))[0] == 0
    assert run(capsys, "delete", "-f", str(manifest)) == (0, "job.swarmapply.io/web deleted\n", "")
    assert not exists(store, "Job", "web")


def test_delete_by_invalid_manifest_deletes_nothing(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    make_job(store, "web")
    (tmp_path / "a.yaml").write_text(JOB_MANIFEST)
    (tmp_path / "b.yaml").write_text(JOB_MANIFEST.replace("cores: 2", "cores: 0"))
    code, out, err = run(capsys, "delete", "-f", str(tmp_path))
    assert code == 1 and out == ""
    assert "nothing was changed" in err
    assert exists(store, "Job", "web")


def test_delete_missing_object_reports_and_continues(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    make_job(store, "b")
    code, out, err = run(capsys, "delete", "job", "a", "b")
    assert code == 1
    assert out == "job.swarmapply.io/b deleted\n"
    assert err == 'error: Job "a" not found\n'
    assert run(capsys, "delete", "job", "a", "--ignore-not-found") == (0, "", "")


def test_delete_with_finalizers_only_marks(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    make_job(store, "web", ["example.io/a", "example.io/b"])
    code, out, err = run(capsys, "delete", "job/web")
    assert (code, err) == (0, "")
    assert (
        out
        == "job.swarmapply.io/web marked for deletion (finalizers: example.io/a, example.io/b)\n"
    )
    assert store.get("Job", "web")["metadata"]["deletionTimestamp"]


def test_delete_force_removes_finalizers_with_a_warning(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    make_job(store, "web", ["example.io/a", "example.io/b"])
    make_job(store, "marked", ["example.io/a"])
    store.delete("Job", "marked")
    code, out, err = run(capsys, "delete", "job", "web", "marked", "--force")
    assert code == 0
    assert out == "job.swarmapply.io/web deleted\njob.swarmapply.io/marked deleted\n"
    assert err == (
        "warning: removing finalizers [example.io/a, example.io/b] from job.swarmapply.io/web "
        "without waiting for their owners\n"
        "warning: removing finalizers [example.io/a] from job.swarmapply.io/marked "
        "without waiting for their owners\n"
    )
    assert store.list("Job").items == []


def test_delete_wait_returns_once_the_finalizer_is_removed(
    store_url: str, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    make_job(store, "web", ["example.io/a"])

    def release(own: Store) -> None:
        job = own.get("Job", "web")
        del job["metadata"]["finalizers"]
        own.update(job)

    thread = later(store_url, release)
    started = time.monotonic()
    code, out, err = run(capsys, "delete", "job", "web", "--wait", "--timeout", "10s")
    thread.join()
    assert (code, err) == (0, "")
    assert out == (
        "job.swarmapply.io/web marked for deletion (finalizers: example.io/a)\n"
        "job.swarmapply.io/web deleted\n"
    )
    assert 0.2 < time.monotonic() - started < 5
    assert not exists(store, "Job", "web")


def test_delete_wait_times_out(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    make_job(store, "web", ["example.io/a"])
    code, _, err = run(capsys, "delete", "job", "web", "--wait", "--timeout", "0.2")
    assert code == 1
    assert err == (
        "error: timed out after 0.2s waiting for job.swarmapply.io/web: "
        "still exists (marked for deletion, finalizers: example.io/a)\n"
    )


def test_delete_bad_usage(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert "KIND NAME" in usage_error(capsys, "delete")
    assert "KIND" in usage_error(capsys, "delete", "job")
    assert "not both" in usage_error(capsys, "delete", "job", "x", "-f", "x.yaml")
    assert "--cascade" in usage_error(capsys, "delete", "job", "x", "--cascade=maybe")
    assert "--timeout" in usage_error(capsys, "delete", "job", "x", "--timeout", "soon")


# ------------------------------------------------------------------------------------ wait


def set_phase(phase: str, name: str = "web") -> Callable[[Store], None]:
    def action(own: Store) -> None:
        job = own.get("Job", name)
        own.update_status({**job, "status": {"phase": phase}})

    return action


def test_wait_phase_already_met(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    make_job(store, "web")
    set_phase("Succeeded")(store)
    assert run(capsys, "wait", "job/web", "--for=phase=Succeeded") == (
        0,
        "job.swarmapply.io/web condition met\n",
        "",
    )
    assert run(capsys, "wait", "job", "web", "--for", "phase=succeeded")[0] == 0


def test_wait_phase_met_later(
    store_url: str, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    make_job(store, "web")
    set_phase("Running")(store)
    thread = later(store_url, set_phase("Succeeded"))
    started = time.monotonic()
    code, out, err = run(capsys, "wait", "job/web", "--for=phase=Succeeded", "--timeout", "10s")
    thread.join()
    assert (code, out, err) == (0, "job.swarmapply.io/web condition met\n", "")
    assert 0.2 < time.monotonic() - started < 5


def test_wait_for_an_object_created_later(
    store_url: str, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    def create(own: Store) -> None:
        make_job(own, "web")
        set_phase("Running")(own)

    thread = later(store_url, create)
    code, out, _ = run(capsys, "wait", "job/web", "--for=phase=Running", "--timeout", "10s")
    thread.join()
    assert (code, out) == (0, "job.swarmapply.io/web condition met\n")


def test_wait_times_out(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    make_job(store, "web")
    set_phase("Running")(store)
    started = time.monotonic()
    code, out, err = run(capsys, "wait", "job/web", "--for=phase=Succeeded", "--timeout", "1s")
    assert (code, out) == (1, "")
    assert err == (
        "error: timed out after 1s waiting for job.swarmapply.io/web: "
        "phase is Running, want Succeeded\n"
    )
    assert 0.9 < time.monotonic() - started < 5
    code, _, err = run(capsys, "wait", "job/gone", "--for=phase=Running", "--timeout", "0.1")
    assert (code, err) == (
        1,
        "error: timed out after 0.1s waiting for job.swarmapply.io/gone: not found\n",
    )


def test_wait_condition(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    job = make_job(store, "web")
    store.update_status({**job, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert run(capsys, "wait", "job/web", "--for=condition=Ready")[0] == 0
    assert run(capsys, "wait", "job/web", "--for=condition=ready=true")[0] == 0
    code, _, err = run(capsys, "wait", "job/web", "--for=condition=Ready=False", "--timeout", "0")
    assert code == 1
    assert err.endswith("job.swarmapply.io/web: condition Ready is True, want False\n")


def test_wait_for_delete(store_url: str, store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "wait", "job/absent", "--for=delete") == (
        0,
        "job.swarmapply.io/absent condition met\n",
        "",
    )
    make_job(store, "web")

    def delete(own: Store) -> None:
        own.delete("Job", "web")

    thread = later(store_url, delete)
    code, out, _ = run(capsys, "wait", "job/web", "--for=delete", "--timeout", "10s")
    thread.join()
    assert (code, out) == (0, "job.swarmapply.io/web condition met\n")


@pytest.mark.parametrize(
    "argv",
    [
        ["job/web", "--for=phase"],
        ["job/web", "--for=ready"],
        ["job/web", "--for=condition="],
        ["job/web", "--for=delete=yes"],
        ["job/web"],
        ["job", "--for=delete"],
        ["job/web", "other", "--for=delete"],
        ["job/web", "--for=delete", "--timeout", "-1"],
    ],
)
def test_wait_bad_usage_exits_2(
    argv: list[str], store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "usage:" in usage_error(capsys, "wait", *argv)


# ------------------------------------------------------------------------------ completion


def test_completion_bash_is_valid_and_complete(capsys: pytest.CaptureFixture[str]) -> None:
    code, script, _ = run(capsys, "completion", "bash")
    assert code == 0
    assert "describe" in script and "jobs" in script and "--cascade" in script
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    subprocess.run([bash, "-n"], input=script, text=True, check=True)
    probe = script + (
        '\nCOMP_WORDS=(swarmapply get ""); COMP_CWORD=2; _swarmapply; echo "${COMPREPLY[*]}"'
        '\nCOMP_WORDS=(swarmapply de); COMP_CWORD=1; _swarmapply; echo "${COMPREPLY[*]}"'
        '\nCOMP_WORDS=(swarmapply get -o ""); COMP_CWORD=3; _swarmapply; echo "${COMPREPLY[*]}"'
    )
    result = subprocess.run([bash], input=probe, text=True, capture_output=True, check=True)
    kinds, commands, outputs = result.stdout.splitlines()
    assert {"job", "jobs", "no", "ev"} <= set(kinds.split())
    assert commands.split() == ["describe", "delete"]
    assert outputs.split() == ["table", "wide", "yaml", "json", "name"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_completion_zsh_and_fish(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, script, _ = run(capsys, "completion", shell)
    assert code == 0
    assert "describe" in script and "jobs" in script
    if shell == "zsh":
        assert "--for" in script
        assert script.startswith("#compdef swarmapply\n") and "compdef _swarmapply" in script
    else:
        assert "-l for -x" in script and "-s f -l filename -r -F" in script
    binary = shutil.which(shell)
    if binary is not None:
        subprocess.run([binary, "-n"], input=script, text=True, check=True)


def test_help_epilogs_show_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for command, text in [
        ("delete", "--ignore-not-found"),
        ("wait", "--for=phase=Succeeded"),
        ("completion", "source <(swarmapply completion bash)"),
    ]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert text in capsys.readouterr().out


# ------------------------------------------------------------------------------ subprocess


def test_subprocess_delete_wait_and_completion(store_url: str, store: Store) -> None:
    env = {**os.environ, "SWARMAPPLY_STORE": store_url}

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "swarmapply", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    job = make_job(store, "web")
    make_task(store, "web-0", job)
    result = cli("delete", "job", "web", "missing")
    assert (result.returncode, result.stdout) == (1, "job.swarmapply.io/web deleted\n")
    assert result.stderr == 'error: Job "missing" not found\n'
    assert not exists(store, "Task", "web-0")
    result = cli("wait", "job/web", "--for=delete")
    assert (result.returncode, result.stdout) == (0, "job.swarmapply.io/web condition met\n")
    result = cli("wait", "job/web", "--for=bogus")
    assert result.returncode == 2 and "invalid condition 'bogus'" in result.stderr
    result = cli("completion", "bash")
    assert result.returncode == 0
    assert subprocess.run(["bash", "-n"], input=result.stdout, text=True).returncode == 0


def test_wait_for_pending_holds_for_an_object_with_no_phase_yet(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    store.create({"apiVersion": "swarmapply.io/v1", "kind": "Node", "metadata": {"name": "n"},
                  "spec": {}})  # fmt: skip
    code, out, _ = run(capsys, "wait", "node/n", "--for=phase=Pending", "--timeout", "5s")
    assert code == 0 and "condition met" in out


def test_bash_completion_offers_files_after_the_shorthand_and_wait_forms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "completion.bash"
    script.write_text(capsys.readouterr().out)
    (tmp_path / "job.yaml").write_text("")
    probe = (
        f"source {script}; cd {tmp_path}; "
        'COMP_WORDS=(swarmapply -f ""); COMP_CWORD=2; _swarmapply; echo "${COMPREPLY[*]}"; '
        'COMP_WORDS=(swarmapply wait job/x --for ""); COMP_CWORD=4; _swarmapply; '
        'echo "${COMPREPLY[*]}"'
    )
    shown = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    after_f, after_for = shown.stdout.splitlines()
    assert "job.yaml" in after_f.split()
    assert after_for.split() == ["phase=", "condition=", "delete"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--for=condition=Ready=maybe"], "condition=TYPE[=True|False|Unknown]"),
        (["--for=delete", "--timeout", "1e400"], "must be a finite number"),
    ],
)
def test_wait_rejects_conditions_and_timeouts_it_cannot_honour(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["wait", "job/x", *flags])
    assert usage.value.code == 2 and message in capsys.readouterr().err
