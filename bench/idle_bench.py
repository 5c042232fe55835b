"""Idle cost of ``swarmapply up``: CPU it uses over a window with nothing to do.

``swarmapply up`` runs as a child process on a fresh SQLite store in a temporary directory,
with no manifests (so it serves until stopped), the agent's driver chosen as ``up`` chooses it
(docker when an engine answers, else sim) and a node name unique to the run (``--name``), so
that its agent and pruner only ever consider containers of this run. Once its Node is
registered and ``--settle-seconds`` more have passed (start-up work is not idle work), its CPU
time is read from ``/proc/<pid>/stat`` (utime + stime, plus cutime + cstime of children it
waited for, plus the same of any live descendants) at the start and at the end of an
``--idle-seconds`` window; the figure is CPU seconds per wall second, in per cent of one core.
Its resident memory (``VmRSS``) at the end is reported too.

Baseline, in the same window: a Python process that imported the same command modules and
sleeps, read the same way (the floor of the measurement: it should be about 0).

The process is stopped by its pid with SIGTERM (then SIGKILL after 30 s), and its exit code
and the tail of its log are reported when it did not exit cleanly. Linux only (``/proc``).

Not measured: the store's or the engine's own CPU (dockerd, a MongoDB server), work caused by
other processes on the machine, a cluster with jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from swarmapply.api.store import open_store

#: The baseline process: the same imports as the command, then sleep.
BASELINE = "import swarmapply.cli.main, swarmapply.cli.up, time; time.sleep(100000)"


# ------------------------------------------------------------------------------ pure parts


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` this benchmark reads (clock ticks)."""

    pid: int
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def ticks(self) -> int:
        """utime + stime + cutime + cstime."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> ProcStat:
    """Parses the text of ``/proc/<pid>/stat`` (pure; the command name may hold spaces).

    Raises:
        ValueError: The text is not in that format.
    """
    try:
        pid = int(text.split(" ", 1)[0])
        rest = text[text.rindex(")") + 2 :].split()
        # rest[0] is field 3 (state); ppid is field 4, utime..cstime fields 14..17.
        return ProcStat(pid, int(rest[1]), int(rest[11]), int(rest[12]), int(rest[13]),
                        int(rest[14]))  # fmt: skip
    except (ValueError, IndexError) as exc:
        raise ValueError(f"not a /proc/<pid>/stat line: {text[:80]!r}") from exc


def descendants(root: int, stats: Iterable[ProcStat]) -> list[ProcStat]:
    """The stats of ``root`` and every process below it (pure)."""
    children: dict[int, list[ProcStat]] = {}
    own: ProcStat | None = None
    for s in stats:
        children.setdefault(s.ppid, []).append(s)
        if s.pid == root:
            own = s
    found = [own] if own is not None else []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def cpu_percent(ticks: int, wall: float, hertz: int) -> float:
    """CPU per wall time in per cent of one core (pure)."""
    return 0.0 if wall <= 0 else ticks / hertz / wall * 100.0


# --------------------------------------------------------------------------- measurement


def _all_stats() -> list[ProcStat]:
    stats = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats.append(parse_stat((entry / "stat").read_text()))
        except (OSError, ValueError):
            continue  # the process ended meanwhile
    return stats


def tree_ticks(pid: int) -> int:
    """CPU clock ticks of ``pid`` and its live descendants (and the children they reaped)."""
    return sum(s.ticks for s in descendants(pid, _all_stats()))


def rss_bytes(pid: int) -> int | None:
    """``VmRSS`` of ``pid`` in bytes, or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass
class IdleResult:
    """The figures of one run."""

    window_s: float = 0.0
    cpu_percent: float = 0.0
    baseline_percent: float = 0.0
    rss: int | None = None
    ready_s: float = 0.0
    driver: str = ""
    node: str = ""
    exit_code: int | None = None
    notes: list[str] = field(default_factory=list)


def stop_process(process: subprocess.Popen[bytes], grace: float = 30.0) -> int:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def bench(idle_seconds: float, settle_seconds: float = 5.0, timeout: float = 120.0) -> IdleResult:
    """Runs the benchmark (see the module docstring) and returns its figures.

    Raises:
        RuntimeError: ``swarmapply up`` exited early or registered no Node in ``timeout``.
    """
    result = IdleResult()
    hertz = os.sysconf("SC_CLK_TCK")
    name = f"idle-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="swarmapply-bench-") as tmp:
        url = f"sqlite:///{Path(tmp, 'state.db')}"
        log_path = Path(tmp, "up.log")
        command = [sys.executable, "-m", "swarmapply.cli.main", "--store", url, "up",
                   "--name", name]  # fmt: skip
        with open(log_path, "wb") as log:
            print(f"  starting swarmapply up (node name {name}) ...", flush=True)
            t0 = time.perf_counter()
            up = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            baseline = subprocess.Popen([sys.executable, "-c", BASELINE])
            try:
                with closing(open_store(url)) as store:
                    while True:
                        nodes = store.list("Node").items
                        if nodes:
                            break
                        if up.poll() is not None:
                            raise RuntimeError(f"swarmapply up exited with {up.returncode}")
                        if time.perf_counter() - t0 > timeout:
                            raise RuntimeError(f"no Node registered within {timeout:.0f} s")
                        time.sleep(0.2)
                    result.ready_s = time.perf_counter() - t0
                    result.node = str(nodes[0]["metadata"]["name"])
                    result.driver = str((nodes[0].get("status") or {}).get("driver", "?"))
                print(f"  ready in {result.ready_s:.1f} s ({result.driver} driver); settling "
                      f"{settle_seconds:.0f} s, then idle for {idle_seconds:.0f} s ...",
                      flush=True)  # fmt: skip
                time.sleep(settle_seconds)
                w0 = time.perf_counter()
                up0, base0 = tree_ticks(up.pid), tree_ticks(baseline.pid)
                time.sleep(idle_seconds)
                up1, base1 = tree_ticks(up.pid), tree_ticks(baseline.pid)
                result.window_s = time.perf_counter() - w0
                result.rss = rss_bytes(up.pid)
                if up.poll() is not None:
                    raise RuntimeError(f"swarmapply up exited with {up.returncode} meanwhile")
                result.cpu_percent = cpu_percent(up1 - up0, result.window_s, hertz)
                result.baseline_percent = cpu_percent(base1 - base0, result.window_s, hertz)
            finally:
                result.exit_code = stop_process(up)
                stop_process(baseline)
        if result.exit_code not in (0, None):
            tail = log_path.read_text(errors="replace").splitlines()[-10:]
            result.notes.append(f"swarmapply up exited with {result.exit_code}: {tail}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="the window (60)")
    parser.add_argument("--settle-seconds", type=float, default=5.0,
                        help="wait after registration before the window (5)")  # fmt: skip
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.idle_seconds <= 0 or args.settle_seconds < 0:
        parser.error("--idle-seconds must be positive, --settle-seconds not negative")
    result = bench(args.idle_seconds, args.settle_seconds)
    rss = "?" if result.rss is None else f"{result.rss / 1024**2:.0f} MiB"
    print(
        f"swarmapply up ({result.driver} driver, node {result.node}), idle "
        f"{result.window_s:.1f} s: {result.cpu_percent:.2f} % of one core, RSS {rss}; "
        f"baseline (Python, same imports, asleep): {result.baseline_percent:.2f} %; exit code "
        f"{result.exit_code}"
    )
    for note in result.notes:
        print(note)
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(result), indent=2) + "\n")
    return 0 if result.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
