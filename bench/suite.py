"""The benchmark suite: every benchmark in turn, one table of figures against the issue's goals.

``python -m bench`` runs each benchmark of :data:`BENCHMARKS` in a child process of its own (so
that one benchmark's threads, memory peak or crash cannot touch the next one's figures), collects
the :class:`Figure` rows each child writes as JSON, and prints one table: benchmark, figure,
value, the baseline measured in the same run, ratio (value / baseline), goal and whether it was
met. A description of the machine heads the table; ``--markdown FILE`` writes the same as
Markdown.

What it guarantees: a benchmark that fails, times out or cannot run here (no Docker Engine, no
MongoDB server, not root) leaves a row saying so and the suite goes on; the exit code is 1 only
when a benchmark failed (a skip is not a failure), and a missed goal is reported, never
asserted. What it does not: repeat runs for confidence intervals, or keep a machine quiet;
figures from a busy machine are noisy, so compare rows of one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MONGODB_URL_ENV = "SWARMAPPLY_TEST_MONGODB_URL"
DEFAULT_MONGODB_URL = "mongodb://127.0.0.1:27017"

# ------------------------------------------------------------------------------ pure parts


@dataclass(frozen=True)
class Goal:
    """A goal of the issue: ``value`` (or ``ratio``) compared with ``target``.

    Attributes:
        op: ``<=`` or ``>=``.
        target: The number to compare with.
        on: ``value`` or ``ratio`` (value / baseline).
        text: How the goal reads in the table; by default derived from the others.
    """

    op: str
    target: float
    on: str = "value"
    text: str = ""

    def __post_init__(self) -> None:
        if self.op not in ("<=", ">="):
            raise ValueError(f"goal op: expected <= or >=, got {self.op!r}")
        if self.on not in ("value", "ratio"):
            raise ValueError(f"goal on: expected value or ratio, got {self.on!r}")

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        """Whether the measured figure meets the goal; None when it was not measured."""
        subject = value if self.on == "value" else ratio
        if subject is None or math.isnan(subject):
            return None
        return subject <= self.target if self.op == "<=" else subject >= self.target

    def describe(self, unit: str = "") -> str:
        """The goal as the table shows it."""
        if self.text:
            return self.text
        if self.on == "ratio":
            return f"ratio {self.op} {self.target:g}"
        return f"{self.op} {self.target:g}{' ' + unit if unit else ''}"


@dataclass(frozen=True)
class Figure:
    """One row of the suite's table.

    Attributes:
        benchmark: The benchmark's name (a key of :data:`BENCHMARKS`).
        figure: What was measured, in words.
        value: The measured number; None when not measured (see ``note``).
        unit: The unit of ``value`` and ``baseline``.
        baseline: The same quantity for the baseline, measured in the same run.
        baseline_label: What the baseline is, briefly.
        goal: The issue's goal for this figure, if it sets one.
        note: Why there is no value (skipped, failed), or a short remark.
        digits: Decimals shown for value and baseline.
        ratio_shown: False where value / baseline means nothing (a baseline of about 0).
    """

    benchmark: str
    figure: str
    value: float | None
    unit: str = ""
    baseline: float | None = None
    baseline_label: str = ""
    goal: Goal | None = None
    note: str = ""
    digits: int = 3
    ratio_shown: bool = True

    @property
    def ratio(self) -> float | None:
        """``value / baseline``; None when either is missing, the baseline is 0 or the ratio
        is not shown."""
        if not self.ratio_shown or self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        """Whether the goal was met; None without a goal or a value."""
        return None if self.goal is None else self.goal.met(self.value, self.ratio)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (see :meth:`from_json`)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figure:
        """The figure :meth:`to_json` wrote.

        Raises:
            ValueError: A field is missing or of the wrong shape.
        """
        try:
            goal = data.get("goal")
            return cls(**{**data, "goal": Goal(**goal) if goal else None})
        except TypeError as exc:
            raise ValueError(f"not a figure: {data!r}: {exc}") from exc


@dataclass
class Result:
    """What one benchmark produced: its rows and notes, and whether it failed."""

    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "figures": [f.to_json() for f in self.figures],
            "notes": list(self.notes),
            "failed": self.failed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        """The result :meth:`to_json` wrote."""
        figures = [Figure.from_json(f) for f in data.get("figures", [])]
        return cls(figures, [str(n) for n in data.get("notes", [])], bool(data.get("failed")))


def fmt_number(value: float | None, digits: int = 3) -> str:
    """A number for the table: thousands separated when large, ``-`` when None."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def fmt_ratio(ratio: float) -> str:
    """A ratio for the table: two decimals, or three significant digits when small."""
    return f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.3g}"


def _with_unit(value: float | None, unit: str, digits: int) -> str:
    text = fmt_number(value, digits)
    return f"{text} {unit}" if unit and value is not None else text


def table_rows(figures: Sequence[Figure]) -> list[tuple[str, ...]]:
    """The table's header and one row per figure, as strings (pure)."""
    head = ("benchmark", "figure", "value", "baseline (same run)", "ratio", "goal", "met?")
    rows: list[tuple[str, ...]] = [head]
    for f in figures:
        if f.value is None:
            value = f.note or "not measured"
        else:
            value = _with_unit(f.value, f.unit, f.digits)
        baseline = ""
        if f.baseline is not None:
            baseline = _with_unit(f.baseline, f.unit, f.digits)
            if f.baseline_label:
                baseline += f" ({f.baseline_label})"
        elif f.baseline_label:
            baseline = f.baseline_label
        ratio = "" if f.ratio is None else fmt_ratio(f.ratio)
        goal = "" if f.goal is None else f.goal.describe(f.unit)
        met = {None: "-" if f.goal else "", True: "yes", False: "NO"}[f.met]
        rows.append((f.benchmark, f.figure, value, baseline, ratio, goal, met))
    return rows


def text_table(figures: Sequence[Figure]) -> list[str]:
    """The table as aligned text lines, a rule under the header (pure)."""
    rows = table_rows(figures)
    right = (False, False, True, True, True, False, False)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        aligned = zip(row, widths, right, strict=True)
        cells = (c.rjust(w) if r else c.ljust(w) for c, w, r in aligned)
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(figures: Sequence[Figure]) -> list[str]:
    """The table as Markdown lines (pure)."""
    rows = table_rows(figures)
    aligns = ("---", "---", "---:", "---:", "---:", "---", "---")
    lines = ["| " + " | ".join(_md_cell(c) for c in rows[0]) + " |"]
    lines.append("| " + " | ".join(aligns) + " |")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows[1:]]
    return lines


def markdown_document(
    machine: Sequence[tuple[str, str]],
    figures: Sequence[Figure],
    notes: Sequence[str],
    command: str,
    started: str,
    seconds: float,
) -> str:
    """The whole Markdown report: how to reproduce, the machine, the table, the notes (pure)."""
    lines = [
        "# Benchmark results",
        "",
        f"Reproduce from the repository root: `{command}`",
        "",
        f"Run started {started}, took {seconds:.0f} s.",
        "",
        "## Machine",
        "",
        *[f"* {key}: {value}" for key, value in machine],
        "",
        "## Figures",
        "",
        "`ratio` is value ÷ baseline; `met?` compares the value (or the ratio, where the goal "
        "says so) with the issue's goal. See bench/README.md for what each figure measures.",
        "",
        *markdown_table(figures),
        "",
    ]
    if notes:
        lines += ["## Notes", "", *[f"* {_md_cell(n)}" for n in notes], ""]
    return "\n".join(lines)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values`` (pure).

    Raises:
        ValueError: No values, or ``q`` out of range.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile: q must be in (0, 100], got {q}")
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(0, rank - 1)]


# --------------------------------------------------------------------------- the machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def docker_version() -> str:
    """The Docker Engine's version, or why there is none."""
    try:
        import docker
        import docker.errors

        client = docker.from_env(timeout=5)
        try:
            version = client.version()
        finally:
            client.close()
        return f"{version.get('Version')} (API {version.get('ApiVersion')})"
    except Exception as exc:  # any failure means: no engine to describe
        return f"not reachable ({type(exc).__name__})"


def mongodb_version(url: str | None = None) -> str:
    """The MongoDB-protocol server's version (FerretDB's too), or why there is none."""
    server = url or os.environ.get(MONGODB_URL_ENV, DEFAULT_MONGODB_URL)
    try:
        import pymongo

        client: pymongo.MongoClient[dict[str, Any]]
        with pymongo.MongoClient(server, serverSelectionTimeoutMS=3000) as client:
            info = client.admin.command("buildInfo")
    except Exception as exc:  # any failure means: no server to describe
        return f"not reachable at {server} ({type(exc).__name__})"
    text = f"MongoDB {info.get('version')}"
    if info.get("ferretdbVersion"):
        text = f"FerretDB {info['ferretdbVersion']} (reports {text})"
    return text


def machine_description() -> list[tuple[str, str]]:
    """What the figures depend on: CPU, memory, kernel, Python, Docker, MongoDB server."""
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return [
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} logical CPUs"),
        ("memory", _memory()),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("Docker Engine", docker_version()),
        ("MongoDB-protocol server", mongodb_version()),
        ("load average at start (1, 5, 15 min)", load or "unknown"),
    ]


# ------------------------------------------------------------------------------ running


@dataclass(frozen=True)
class Options:
    """The suite's options that benchmarks read."""

    quick: bool = False
    idle_seconds: float = 60.0


Runner = Callable[[Options], Result]


def _adapter(name: str) -> Runner:
    from bench import suite_adapters

    runner: Runner = getattr(suite_adapters, f"run_{name}")
    return runner


#: The benchmarks, in the order the suite runs them, with a rough budget in seconds (full run)
#: after which the child is stopped.
BENCHMARKS: dict[str, float] = {
    "packing": 300,
    "placement": 600,
    "e2e_placement": 600,
    "decision_latency": 900,
    "store": 600,
    "watch": 300,
    "docker_apply": 300,
    "sim_scale": 900,
    "idle": 600,
    "sim_migration": 600,
    "migration": 600,
}


def run_child(name: str, options: Options, out: Path) -> int:
    """Runs benchmark ``name`` in this process and writes its :class:`Result` to ``out``."""
    try:
        result = _adapter(name)(options)
    except Exception as exc:  # report it as the benchmark's failure, in the table
        import traceback

        traceback.print_exc()
        result = Result([Figure(name, "run", None, note=f"FAILED: {type(exc).__name__}: {exc}")])
        result.failed = True
    out.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 1 if result.failed else 0


def run_in_child(name: str, options: Options, timeout: float) -> Result:
    """Runs benchmark ``name`` in a child process; a crash or timeout becomes a failed row."""
    with tempfile.TemporaryDirectory(prefix="swarmapply-suite-") as tmp:
        out = Path(tmp, "result.json")
        command = [sys.executable, "-m", "bench", "--child", name, "--child-out", str(out)]
        command += ["--idle-seconds", str(options.idle_seconds)]
        if options.quick:
            command.append("--quick")
        process = subprocess.Popen(command)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            note = f"FAILED: stopped after {timeout:.0f} s"
            return Result([Figure(name, "run", None, note=note)], failed=True)
        if not out.exists():
            note = f"FAILED: the benchmark process exited with {code} and wrote no figures"
            return Result([Figure(name, "run", None, note=note)], failed=True)
        return Result.from_json(json.loads(out.read_text()))


def main(argv: list[str] | None = None) -> int:
    """The ``python -m bench`` command (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--quick", action="store_true", help="a smoke run of about two minutes")
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", help=f"run only these: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--markdown", metavar="FILE", help="also write the report as Markdown")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=60.0,
        help="the idle benchmark's window (60)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.idle_seconds <= 0:
        parser.error("--idle-seconds must be positive")
    options = Options(quick=args.quick, idle_seconds=args.idle_seconds)
    if args.child:
        if args.child not in BENCHMARKS or not args.child_out:
            parser.error("--child needs a benchmark name and --child-out")
        return run_child(args.child, options, Path(args.child_out))
    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown or not names:
            parser.error(f"--only: unknown {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")

    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    t0 = time.perf_counter()
    machine = machine_description()
    print("machine:")
    for key, value in machine:
        print(f"  {key}: {value}")
    figures: list[Figure] = []
    notes: list[str] = []
    failed = False
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        b0 = time.perf_counter()
        result = run_in_child(name, options, BENCHMARKS[name])
        figures += result.figures
        notes += [f"{name}: {note}" for note in result.notes]
        notes.append(f"{name}: took {time.perf_counter() - b0:.0f} s")
        failed = failed or result.failed
    seconds = time.perf_counter() - t0
    print()
    print(f"started {started}, {seconds:.0f} s")
    for line in text_table(figures):
        print(line)
    for note in notes:
        print(f"note: {note}")
    if args.markdown:
        command = "python -m bench" + (" --quick" if args.quick else "")
        if args.only:
            command += f" --only {','.join(names)}"
        if args.idle_seconds != 60.0:
            command += f" --idle-seconds {args.idle_seconds:g}"
        command += f" --markdown {args.markdown}"
        text = markdown_document(machine, figures, notes, command, started, seconds)
        Path(args.markdown).write_text(text)
        print(f"wrote {args.markdown}")
    return 1 if failed else 0
