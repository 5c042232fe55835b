"""``swarmapply sync``: a watched directory on the real filesystem, kept applied in a real store.

File changes reach the loop through watchdog's real inotify observer; stores are SQLite and
the MongoDB-protocol server. No controllers run: sync's business is the objects, not tasks.
"""

from __future__ import annotations

import io
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from swarmapply.api.admission import admit_paths
from swarmapply.api.store import NotFound, Store, open_store
from swarmapply.cli.apply import apply_one
from swarmapply.cli.main import main
from swarmapply.cli.sync import Syncer, SyncOptions, watch
from swarmapply.cli.sync_plan import FILE_ANNOTATION, SOURCE_LABEL, source_id
from tests.integration.helpers import seconds_until, wait_for

#: Seconds a change may take to reach the store (debounce 0.3 s + a pass).
FOLLOW = 5.0


def job_yaml(name: str, command: str = "sleep 1", cores: Any = 1, team: str = "ml") -> str:
    return (
        "apiVersion: swarmapply.io/v1\nkind: Job\n"
        f"metadata:\n  name: {name}\n  labels:\n    team: {team}\n"
        f"spec:\n  tasks:\n    - name: a\n      image: busybox:1.36\n"
        f"      command: [sh, -c, {command!r}]\n      cores: {cores}\n      memory: 16m\n"
    )


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def get(store: Store, name: str) -> dict[str, Any] | None:
    try:
        return store.get("Job", name)
    except NotFound:
        return None


def command_of(store: Store, name: str) -> list[str] | None:
    job = get(store, name)
    return job["spec"]["tasks"][0]["command"] if job else None


class Watching:
    """A ``sync --watch`` loop on a thread; its output lines collected."""

    def __init__(self, store: Store, options: SyncOptions, interval: float) -> None:
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.syncer = Syncer(lambda: store, options, self.lines.append, self.errors.append,
                             print_unchanged=False)  # fmt: skip
        self.stop = threading.Event()
        self.thread = threading.Thread(target=watch, args=(self.syncer, self.stop, interval))

    def passes(self) -> list[str]:
        return [line for line in self.lines if line.startswith("sync ")]


@contextmanager
def watching(store: Store, directory: Path, interval: float = 60.0, **opts: Any
             ) -> Iterator[Watching]:  # fmt: skip
    options = SyncOptions(str(directory), source_id(str(directory)), **opts)
    w = Watching(store, options, interval)
    w.thread.start()
    try:
        wait_for(lambda: w.passes(), 10, "the first pass")
        yield w
    finally:
        w.stop.set()
        w.thread.join(10)
        assert not w.thread.is_alive(), "the sync loop did not stop within 10 s"


def test_a_watched_directory_is_followed_on_add_modify_rename_and_delete(
    store: Store, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    for name in ("keep1", "keep2"):
        write(repo / f"{name}.yaml", job_yaml(name))
    with watching(store, repo, prune=True) as w:
        assert get(store, "keep1") and get(store, "keep2")
        write(repo / "jobs" / "a.yaml", job_yaml("a"))
        added = seconds_until(lambda: get(store, "a"), FOLLOW, "job a created")
        uid = store.get("Job", "a")["metadata"]["uid"]
        assert store.get("Job", "a")["metadata"]["annotations"][FILE_ANNOTATION] == "jobs/a.yaml"

        write(repo / "jobs" / "a.yaml", job_yaml("a", command="sleep 2"))
        modified = seconds_until(
            lambda: command_of(store, "a") == ["sh", "-c", "sleep 2"], FOLLOW, "job a changed"
        )
        os.rename(repo / "jobs" / "a.yaml", repo / "b.yaml")
        renamed = seconds_until(
            lambda: (get(store, "a") or {}).get("metadata", {}).get("annotations", {})
            .get(FILE_ANNOTATION) == "b.yaml", FOLLOW, "job a re-annotated with b.yaml",
        )  # fmt: skip
        assert store.get("Job", "a")["metadata"]["uid"] == uid  # the same object, not remade

        (repo / "keep2.yaml").unlink()
        deleted = seconds_until(lambda: get(store, "keep2") is None, FOLLOW, "keep2 pruned")
        assert get(store, "keep1") and get(store, "a")
        print(
            f"\nsync follows files: add {added:.2f}s, modify {modified:.2f}s, "
            f"rename {renamed:.2f}s, delete {deleted:.2f}s"
        )
        wait_for(lambda: "job.swarmapply.io/keep2 pruned (keep2.yaml)" in w.lines, FOLLOW,
                 "the prune line")  # fmt: skip
        assert "job.swarmapply.io/a configured (b.yaml)" in w.lines
        assert not w.errors


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_burst_of_100_file_writes_is_a_few_passes(store: Store, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    with watching(store, repo) as w:
        before = len(w.passes())
        for i in range(100):
            write(repo / f"j{i:03d}.yaml", job_yaml(f"j{i:03d}"))
        wait_for(lambda: len(store.list("Job").items) == 100, 20, "100 jobs")
        time.sleep(1.0)  # any pass still due after the burst has run by now
        passes = len(w.passes()) - before
        print(f"\nsync: 100 file writes -> {passes} passes: {w.passes()[before:]}")
        assert 1 <= passes <= 5, w.passes()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_an_invalid_edit_is_reported_and_leaves_the_object_as_it_was(
    store: Store, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    write(repo / "a.yaml", job_yaml("a"))
    write(repo / "b.yaml", job_yaml("b"))
    with watching(store, repo, prune=True, force_prune=True) as w:
        version = store.get("Job", "a")["metadata"]["resourceVersion"]
        write(repo / "a.yaml", job_yaml("a", cores="many"))
        write(repo / "c.yaml", job_yaml("c"))  # other files still sync
        wait_for(lambda: get(store, "c"), FOLLOW, "job c created")
        wait_for(lambda: any("a.yaml" in e and "spec.tasks[0].cores" in e for e in w.errors),
                 FOLLOW, "the error at a.yaml's field")  # fmt: skip
        assert any("a.yaml: skipped" in e for e in w.errors), w.errors
        assert store.get("Job", "a")["metadata"]["resourceVersion"] == version  # untouched

        write(repo / "a.yaml", "kind: Job\nmetadata: {name: a\n")  # no longer even YAML
        wait_for(lambda: sum("a.yaml: skipped" in e for e in w.errors) >= 2, FOLLOW, "2nd error")
        assert store.get("Job", "a")["metadata"]["resourceVersion"] == version

        write(repo / "a.yaml", job_yaml("a", command="sleep 5"))
        wait_for(lambda: command_of(store, "a") == ["sh", "-c", "sleep 5"], FOLLOW, "a fixed")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_prune_deletes_only_what_this_source_applied(store: Store, tmp_path: Path) -> None:
    repo, other = tmp_path / "repo", tmp_path / "other"
    for name in ("mine1", "mine2", "mine3"):
        write(repo / f"{name}.yaml", job_yaml(name))
    write(other / "theirs.yaml", job_yaml("theirs"))
    write(tmp_path / "manual.yaml", job_yaml("manual"))
    [manual] = admit_paths([str(tmp_path / "manual.yaml")], False, io.StringIO())
    apply_one(store, manual, dry_run=False)  # made by plain apply: nobody's source
    errors: list[str] = []
    Syncer(lambda: store, SyncOptions(str(other), source_id(str(other))), print, errors.append
           ).run_pass()  # fmt: skip
    # The repo also claims the apply-made object: it must be left alone.
    write(repo / "manual.yaml", job_yaml("manual", command="sleep 9"))
    lines: list[str] = []
    options = SyncOptions(str(repo), source_id(str(repo)), prune=True)
    report = Syncer(lambda: store, options, lines.append, errors.append).run_pass()
    assert report.errors == 1 and any("--adopt" in e for e in errors), errors
    assert command_of(store, "manual") == ["sh", "-c", "sleep 1"]
    assert SOURCE_LABEL not in store.get("Job", "manual")["metadata"].get("labels", {})

    (repo / "mine1.yaml").unlink()
    (repo / "manual.yaml").unlink()
    Syncer(lambda: store, options, lines.append, errors.append).run_pass()
    assert get(store, "mine1") is None
    assert (
        get(store, "mine2")
        and get(store, "mine3")
        and get(store, "theirs")
        and get(store, "manual")
    )
    assert lines.count("job.swarmapply.io/mine1 pruned (mine1.yaml)") == 1


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_mass_deletion_guard_holds_until_forced(
    store: Store, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    for name in ("a", "b", "c", "d"):
        write(repo / f"{name}.yaml", job_yaml(name))
    url = store_url  # the command opens the test's store anew
    assert main(["sync", str(repo), "--prune", "--store", url]) == 0
    for name in ("b", "c", "d"):  # a checkout half-way through a branch switch
        (repo / f"{name}.yaml").unlink()
    capsys.readouterr()
    assert main(["sync", str(repo), "--prune", "--store", url]) == 1
    out, err = capsys.readouterr()
    assert "would prune 3 of the 4 objects" in err and "--force-prune" in err, err
    assert sorted(j["metadata"]["name"] for j in store.list("Job").items) == ["a", "b", "c", "d"]
    assert main(["sync", str(repo), "--prune", "--force-prune", "--store", url]) == 0
    out, err = capsys.readouterr()
    assert [j["metadata"]["name"] for j in store.list("Job").items] == ["a"]
    assert "3 pruned" in out, out


def test_drift_is_repaired_with_an_event(store: Store, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write(repo / "a.yaml", job_yaml("a"))
    write(repo / "b.yaml", job_yaml("b"))
    with watching(store, repo, interval=0.5, prune=True) as w:
        live = store.get("Job", "a")
        live["spec"]["tasks"][0]["command"] = ["sh", "-c", "echo changed by hand"]
        store.update(live)
        wait_for(lambda: command_of(store, "a") == ["sh", "-c", "sleep 1"], FOLLOW, "a repaired")
        store.delete("Job", "b")
        wait_for(lambda: get(store, "b"), FOLLOW, "b recreated")
        wait_for(lambda: "job.swarmapply.io/b recreated (b.yaml)" in w.lines, FOLLOW, "b line")
        assert "job.swarmapply.io/a repaired (a.yaml)" in w.lines

        def events() -> set[tuple[str, str]]:
            return {(e["involvedObject"]["name"], e["reason"]) for e in store.list("Event").items}

        wanted = {("a", "DriftRepaired"), ("b", "DriftRepaired")}
        wait_for(lambda: wanted <= events(), FOLLOW, "both DriftRepaired Events")
        messages = [e["message"] for e in store.list("Event").items]
        assert any("was changed out of band" in m for m in messages), messages
        assert any("was deleted out of band" in m for m in messages), messages


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_dry_run_writes_nothing(
    store: Store, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    write(repo / "a.yaml", job_yaml("a"))
    write(repo / "b.yaml", job_yaml("b"))
    url = store_url  # the command opens the test's store anew
    assert main(["sync", str(repo), "--store", url]) == 0
    write(repo / "a.yaml", job_yaml("a", command="sleep 3"))
    write(repo / "c.yaml", job_yaml("c"))
    (repo / "b.yaml").unlink()
    revision = store.revision()
    capsys.readouterr()
    assert main(["sync", str(repo), "--prune", "--dry-run", "--store", url]) == 0
    out, _ = capsys.readouterr()
    assert store.revision() == revision
    assert "job.swarmapply.io/a configured (a.yaml) (dry run)" in out
    assert "job.swarmapply.io/c created (c.yaml) (dry run)" in out
    assert "job.swarmapply.io/b pruned (b.yaml) (dry run)" in out
    assert get(store, "b") and get(store, "c") is None


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_sync_as_a_service_idles_cheaply_and_stops_on_sigterm(
    store_url: str, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    write(repo / "a.yaml", job_yaml("a"))
    process = subprocess.Popen(
        [sys.executable, "-m", "swarmapply", "sync", str(repo), "--watch", "--store", store_url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        store = open_store(store_url)
        wait_for(lambda: get(store, "a"), 20, "job a applied by the service")
        time.sleep(0.5)
        before = cpu_seconds(process.pid)
        time.sleep(3.0)
        idle = (cpu_seconds(process.pid) - before) / 3.0
        write(repo / "b.yaml", job_yaml("b"))
        wait_for(lambda: get(store, "b"), FOLLOW, "job b applied by the service")
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        output = process.stdout.read() if process.stdout else ""
        print(f"\nsync --watch idle: {idle:.2%} of one core")
        assert idle < 0.05, f"an idle sync used {idle:.1%} of a core"
        assert "SIGTERM received" in output and "sync: stopped" in output, output
        store.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Outage:
    """A loopback TCP forwarder to a server that can be cut (all connections) and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for s in self._sockets:
                s.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            a.close()
            b.close()


@pytest.mark.mongodb
def test_a_watching_sync_reconnects_after_a_store_outage(
    mongodb_store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="swarmapply.cli.sync")
    host_port, database = mongodb_store_url.split("//", 1)[1].split("/", 1)
    host, port = host_port.rsplit(":", 1) if ":" in host_port else (host_port, "27017")
    outage = Outage((host, int(port)))
    url = f"mongodb://127.0.0.1:{outage.port}/{database}?serverSelectionTimeoutMS=1000"
    repo = tmp_path / "repo"
    write(repo / "a.yaml", job_yaml("a"))
    store = open_store(url)
    try:
        with watching(store, repo, interval=0.5) as w:
            direct = open_store(mongodb_store_url)
            assert get(direct, "a")
            outage.cut()
            write(repo / "b.yaml", job_yaml("b"))
            wait_for(lambda: "retrying with backoff" in caplog.text, 15, "a failed pass")
            time.sleep(2.0)  # passes keep failing meanwhile, retried with backoff
            assert get(direct, "b") is None
            assert "job.swarmapply.io/b created (b.yaml)" not in w.lines
            outage.restore()
            back = seconds_until(lambda: get(direct, "b"), 40, "job b applied after the outage")
            print(f"\nsync: job b applied {back:.2f}s after the store came back")
            direct.close()
    finally:
        outage.cut()
        store.close()
