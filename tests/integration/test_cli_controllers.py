"""``swarmapply controllers``: options, in-process runs and real processes stopped by signals.

Most runs use a tiny controller registered through ``SWARMAPPLY_CONTROLLER_PLUGINS`` (a module
written into the test's directory) so that they test the command, not a real control loop; one
run starts the real job controller.
"""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from swarmapply.api.store import NotFound, Store
from swarmapply.cli.context import Context
from swarmapply.cli.controllers import run as run_controllers_command
from swarmapply.cli.main import build_parser, main
from swarmapply.controllers.manager import PLUGINS_ENV
from tests.integration.helpers import Fleet, wait_for

PLUGIN = """\
import threading


class Idle:
    name = "idle"

    def run(self, stop: threading.Event) -> None:
        stop.wait()


def build(store, settings):
    return Idle()
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Registers the controller ``idle``; returns the environment for child processes."""
    (tmp_path / "swarmapply_test_idle.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(PLUGINS_ENV, "idle=swarmapply_test_idle:build")
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """SQLite only (the ``store`` fixture opens it): the command is the same on every backend."""
    return f"sqlite:///{tmp_path}/state.db"


def holder(store: Store, controller: str) -> str | None:
    """The holder of a controller's Lease; None while there is no Lease."""
    try:
        lease = store.get("Lease", f"controller-{controller}")
    except NotFound:
        return None
    value: str = lease["spec"]["holderIdentity"]
    return value


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Runs a command that must fail with status 2; returns its stderr."""
    assert main(list(argv)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    return err


def test_unknown_controllers_are_a_usage_error(
    capsys: pytest.CaptureFixture[str], store_url: str
) -> None:
    err = usage_error(capsys, "controllers", "--only", "nosuch", "--store", store_url)
    known = "job, scheduler, deployer, migrator, nodes, pruner"
    assert err == f"error: unknown controller 'nosuch'; known: {known}\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--strategy", "worst-fit"], "error: --strategy: expected one of first-fit, best-fit"),
        (
            ["--batch-window", "-1"],
            "error: --batch-window: expected a number of seconds >= 0, got '-1'",
        ),
        (
            ["--starvation-seconds", "-5"],
            "error: --starvation-seconds: expected a number of seconds >= 0",
        ),
        (["--workers", "0"], "error: --workers: expected at least 1"),
        (
            ["--lease-duration", "0"],
            "error: --lease-duration: expected a number of seconds > 0, got '0'",
        ),
        (["--only", "job,,scheduler"], "error: --only: expected controller names"),
        (["--identity", "two words"], "error: --identity: expected one word"),
    ],
)
def test_invalid_values_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], store_url: str, argv: list[str], message: str
) -> None:
    err = usage_error(capsys, "controllers", "--store", store_url, *argv)
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_a_missing_controller_module_is_an_error_naming_it(
    capsys: pytest.CaptureFixture[str], store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PLUGINS_ENV, "gone=swarmapply_no_such_module:build")
    assert main(["controllers", "--only", "gone", "--store", store_url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: controller 'gone' cannot be loaded: No module named")


def test_help_lists_options_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["controllers", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for text in ("--only NAMES", "--lease-duration", "known: job, scheduler", "examples:"):
        assert text in out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "controllers" in capsys.readouterr().out


def test_runs_until_stopped_and_releases_its_lease(
    plugin: dict[str, str], store_url: str, store: Store
) -> None:
    args = build_parser().parse_args(
        ["controllers", "--only", "idle", "--lease-duration", "1", "--identity", "proc-1"]
    )
    stderr = io.StringIO()
    ctx = Context(store_flag=store_url, stderr=stderr)
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(run_controllers_command(args, ctx, stop)), daemon=True
    )
    thread.start()
    try:
        wait_for(lambda: holder(store, "idle") == "proc-1", what="the lease to be taken")
    finally:
        stop.set()
        thread.join(5)
        ctx.close()
    assert result == [0]
    assert holder(store, "idle") == ""  # released on the way out
    lines = stderr.getvalue().splitlines()
    assert any("controllers idle starting as proc-1" in line for line in lines)
    assert any("lease controller-idle: acquired by proc-1" in line for line in lines)
    assert any("lease controller-idle: released by proc-1" in line for line in lines)
    assert lease_spec_duration(store, "idle") == 1


def lease_spec_duration(store: Store, controller: str) -> int:
    value: int = store.get("Lease", f"controller-{controller}")["spec"]["leaseDurationSeconds"]
    return value


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_process_stops_cleanly_on_a_signal(
    plugin: dict[str, str], store_url: str, store: Store, sig: int, tmp_path: Path
) -> None:
    with Fleet(tmp_path, env=plugin) as fleet:
        process = fleet.start(
            "--only", "idle", "--store", store_url, "--identity", "p1", "--lease-duration", "1"
        )
        wait_for(lambda: holder(store, "idle") == "p1" or not process.alive())
        started = time.monotonic()
        code = process.stop(sig)
    err = process.output()
    assert code == 0, err
    assert time.monotonic() - started < 3.0
    assert f"{signal.Signals(sig).name} received: stopping" in err
    assert "lease controller-idle: released by p1" in err
    assert holder(store, "idle") == ""


def test_killing_the_active_process_moves_the_controller(
    plugin: dict[str, str], store_url: str, store: Store, tmp_path: Path
) -> None:
    options = ("--only", "idle", "--store", store_url, "--lease-duration", "1")
    with Fleet(tmp_path, *options, env=plugin) as fleet:
        first = fleet.start("--identity", "p1")
        wait_for(lambda: holder(store, "idle") == "p1", what="p1 to lead")
        second = fleet.start("--identity", "p2")
        time.sleep(1.0)  # p2 is up and following
        assert holder(store, "idle") == "p1"
        killed = time.monotonic()
        first.kill()  # no release: p2 must wait out the lease
        wait_for(lambda: holder(store, "idle") == "p2", 5.0, "p2 to take over")
        took = time.monotonic() - killed
        assert 0.5 <= took <= 2.5
        code = second.stop()
        err = second.output()
        assert code == 0, err
        assert "lease controller-idle: held by p1" in err
        assert "lease controller-idle: acquired by p2 (transitions: 1)" in err


@pytest.mark.skipif(
    importlib.util.find_spec("swarmapply.controllers.job") is None,
    reason="the job controller (swarmapply.controllers.job) is not part of this checkout yet",
)
def test_the_job_controller_runs_in_its_own_process(
    store_url: str, store: Store, tmp_path: Path
) -> None:
    with Fleet(tmp_path) as fleet:
        process = fleet.start("--only", "job", "--store", store_url, "--identity", "j1")
        wait_for(lambda: holder(store, "job") == "j1" or not process.alive())
        assert process.alive(), process.output()
        code = process.stop()
    err = process.output()
    assert code == 0, err
    assert "lease controller-job: released by j1" in err
    assert holder(store, "job") == ""


@pytest.mark.skipif(
    any(
        importlib.util.find_spec(f"swarmapply.controllers.{name}") is None
        for name in ("job", "scheduler")
    ),
    reason="the job and scheduler controllers are not both part of this checkout yet",
)
def test_every_registered_controller_is_the_default_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    recorded: dict[str, Any] = {}

    def fake_run(self: Any, stop: threading.Event) -> None:
        recorded["names"] = self.names

    monkeypatch.setattr("swarmapply.controllers.manager.ControllerManager.run", fake_run)
    assert main(["controllers", "--store", store_url]) == 0
    assert recorded["names"] == ["job", "scheduler", "deployer", "migrator", "nodes", "pruner"]
    capsys.readouterr()
