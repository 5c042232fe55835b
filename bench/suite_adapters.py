"""The suite's adapters: run one benchmark module with the suite's sizes, return its figures.

One ``run_<name>(options)`` per key of :data:`bench.suite.BENCHMARKS`. Each calls the
benchmark's own measuring function (never its command line), chooses the sizes for a full or a
``--quick`` run, and turns what it measured into :class:`~bench.suite.Figure` rows, attaching
the issue's goals. A part that cannot run here (no Docker Engine, no MongoDB server, not root)
becomes a row saying why, not a failure. Modules are imported inside each adapter, so a
benchmark whose dependencies are missing fails alone.

Sizes of the full run are chosen so that the whole suite takes about ten minutes on a 2-core
machine; each module's own command line has larger defaults in places.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.suite import Figure, Goal, Options, Result

#: The issue's goals.
PLACEMENTS_GOAL = Goal(">=", 2000.0)
DECISION_GOAL = Goal("<=", 500.0)
DOCKER_GOAL = Goal("<=", 1.5, on="ratio")
IDLE_GOAL = Goal("<=", 2.0)
PACKING_GOAL = Goal("<=", 1.05, on="ratio", text="excess <= 5 % (ratio <= 1.05)")
MiB = 1024**2


def run_packing(options: Options) -> Result:
    """Nodes used against the lower bound, per strategy, on two families of workloads."""
    from bench import packing_bench

    seeds = range(1, 3 if options.quick else 6)
    jobs = 200 if options.quick else 500
    result = Result()
    for max_cores in (8, 16):
        rows = packing_bench.run(seeds, jobs, max_cores=max_cores)
        for s in packing_bench.summarise(rows):
            label = (
                f"nodes used, {s.strategy}, {s.workloads} x {jobs} jobs of 1-4 tasks of "
                f"1-{max_cores} cores (sum)"
            )
            if s.strategy == "node":
                result.figures.append(
                    Figure("packing", label, None, note="n/a: places pinned tasks only")
                )
                continue
            goal = PACKING_GOAL if s.strategy == "best-fit-decreasing" else None
            result.figures.append(
                Figure("packing", label, float(s.used), "nodes", float(s.bound), "lower bound",
                       goal, digits=0)
            )  # fmt: skip
            result.notes.append(
                f"tasks 1-{max_cores} cores, {s.strategy}: excess {s.excess:.2f} % in all, "
                f"worst workload {s.worst_excess:.2f} %, jobs waiting {s.waiting}"
            )
    return result


def run_placement(options: Options) -> Result:
    """Pure core against the naive scan, and one scheduler pass on SQLite, at two sizes."""
    from bench import placement_bench

    sizes = [500, 2000] if options.quick else [1000, 10000]
    strategies = ["best-fit", "first-fit"]
    rows, notes = placement_bench.measure(
        sizes, strategies, repeats=1 if options.quick else 3, quick=options.quick
    )
    result = Result(notes=list(notes), failed=placement_bench.decisions_differ(notes))
    core = {(r["nodes"], r["strategy"]): r for r in rows if r["implementation"] == "core (indexed)"}
    for r in rows:
        key = (r["nodes"], r["strategy"])
        where = f"{r['nodes']} nodes, {r['strategy']}, {r['placed']} tasks placed"
        if r["implementation"] == "core (indexed)":
            naive = next(
                (x for x in rows if (x["nodes"], x["strategy"]) == key
                 and x["implementation"] == "naive linear scan"),
                None,
            )  # fmt: skip
            result.figures.append(
                Figure("placement", f"pure core, placements/s ({where})", r["per_s"], "/s",
                       naive["per_s"] if naive else None, "naive linear scan",
                       PLACEMENTS_GOAL, digits=0)
            )  # fmt: skip
        elif r["implementation"] == "scheduler + sqlite":
            base = core.get(key)
            result.figures.append(
                Figure("placement", f"one Scheduler.schedule_once() pass on SQLite, "
                       f"placements/s ({where})", r["per_s"], "/s",
                       base["per_s"] if base else None, "pure core", PLACEMENTS_GOAL, digits=0)
            )  # fmt: skip
    return result


def run_e2e_placement(options: Options) -> Result:
    """Apply -> every Task bound with the job controller and the scheduler running."""
    from bench import e2e_placement_bench as e2e

    nodes, tasks = (100, 400) if options.quick else (1000, 4000)
    r = e2e.bench(nodes, tasks)
    where = f"{r.nodes} sim nodes, {r.jobs} jobs, {r.tasks} tasks, SQLite"
    return Result(
        [
            Figure(
                "e2e_placement",
                f"apply -> all bound, placements/s ({where})",
                r.per_s,
                "/s",
                r.core_per_s,
                "pure core, same jobs",
                PLACEMENTS_GOAL,
                digits=0,
            ),
            Figure("e2e_placement", f"apply -> all bound, seconds ({where})", r.bound_s, "s"),
        ],
        [
            f"apply -> all Jobs written {r.applied_s:.2f} s, -> all Tasks created "
            f"{r.tasks_created_s:.2f} s, -> all bound {r.bound_s:.2f} s; {r.passes} scheduler "
            f"passes while timed ({r.scheduler})"
        ],
    )


def run_decision_latency(options: Options) -> Result:
    """p50..max of one 16-task gang decision on a busy cluster; one store pass when full."""
    from bench import decision_latency as dl

    if options.quick:
        nodes, tasks, states, decisions = 1000, 10_000, 2, 20
    else:
        nodes, tasks, states, decisions = 10_000, 100_000, 10, 200
    lat = dl.measure_core(nodes, tasks, states, decisions)
    core, naive = dl.summary(lat.core), dl.summary(lat.naive)
    where = f"16-task job, {nodes} nodes, {tasks} running tasks, {len(lat.core)} decisions"
    result = Result(failed=bool(lat.differ))
    for q in ("p50", "p95", "p99", "max"):
        goal = DECISION_GOAL if q == "p99" else None
        result.figures.append(
            Figure("decision_latency", f"pure core schedule(), {q} ({where})", core[q] * 1e3,
                   "ms", naive[q] * 1e3, "naive linear scan", goal, digits=1)
        )  # fmt: skip
    result.notes.append(
        f"core and naive decided the same: {'yes' if not lat.differ else 'NO'}; jobs that "
        f"waited: {lat.waited}; building {states} states took {lat.build_s:.1f} s"
    )
    if options.quick:
        result.notes.append("store pass: not run with --quick")
        return result
    store = dl.measure_store(nodes, tasks, passes=5)
    label = f"one Scheduler.schedule_once() pass binding a 16-task job, SQLite, {nodes} nodes, "
    label += f"{tasks} running tasks, {len(store.passes)} passes"
    result.figures.append(
        Figure("decision_latency", f"{label}: median", statistics.median(store.passes) * 1e3,
               "ms", core["p50"] * 1e3, "pure core p50", digits=0)
    )  # fmt: skip
    result.figures.append(
        Figure("decision_latency", f"{label}: max", max(store.passes) * 1e3, "ms",
               core["max"] * 1e3, "pure core max", DECISION_GOAL, digits=0)
    )  # fmt: skip
    result.notes.append(
        f"store: {store.objects} objects written in {store.build_s:.0f} s (not counted); first "
        f"pass settling the allocation views {store.settle_s:.1f} s; bound per pass {store.bound}"
    )
    if any(b != dl.GANG for b in store.bound):
        result.failed = True
    return result


def run_store(options: Options) -> Result:
    """Create and update throughput of each backend beside the raw database."""
    from bench import store_bench as sb

    n, budget = (200, 5.0) if options.quick else (1000, 15.0)
    rows: list[dict[str, Any]] = []
    result = Result()
    for synchronous in ("full", "normal"):
        rows += sb.bench_sqlite(synchronous, n, budget)
    server = os.environ.get(sb.MONGODB_URL_ENV, sb.DEFAULT_MONGODB_URL)
    problem = sb.mongodb_problem(server)
    if problem is None:
        rows += sb.bench_mongodb(server, n, budget)
    else:
        result.figures.append(Figure("store", "mongodb", None, note=f"skipped: {problem}"))
    for r in rows:
        raw = "raw sqlite3" if str(r["backend"]).startswith("sqlite") else "raw pymongo"
        label = f"{r['backend']} {r['operation']}, ops/s (n={r['n']})"
        result.figures.append(
            Figure("store", label, float(r["store_ops_per_s"]), "/s",
                   float(r["raw_ops_per_s"]), raw, digits=0)
        )  # fmt: skip
        result.notes.append(
            f"{r['backend']} {r['operation']}: store p50 {r['store_p50_ms']} ms, p99 "
            f"{r['store_p99_ms']} ms"
        )
        if r["n"] != n:
            result.notes.append(f"{r['backend']} {r['operation']}: stopped at {r['n']} of {n}")
    return result


def run_watch(options: Options) -> Result:
    """Commit -> watcher delay across processes, beside the poll interval."""
    import pymongo

    from bench import watch_latency
    from bench.store_bench import DEFAULT_MONGODB_URL, MONGODB_URL_ENV, mongodb_problem
    from bench.suite import percentile

    writers, per_writer = 3, 50 if options.quick else 200
    result = Result()
    poll = 50.0
    targets = ["sqlite", "mongodb"]
    for backend in targets:
        with tempfile.TemporaryDirectory(prefix="swarmapply-bench-") as tmp:
            database = None
            if backend == "sqlite":
                url = f"sqlite:///{Path(tmp, 'state.db')}"
            else:
                server = os.environ.get(MONGODB_URL_ENV, DEFAULT_MONGODB_URL)
                problem = mongodb_problem(server)
                if problem:
                    result.figures.append(
                        Figure("watch", "mongodb", None, note=f"skipped: {problem}")
                    )
                    continue
                database = f"swarmapply_bench_{uuid.uuid4().hex[:8]}"
                url = f"{server.rstrip('/')}/{database}"
            try:
                delays = watch_latency.measure(url, writers, per_writer)
            finally:
                if database is not None:
                    client: pymongo.MongoClient[dict[str, Any]]
                    with pymongo.MongoClient(url) as client:
                        client.drop_database(database)
        where = f"{backend}, {len(delays)} creates from {writers} processes"
        for q in (50.0, 99.0):
            result.figures.append(
                Figure("watch", f"commit -> watcher delay p{q:.0f} ({where})",
                       percentile(delays, q), "ms", poll, "poll interval", digits=1)
            )  # fmt: skip
    return result


def run_docker_apply(options: Options) -> Result:
    """Apply -> Running of a four-task job on Docker, beside ``docker run -d``."""
    from bench import agent_bench

    rounds = 1 if options.quick else 3
    try:
        r = agent_bench.bench_docker(rounds)
    except (RuntimeError, TimeoutError) as exc:
        note = f"FAILED: {exc}"
        return Result([Figure("docker_apply", "apply -> Running", None, note=note)], failed=True)
    if r.skipped:
        note = f"skipped: {r.skipped}"
        return Result([Figure("docker_apply", "apply -> Running", None, note=note)])
    where = f"4-task job, best of {len(r.apply_s)}, {r.engine_nodes} node(s) on one engine"
    return Result(
        [
            Figure(
                "docker_apply",
                f"apply -> all Running, seconds ({where})",
                min(r.apply_s),
                "s",
                min(r.raw_s),
                "raw docker run -d x4",
                DOCKER_GOAL,
            ),
            Figure("docker_apply", f"apply -> all bound, seconds ({where})", min(r.bound_s), "s"),
        ],
        [
            *r.notes,
            "rounds apply/raw s: "
            + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(r.apply_s, r.raw_s, strict=True)),
        ],
    )


def run_sim_scale(options: Options) -> Result:
    """1,000 hollow nodes with 10,000 running tasks: convergence, CPU and memory."""
    from bench import agent_bench

    if options.quick:
        nodes, tasks, steady, baseline = 100, 1000, 2.0, 1.0
    else:
        nodes, tasks, steady, baseline = 1000, 10000, 20.0, 5.0
    try:
        r = agent_bench.bench_sim(nodes, tasks, steady, baseline)
    except TimeoutError as exc:
        note = f"FAILED: {exc}"
        return Result([Figure("sim_scale", "convergence", None, note=note)], failed=True)
    where = f"{nodes} sim nodes, {tasks} tasks"
    figures = [
        Figure("sim_scale", f"scheduler start -> all bound, tasks/s ({where})",
               tasks / r.bound_s, "/s", digits=0),
        Figure("sim_scale", f"scheduler start -> all Running, tasks/s ({where})",
               tasks / r.running_s, "/s", digits=0),
    ]  # fmt: skip
    if r.steady is not None and r.baseline is not None:
        label = "same process idle, store open"
        figures += [
            Figure("sim_scale", f"CPU in steady state, % of one core ({where} running, "
                   f"{r.steady.wall:.0f} s)", r.steady.cpu_per_s * 100, "%",
                   r.baseline.cpu_per_s * 100, label, digits=1, ratio_shown=False),
            Figure("sim_scale", f"peak RSS ({where})", r.steady.maxrss / MiB, "MiB",
                   r.baseline.maxrss / MiB, label, digits=0),
        ]  # fmt: skip
        if r.steady.rss is not None and r.baseline.rss is not None:
            figures.append(
                Figure("sim_scale", f"RSS at the end of the steady window ({where})",
                       r.steady.rss / MiB, "MiB", r.baseline.rss / MiB, label, digits=0)
            )  # fmt: skip
    notes = [
        f"{r.running} Tasks Running in the store, {r.containers} sim containers after "
        f"convergence, {r.still_running} at the end; {r.rounds} node rounds in the window",
        *r.notes,
    ]
    return Result(figures, notes, failed=r.running != tasks)


def run_idle(options: Options) -> Result:
    """CPU of an idle ``swarmapply up`` process over the window."""
    from bench import idle_bench

    seconds = min(options.idle_seconds, 10.0) if options.quick else options.idle_seconds
    r = idle_bench.bench(seconds, settle_seconds=2.0 if options.quick else 5.0)
    label = f"swarmapply up, {r.driver} driver, nothing applied, {r.window_s:.0f} s"
    figures = [
        Figure("idle", f"CPU, % of one core ({label})", r.cpu_percent, "%", r.baseline_percent,
               "python asleep, same imports", IDLE_GOAL, digits=2, ratio_shown=False),
    ]  # fmt: skip
    if r.rss is not None:
        figures.append(Figure("idle", f"RSS at the end ({label})", r.rss / MiB, "MiB", digits=0))
    notes = [f"ready (Node {r.node} registered) {r.ready_s:.1f} s after start", *r.notes]
    return Result(figures, notes, failed=r.exit_code != 0)


def run_sim_migration(options: Options) -> Result:
    """Many cold migrations at once on hollow nodes, beside placing the tasks afresh."""
    from bench import sim_migration_bench as smb

    nodes, tasks = (4, 50) if options.quick else (8, 200)
    f = smb.measure(nodes, 64, tasks, 300.0)
    where = f"{tasks} one-core tasks, {nodes} sim nodes"
    figures = [
        Figure("sim_migration", f"cold migrations at once, migrations/s ({where})",
               f.tasks / f.moved_s, "/s", f.tasks / f.placed_s,
               "create -> Running, tasks/s", digits=1),
    ]  # fmt: skip
    notes = [f"succeeded {f.succeeded} of {tasks}; core conflicts {f.conflicts}"]
    if f.totals:
        notes.append(
            f"status.timings.total median {statistics.median(f.totals):.3f} s, "
            f"max {max(f.totals):.3f} s"
        )
    if f.first_failure:
        notes.append(f"first failure: {f.first_failure}")
    return Result(figures, notes, failed=f.conflicts > 0 or f.succeeded != tasks)


def run_migration(options: Options) -> Result:
    """Cold migration on a real three-node Swarm, beside raw Docker calls."""
    name, figure = "migration", "cold migration of one task"
    if options.quick:
        return Result([Figure(name, figure, None, note="skipped with --quick")])
    from bench import migration_bench as mb

    why = mb.preflight()
    if why is not None:
        return Result([Figure(name, figure, None, note=f"skipped: {why}")])
    rounds = 3
    code, r = mb.run_measured(rounds)
    wall = mb.spread([c.wall for c in r.cold])
    raw = mb.spread(r.raw)
    result = Result(notes=[*mb.auto_lines(r.auto), *r.notes], failed=code != 0)
    if wall is None:
        result.figures.append(Figure(name, figure, None, note="FAILED: no round completed"))
        result.failed = True
        return result
    result.figures.append(
        Figure(name, f"{figure}, create -> Running on the target, median of {wall.n} (s)",
               wall.median, "s", raw.median if raw else None,
               "raw docker stop+remove, create+start")
    )  # fmt: skip
    return result
