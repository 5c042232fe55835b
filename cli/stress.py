"""``swarmapply stress``: submit jobs to a running cluster by a load pattern and record them.

RESTfulSwarm's stress clients, on the store: every interval the pattern
(:mod:`swarmapply.cli.stress_patterns`) says how many copies of one Job template to create;
each copy gets a unique name and the run's session label, and goes through the same admission
and the same store as ``apply``. While submitting, and afterwards until every submitted job
finished or ``--drain-timeout`` passed, the command follows the store's watch
(:class:`~swarmapply.cli.stress_record.Mirror`) and records each job's submit, scheduled,
running and finished times, nodes and cpusets, and per interval the jobs queued, running and
finished and the cores in use; it writes them as a RUN_DIR (``docs/stress.md``).

Timing: interval ``t`` ends ``(t+1) * --interval`` seconds after the run's start, and the next
one starts then; its jobs are created at its start, one after another. When creating them
takes until past that end, the interval lasts one whole ``--interval`` from when they are done
instead (later intervals are not shortened to catch up). The submission phase has
``floor(duration / interval)`` intervals; drain intervals follow with 0 submitted, the last one
ending early when every job has finished or the drain timeout passes. Each row's ``start`` is
when its interval really began.

Exit status: 0 when the run was recorded (every submitted job is in ``jobs.csv``, finished or
not); 1 when the store keeps failing (after retries with backoff; what was recorded is still
written) or the template is invalid (nothing is submitted); 2 on bad usage; 130 after SIGINT and
143 after SIGTERM: submitting stops at once, nothing more is waited for, and what was recorded
is written, ``summary.json`` included. A second signal stops at once without writing.

What it does not guarantee: times are when changes were seen through the watch, not when they
happened in the cluster; the cluster's own placement strategy is not in the store, so
``summary.json`` records only the template's ``spec.placement.strategy`` (else null).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from types import FrameType
from typing import Any, TextIO, TypeVar

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from swarmapply.api.admission import AdmissionError, AdmittedObject, FieldError, admit_paths
from swarmapply.api.normalize import normalize
from swarmapply.api.store import AlreadyExists, NotFound, Object, Store, redact_url
from swarmapply.cli.context import Context
from swarmapply.cli.stress_patterns import (
    PATTERNS,
    SESSION_LABEL,
    Pattern,
    counts,
    interval_count,
    job_name,
    make_pattern,
    session_selector,
    uses_seed,
)
from swarmapply.cli.stress_record import (
    INTERVALS_FILE,
    JOBS_FILE,
    SUMMARY_FILE,
    ClusterView,
    IntervalRow,
    JobRecord,
    Mirror,
    interval_row,
    observe,
    requested,
    summary_document,
    wait_stats,
    write_run_dir,
)
from swarmapply.cli.usage import UsageError, seconds_type
from swarmapply.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)

T = TypeVar("T")

EXAMPLES = """examples:
  swarmapply stress --pattern steady --rate 2 --duration 60 --interval 5 \\
      --template manifests/stress/template.yaml
  swarmapply stress --pattern bursty --lambda 0.5 --duration 120 --interval 10 \\
      --template job.yaml --seed 7 --out runs/bursty --label "bursty, best-fit"
  swarmapply stress --pattern incremental --slope 1 --intercept 0 --duration 30 --interval 3 \\
      --template job.yaml --drain-timeout 0 --delete-after
  swarmapply stress --pattern random --min 1 --max 4 --duration 30 --interval 2 --template job.yaml

Jobs per interval t (0-based): steady floor(A*(t+1))-floor(A*t); bursty ceil(Exp(L)) drawn in
order from the seed; incremental max(0, round(A*t+B)) (halves up); random one integer in
[A, B] drawn once. Jobs are named job<submit-ms>-<session>-<seq> and labelled
swarmapply.io/stress-session=<session>. Files written: RUN_DIR/jobs.csv, intervals.csv and
summary.json (see docs/stress.md). Exit status: 0 recorded, 1 store or template error, 2 bad
usage, 130/143 stopped by SIGINT/SIGTERM (what was recorded is written).
"""

#: ``--drain-timeout`` when not given, in seconds.
DEFAULT_DRAIN_TIMEOUT = 60.0
#: How long a failing store call is retried (with exponential backoff) before giving up.
STORE_RETRY_SECONDS = 15.0
#: The files of a RUN_DIR; an ``--out`` holding any of them is refused.
RUN_FILES = (JOBS_FILE, INTERVALS_FILE, SUMMARY_FILE)


class StressError(PermanentError):
    """The run cannot start (an unusable output directory)."""


# ---------------------------------------------------------------------------- the template


def load_template(path: str, stdin: TextIO) -> AdmittedObject:
    """Reads and admits the Job template: exactly one valid Job.

    Raises:
        AdmissionError: The file is unreadable or invalid, holds no object or several, or its
            object is not a Job; each error names the file, document and field.
    """
    admitted = admit_paths([path], False, stdin)
    if len(admitted) != 1:
        where = ", ".join(f"document {item.document + 1}" for item in admitted)
        found = f"{len(admitted)} ({where})" if admitted else "none"
        message = f"a stress template must hold exactly one Job, found {found}"
        raise AdmissionError([FieldError(path, -1, "", message)])
    item = admitted[0]
    if item.obj["kind"] != "Job":
        raise AdmissionError(
            [
                FieldError(
                    item.source,
                    item.document,
                    "kind",
                    f"a stress template must be a Job, got {item.obj['kind']}",
                )
            ]
        )
    return item


def build_job(template: AdmittedObject, name: str, session: str) -> Object:
    """One job of the run: the template under ``name``, labelled with the session.

    The template's own name (or generateName) is replaced; its labels and annotations are
    kept. Defaults are applied afresh, so the job's network is named after the job unless the
    template names one.

    Raises:
        AdmissionError: The job would not be valid (names the template's field).
    """
    config = copy.deepcopy(template.config or template.obj)
    metadata = config.get("metadata") or {}
    labels = dict(metadata.get("labels") or {})
    labels[SESSION_LABEL] = session
    new_meta: dict[str, Any] = {"name": name, "labels": labels}
    if metadata.get("annotations"):
        new_meta["annotations"] = dict(metadata["annotations"])
    config["metadata"] = new_meta
    obj, problems = normalize(config)
    if problems:
        raise AdmissionError(
            [
                FieldError(template.source, template.document, ".".join(map(str, p)), message)
                for p, message in problems
            ]
        )
    return obj


# ------------------------------------------------------------------------------ options


@dataclass(frozen=True)
class StressOptions:
    """The checked options of one run."""

    pattern: Pattern
    duration: float
    interval: float
    intervals: int
    template: str
    seed: int | None
    out: str | None
    label: str | None
    drain_timeout: float
    delete_after: bool


def check_options(args: argparse.Namespace) -> StressOptions:
    """Checks the options together.

    Raises:
        UsageError: A value is wrong; the message starts with the option.
    """
    pattern = make_pattern(
        args.pattern,
        {
            "--rate": args.rate,
            "--lambda": args.lambd,
            "--slope": args.slope,
            "--intercept": args.intercept,
            "--min": args.min,
            "--max": args.max,
        },
    )
    intervals = interval_count(args.duration, args.interval)
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed: expected an integer >= 0, got {args.seed}")
    if args.label is not None and not args.label.strip():
        raise UsageError("--label: must not be empty")
    return StressOptions(
        pattern=pattern,
        duration=args.duration,
        interval=args.interval,
        intervals=intervals,
        template=args.template,
        seed=args.seed,
        out=args.out,
        label=args.label,
        drain_timeout=args.drain_timeout,
        delete_after=args.delete_after,
    )


def rfc3339(seconds: float) -> str:
    """Seconds since the epoch as RFC 3339 UTC with milliseconds."""
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def progress_line(row: IntervalRow) -> str:
    """The line printed after each interval."""
    return (
        f"interval {row.interval} t={row.start:.1f}s: submitted {row.submitted}, "
        f"queued {row.queued}, running {row.running}, finished {row.finished}, "
        f"cores {row.cores_in_use}/{row.cores_capacity}"
    )


def summary_lines(records: list[JobRecord], directory: str) -> list[str]:
    """The lines printed at the end: jobs, waits, where the files are."""
    finished = sum(1 for r in records if r.finished is not None)
    scheduled, mean, p95 = wait_stats(records)
    lines = [f"jobs: {len(records)} submitted, {scheduled} scheduled, {finished} finished"]
    if scheduled:
        lines.append(f"wait submit->scheduled: mean {mean:.3f}s, p95 {p95:.3f}s")
    else:
        lines.append("wait submit->scheduled: no job was scheduled")
    lines.append(f"run directory: {directory}")
    return lines


# ------------------------------------------------------------------------------ signals


@dataclass
class _Signals:
    stop: threading.Event
    received: int | None = None


@contextlib.contextmanager
def _handle_signals(stop: threading.Event) -> Iterator[_Signals]:
    """SIGINT/SIGTERM set ``stop`` (a second one interrupts); undone on exit. Main thread only."""
    state = _Signals(stop)
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and state.received is not None:
            raise KeyboardInterrupt
        state.received = signum
        log.warning("%s received: stopping the run", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------------------- the run


def _retrying(call: Callable[[], T], what: str) -> T:
    """``call()``, retried with exponential backoff while it raises a TemporaryError."""
    for attempt in Retrying(
        retry=retry_if_exception_type(TemporaryError),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        stop=stop_after_delay(STORE_RETRY_SECONDS),
        before_sleep=lambda state: log.warning(
            "stress: %s failed: %s; retrying", what, state.outcome and state.outcome.exception()
        ),
        reraise=True,
    ):
        with attempt:
            return call()
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class _Run:
    """The state of one run (the imperative shell around the pure recorder)."""

    store: Store
    template: AdmittedObject
    session: str
    stop: threading.Event
    out: Callable[[str], None]
    t0: float = field(default_factory=time.monotonic)
    records: dict[str, JobRecord] = field(default_factory=dict)
    rows: list[IntervalRow] = field(default_factory=list)
    capacity: int = 0
    nodes: int = 0
    drivers: set[str] = field(default_factory=set)
    mirror: Mirror | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    def start(self) -> None:
        self.mirror = Mirror(self.store, lambda name: name in self.records)
        _retrying(self.mirror.start, "list")
        self._see_cluster(self.mirror.cluster())

    def _see_cluster(self, cluster: ClusterView) -> None:
        self.capacity = max(self.capacity, cluster.cores_capacity)
        self.nodes = max(self.nodes, cluster.nodes)
        self.drivers.update(cluster.drivers)

    def on_job(self, name: str) -> None:
        assert self.mirror is not None
        view = self.mirror.job_view(name)
        record = self.records.get(name)
        if view is not None and record is not None:
            self.records[name] = observe(record, view, self.now())

    def all_finished(self) -> bool:
        return all(r.finished is not None for r in self.records.values())

    def submit(self, count: int) -> int:
        """Creates ``count`` jobs now (fewer when stopped); returns how many were created."""
        created = 0
        for _ in range(count):
            if self.stop.is_set():
                break
            name = job_name(int(time.time() * 1000), self.session, len(self.records))
            job = build_job(self.template, name, self.session)
            submitted = self.now()
            _retrying(partial(self._create, job), f"create job {name}")
            self.records[name] = JobRecord(name, submitted, *requested(job))
            created += 1
        return created

    def _create(self, job: Object) -> None:
        name = job["metadata"]["name"]
        try:
            self.store.create(job)
        except AlreadyExists:  # an earlier attempt was written after all, or a clash
            live = self.store.get("Job", name)
            if (live["metadata"].get("labels") or {}).get(SESSION_LABEL) != self.session:
                raise PermanentError(f"job {name} already exists and is not this run's") from None

    def follow(self, deadline: float, until_done: bool = False) -> None:
        """Records changes until ``deadline`` (seconds since start), stop, or all finished."""
        assert self.mirror is not None
        mirror = self.mirror
        done = self.all_finished if until_done else (lambda: False)
        _retrying(lambda: mirror.follow(self.t0 + deadline, self.stop, self.on_job, done), "watch")

    def sample(self, index: int, start: float, submitted: int) -> IntervalRow:
        assert self.mirror is not None
        cluster = self.mirror.cluster()
        self._see_cluster(cluster)
        row = interval_row(index, start, submitted, self.records.values(), cluster)
        self.rows.append(row)
        self.out(progress_line(row))
        return row


def _run_loop(run: _Run, options: StressOptions, plan: list[int]) -> None:
    """Submits by the plan, then drains; appends a row per interval."""
    run.start()
    for index, count in enumerate(plan):
        start = run.now()
        submitted = run.submit(count)
        end = (index + 1) * options.interval
        run.follow(end if end > run.now() else run.now() + options.interval)
        run.sample(index, start, submitted)
        if run.stop.is_set():
            return
    if options.drain_timeout <= 0:
        return
    deadline = run.now() + options.drain_timeout
    index = len(plan)
    while not run.stop.is_set() and not run.all_finished():
        start = run.now()
        run.follow(min(start + options.interval, deadline), until_done=True)
        run.sample(index, start, 0)
        index += 1
        if run.now() >= deadline:
            return


def _out_dir(options: StressOptions, session: str) -> str:
    directory = options.out or f"stress-{session}"
    if os.path.isdir(directory):
        held = [name for name in RUN_FILES if os.path.exists(os.path.join(directory, name))]
        if held:
            raise UsageError(
                f"--out: {directory} already holds a run ({', '.join(held)}); choose another"
            )
    elif os.path.exists(directory):
        raise UsageError(f"--out: {directory} exists and is not a directory")
    return directory


def _strategy(template: AdmittedObject) -> str | None:
    strategy = ((template.obj.get("spec") or {}).get("placement") or {}).get("strategy")
    return None if strategy is None else str(strategy)


def _delete_session(store: Store, session: str) -> int:
    jobs = _retrying(
        lambda: store.list("Job", label_selector=session_selector(session)).items, "list"
    )
    deleted = 0
    for job in jobs:
        name = job["metadata"]["name"]
        try:
            _retrying(partial(store.delete, "Job", name), f"delete job {name}")
            deleted += 1
        except NotFound:
            continue
    return deleted


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds the ``stress`` command to the command parsers."""
    parser = commands.add_parser(
        "stress",
        help="submit jobs to the running cluster by a load pattern and record what happened",
        description="Submit copies of a Job template to the running cluster, every interval as\n"
        "many as the load pattern says, and record when each was scheduled, ran and finished,\n"
        "and per interval the jobs queued, running and finished and the cores in use.",
        epilog=EXAMPLES,
        **kw,
    )
    parser.add_argument("--pattern", required=True, choices=PATTERNS, help="the load pattern")
    parser.add_argument(
        "--duration",
        required=True,
        type=seconds_type(positive=True),
        metavar="SECONDS",
        help="how long to submit jobs",
    )
    parser.add_argument(
        "--interval",
        required=True,
        type=seconds_type(positive=True),
        metavar="SECONDS",
        help="the sampling interval (jobs are submitted at each interval's start)",
    )
    parser.add_argument(
        "--template", required=True, metavar="JOB.yaml", help="the Job manifest each job copies"
    )
    group = parser.add_argument_group("pattern parameters")
    group.add_argument("--rate", type=float, metavar="A", help="steady: jobs per interval")
    group.add_argument(
        "--lambda",
        dest="lambd",
        type=float,
        metavar="L",
        help="bursty: rate of the exponential distribution (mean 1/L jobs per interval)",
    )
    group.add_argument("--slope", type=float, metavar="A", help="incremental: A in A*t+B")
    group.add_argument("--intercept", type=float, metavar="B", help="incremental: B in A*t+B")
    group.add_argument("--min", type=float, metavar="A", help="random: smallest count")
    group.add_argument("--max", type=float, metavar="B", help="random: largest count")
    parser.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="seed of the random draws (bursty, random; default: drawn and recorded)",
    )
    parser.add_argument(
        "--out", metavar="RUN_DIR", help="where to write the files (default ./stress-<session>)"
    )
    parser.add_argument(
        "--label", metavar="TEXT", help="the run's name in reports (default RUN_DIR's name)"
    )
    parser.add_argument(
        "--drain-timeout",
        type=seconds_type(),
        default=DEFAULT_DRAIN_TIMEOUT,
        metavar="SECONDS",
        help="after submitting, wait this long at most for the jobs to finish "
        f"(default {DEFAULT_DRAIN_TIMEOUT:g}; 0: do not wait)",
    )
    parser.add_argument(
        "--delete-after", action="store_true", help="delete the run's jobs at the end"
    )
    parser.set_defaults(handler=run, usage_error=parser.error)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Runs ``swarmapply stress``.

    Returns:
        0 when the run was recorded; 130 or 143 when SIGINT or SIGTERM stopped it (the files
        are written). Bad usage exits 2 through the parser.

    Raises:
        AdmissionError: The template is not exactly one valid Job (nothing was submitted).
        SwarmapplyError: The store kept failing (the files are written first).
    """
    session = secrets.token_hex(3)
    try:
        options = check_options(args)
        directory = _out_dir(options, session)
    except UsageError as exc:
        args.usage_error(str(exc))  # prints usage and the message, exits 2
        return 2
    template = load_template(options.template, ctx.stdin)
    build_job(template, job_name(0, session, 0), session)  # a template that cannot be copied
    seed = options.seed
    if seed is None and uses_seed(options.pattern):
        seed = secrets.randbelow(2**31)
    plan = counts(options.pattern, options.intervals, seed)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise StressError(f"--out: cannot create {directory}: {exc.strerror or exc}") from exc
    store = ctx.store()
    stop = threading.Event()
    started_wall = time.time()
    state = _Run(store, template, session, stop, ctx.out)
    ctx.out(
        f"stress session {session}: {options.pattern.name} {options.pattern.parameters()}, "
        f"{options.intervals} intervals of {options.interval:g}s, store "
        f"{redact_url(ctx.store_url)}"
    )
    with _handle_signals(stop) as signals:
        try:
            _run_loop(state, options, plan)
        finally:
            records = list(state.records.values())
            elapsed = state.now()
            summary = summary_document(
                label=options.label or os.path.basename(os.path.normpath(directory)),
                pattern=options.pattern.name,
                parameters=options.pattern.parameters(),
                seed=seed,
                duration=options.duration,
                interval=options.interval,
                template=os.path.basename(options.template),
                driver=",".join(sorted(state.drivers)) or None,
                strategy=_strategy(template),
                store=redact_url(ctx.store_url),
                started=rfc3339(started_wall),
                ended=rfc3339(started_wall + elapsed),
                records=records,
                capacity_cores=state.capacity,
                nodes=state.nodes,
            )
            write_run_dir(directory, records, state.rows, summary)
            for line in summary_lines(records, directory):
                ctx.out(line)
        if options.delete_after:
            deleted = _delete_session(store, session)
            ctx.out(f"deleted {deleted} job{'s' if deleted != 1 else ''} of session {session}")
    if signals.received is not None:
        return 128 + signals.received
    return 0


__all__ = [
    "DEFAULT_DRAIN_TIMEOUT",
    "EXAMPLES",
    "StressError",
    "StressOptions",
    "build_job",
    "check_options",
    "load_template",
    "progress_line",
    "register",
    "rfc3339",
    "run",
    "summary_lines",
]
