"""Cold migration of one small task on a real three-node Swarm, next to raw Docker calls.

The run builds a three-node cluster on this machine with
:class:`tests.integration.swarm_nodes.SwarmNodes` (one dockerd per network namespace, in one
Swarm, the test image loaded into each), starts ``swarmapply controllers`` and one
``swarmapply agent`` per node (heartbeat 0.5 s, resync 2 s) on a SQLite store in the cluster's
directory, and applies a one-task Job (the test image, ``sleep 3600``, one core, 16 MiB,
pinned to ``node-2``). Then:

* **swarmapply, cold**: ``--rounds`` Migrations with ``mode: cold``, back and forth between
  ``node-2`` and ``node-3``, one at a time. Each is timed from just before the Migration is
  created until the store shows the Task Running on the target with a new ``containerID``
  (polled every 5 ms); the Migration's own ``status.timings`` (reserve, stop, start, total)
  are read once it has Succeeded.
* **auto**: one Migration with ``mode: auto`` to ``node-1``. This kernel cannot checkpoint,
  so it is expected to fall back to cold; its phase, mode and message and the message of its
  ``FellBackToCold`` Event are reported as written. It also takes the task off ``node-2`` and
  ``node-3`` for the baseline.
* **raw baseline**: on the same two daemons, a container with the same spec as the task's
  (image, command, the cpuset the task had on that node, memory and memory+swap limit, the
  job's overlay network with an alias), moved back and forth ``--rounds`` times with docker-py:
  ``stop(timeout=3)`` and ``remove`` on one daemon, then ``create`` and ``start`` on the other,
  timed as a whole.

Guarantees: everything the run made is undone at the end, also after an error, Ctrl-C or
SIGTERM (:meth:`SwarmNodes.remove`: the processes it started, by pid, the containers, the
daemons, mounts, links, namespaces, the directory holding the store); what could not be
undone is printed. Nothing is asserted on time: the figures are what this machine did once.

Not measured: live migration (CRIU cannot checkpoint here), whole-job migrations, larger
containers, image pulls (the image is loaded beforehand), MongoDB. ``sleep`` as a container's
first process ignores SIGTERM, so both sides spend the whole 3 s stop grace on every stop.

Run it from the repository root as root (it imports the test suite's cluster helper).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import docker
import docker.errors

from swarmapply.api.admission import admit
from swarmapply.api.store import NotFound, Object, Store, open_store
from swarmapply.cli.migrate import admitted, task_migration
from tests.integration.swarm_nodes import TEST_IMAGE, SwarmNodes, missing_requirements

#: The nodes of the cluster; the first is the Swarm manager.
NODES = ("node-1", "node-2", "node-3")
#: The two nodes the task and the raw container move between; the task starts on the first.
PAIR = ("node-2", "node-3")
#: Where the auto migration goes (off the pair, so the baseline has the pair to itself).
AUTO_TARGET = "node-1"
JOB = "migbench"
COMMAND = ("sleep", "3600")
MEMORY = "16m"
#: The stop grace of the raw baseline, as the Docker driver's.
RAW_STOP_TIMEOUT = 3
#: The label on the raw baseline's containers.
BENCH_LABEL = "swarmapply.io/bench"
#: The stages of ``status.timings`` a cold migration reports, in the table's order.
STAGES = ("reserve", "stop", "start", "total")
#: Seconds the agents and controllers may take to come up, and a job to run.
START_SECONDS = 60.0
#: Seconds one migration may take.
MIGRATION_SECONDS = 90.0
#: How often the store is polled while a migration is timed.
POLL = 0.005
#: How many characters of a message the report keeps.
MESSAGE_CHARS = 300

T = TypeVar("T")


# ------------------------------------------------------------------------------ pure parts


@dataclass(frozen=True)
class Spread:
    """Median, minimum and maximum of some seconds."""

    median: float
    low: float
    high: float
    n: int


def spread(values: Sequence[float]) -> Spread | None:
    """The median, minimum and maximum of ``values`` (None when there are none)."""
    if not values:
        return None
    return Spread(statistics.median(values), min(values), max(values), len(values))


def ratio(numerator: Spread | None, denominator: Spread | None) -> float | None:
    """``numerator.median / denominator.median``; None when either is missing or zero."""
    if numerator is None or denominator is None or denominator.median <= 0:
        return None
    return numerator.median / denominator.median


def shorten(text: str, limit: int = MESSAGE_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with ``...`` when longer."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: max(0, limit - 3)].rstrip() + "..."


def other(node: str, pair: Sequence[str] = PAIR) -> str:
    """The node of ``pair`` that is not ``node``."""
    if node not in pair:
        raise ValueError(f"{node!r} is not one of {list(pair)}")
    return pair[1] if node == pair[0] else pair[0]


def job_manifest(name: str = JOB, image: str = TEST_IMAGE, node: str = PAIR[0]) -> Object:
    """The benchmark's Job: one task, ``sleep 3600``, one core and 16 MiB, pinned to ``node``."""
    task = {"name": "a", "image": image, "command": list(COMMAND), "cores": 1,
            "memory": MEMORY, "node": node}  # fmt: skip
    return {"apiVersion": "swarmapply.io/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"tasks": [task]}}  # fmt: skip


def table(rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    """Rows as aligned text lines with a rule under the first one (pure)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        cells = [
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def result_rows(
    wall: Sequence[float],
    stages: dict[str, list[float]],
    raw: Sequence[float],
) -> list[tuple[str, ...]]:
    """The table: a header, then median/min/max/n of each series (pure).

    Args:
        wall: Seconds of each swarmapply cold migration, create to Running on the target.
        stages: Each stage of ``status.timings`` (in :data:`STAGES` order when present), its
            seconds per migration.
        raw: Seconds of each raw baseline move.
    """
    rows: list[tuple[str, ...]] = [("measure", "median s", "min s", "max s", "n")]
    series: list[tuple[str, Sequence[float]]] = [("swarmapply cold migration (wall)", wall)]
    ordered = [s for s in STAGES if s in stages] + [s for s in stages if s not in STAGES]
    series += [(f"  status.timings.{stage}", stages[stage]) for stage in ordered]
    series.append(("raw docker stop+remove, create+start", raw))
    for name, values in series:
        s = spread(values)
        if s is None:
            rows.append((name, "", "", "", "0"))
        else:
            rows.append((name, _cell(s.median), _cell(s.low), _cell(s.high), str(s.n)))
    return rows


# --------------------------------------------------------------------------- measurement


@dataclass
class ColdRound:
    """One timed swarmapply cold migration."""

    source: str
    target: str
    wall: float
    timings: dict[str, float]
    cpuset: str


@dataclass
class AutoResult:
    """What the auto migration did."""

    phase: str = ""
    mode: str = ""
    reason: str = ""
    message: str = ""
    fallback: list[str] = field(default_factory=list)
    wall: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    node: str | None = None
    error: str | None = None


@dataclass
class Results:
    """Everything the run measured."""

    cold: list[ColdRound] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    auto: AutoResult | None = None
    notes: list[str] = field(default_factory=list)


def wait_for(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.05) -> T:
    """Polls ``check`` until it returns something other than None or False; returns it.

    Raises:
        TimeoutError: Not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f} s")
        time.sleep(every)


def ready(store: Store, node: str) -> bool:
    """Whether the Node ``node`` has the condition Ready=True."""
    try:
        conditions = (store.get("Node", node).get("status") or {}).get("conditions") or []
    except NotFound:
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def the_task(store: Store) -> Object:
    """The job's only live Task."""
    items = store.list("Task", field_selector=f"spec.job={JOB}").items
    if len(items) != 1:
        raise RuntimeError(f"job {JOB}: expected one Task, found {len(items)}")
    return items[0]


def running_on(store: Store, task: str, node: str, not_container: str | None) -> Object | None:
    """The Task's status when it is Running on ``node`` with a container other than
    ``not_container``; else None."""
    status = store.get("Task", task).get("status") or {}
    ok = status.get("phase") == "Running" and status.get("node") == node
    container = status.get("containerID")
    return status if ok and container and container != not_container else None


def migration_done(store: Store, name: str) -> Object | None:
    """The Migration's status once it has Succeeded or Failed; else None."""
    status = store.get("Migration", name).get("status") or {}
    return status if status.get("phase") in ("Succeeded", "Failed") else None


def start_migration(store: Store, task: str, target: str, mode: str) -> str:
    """Creates a Migration of ``task`` to ``target`` as ``swarmapply migrate`` does."""
    obj = task_migration(store, task, target, mode)
    return str(store.create(admitted(obj, f"migrations/{task}"))["metadata"]["name"])


def fallback_messages(store: Store, migration: str) -> list[str]:
    """The messages of the Migration's ``FellBackToCold`` Events."""
    uid = store.get("Migration", migration)["metadata"]["uid"]
    events = store.list("Event", field_selector=f"involvedObject.uid={uid}").items
    return [str(e.get("message", "")) for e in events if e.get("reason") == "FellBackToCold"]


def cold_round(store: Store, task: str, source: str) -> ColdRound:
    """One cold migration of ``task`` from ``source`` to the other node of the pair."""
    target = other(source)
    before = (store.get("Task", task).get("status") or {}).get("containerID")
    t0 = time.perf_counter()
    name = start_migration(store, task, target, "cold")
    status = wait_for(
        lambda: running_on(store, task, target, before),
        MIGRATION_SECONDS,
        f"task {task} Running on {target}",
        every=POLL,
    )
    wall = time.perf_counter() - t0
    done = wait_for(lambda: migration_done(store, name), MIGRATION_SECONDS, f"migration {name}")
    if done.get("phase") != "Succeeded":
        raise RuntimeError(f"migration {name}: {done.get('reason')}: {done.get('message')}")
    timings = {str(k): float(v) for k, v in (done.get("timings") or {}).items()}
    return ColdRound(source, target, wall, timings, str(status.get("cpuset", "")))


def auto_round(store: Store, task: str) -> AutoResult:
    """The auto migration of ``task`` to :data:`AUTO_TARGET`."""
    result = AutoResult()
    before = (store.get("Task", task).get("status") or {}).get("containerID")
    t0 = time.perf_counter()
    name = start_migration(store, task, AUTO_TARGET, "auto")
    done = wait_for(lambda: migration_done(store, name), MIGRATION_SECONDS, f"migration {name}")
    result.phase, result.mode = str(done.get("phase", "")), str(done.get("mode", ""))
    result.reason, result.message = str(done.get("reason", "")), str(done.get("message", ""))
    result.timings = {str(k): float(v) for k, v in (done.get("timings") or {}).items()}
    result.fallback = fallback_messages(store, name)
    if result.phase == "Succeeded":
        wait_for(
            lambda: running_on(store, task, AUTO_TARGET, before),
            MIGRATION_SECONDS,
            f"task {task} Running on {AUTO_TARGET}",
            every=POLL,
        )
        result.wall = time.perf_counter() - t0
    result.node = (store.get("Task", task).get("status") or {}).get("node")
    return result


@dataclass(frozen=True)
class RawSpec:
    """The container the raw baseline moves: the task's, as its engine reports it."""

    image: str
    command: list[str]
    memory: int
    network: str
    cpusets: dict[str, str]


def raw_spec(inspect: Object, cpusets: dict[str, str]) -> RawSpec:
    """The baseline's spec from ``docker inspect`` of the task's container (pure)."""
    networks = list(((inspect.get("NetworkSettings") or {}).get("Networks") or {}).keys())
    if not networks:
        raise RuntimeError("the task's container is attached to no network")
    return RawSpec(
        image=str(inspect["Config"]["Image"]),
        command=[str(c) for c in inspect["Config"]["Cmd"]],
        memory=int(inspect["HostConfig"]["Memory"]),
        network=networks[0],
        cpusets=dict(cpusets),
    )


def raw_create(client: Any, spec: RawSpec, node: str, name: str, label: str) -> Any:
    """Creates (not starts) the baseline's container on ``client``'s daemon."""
    endpoint = client.api.create_endpoint_config(aliases=[name])
    return client.containers.create(
        image=spec.image,
        command=spec.command,
        name=name,
        labels={BENCH_LABEL: label},
        cpuset_cpus=spec.cpusets[node],
        mem_limit=spec.memory,
        memswap_limit=spec.memory,
        network=spec.network,
        networking_config={spec.network: endpoint},
        detach=True,
    )


def raw_rounds(
    clients: dict[str, Any], spec: RawSpec, rounds: int, label: str, seconds: list[float]
) -> None:
    """Moves the baseline's container back and forth ``rounds`` times, adding the seconds of
    each move to ``seconds`` as it goes (so an interrupted run keeps what it measured)."""
    here = PAIR[0]
    container = raw_create(clients[here], spec, here, f"{JOB}-raw-0", label)
    container.start()
    for i in range(1, rounds + 1):
        there = other(here)
        t0 = time.perf_counter()
        container.stop(timeout=RAW_STOP_TIMEOUT)
        container.remove()
        container = raw_create(clients[there], spec, there, f"{JOB}-raw-{i}", label)
        container.start()
        seconds.append(time.perf_counter() - t0)
        container.reload()
        if container.status != "running":
            raise RuntimeError(f"raw round {i}: container on {there} is {container.status}")
        print(f"  raw round {i}: {here} -> {there} {seconds[-1]:.3f} s", flush=True)
        here = there
    container.stop(timeout=RAW_STOP_TIMEOUT)
    container.remove()


def measure(nodes: SwarmNodes, rounds: int, results: Results) -> None:
    """Builds the cluster and runs every part, adding to ``results`` as it goes."""
    from swarmapply.cli.apply import apply_all

    print("  building a 3-node Swarm ...", flush=True)
    t0 = time.perf_counter()
    nodes.create(list(NODES))
    results.notes.append(f"cluster built in {time.perf_counter() - t0:.1f} s (not counted)")
    url = f"sqlite:///{nodes.base / 'state.db'}"
    with contextlib.closing(open_store(url)) as store:
        nodes.start_controllers(url)
        # Checkpoints (the auto migration tries one) go under the cluster's directory.
        checkpoints = nodes.base / "checkpoints"
        checkpoints.mkdir()
        for daemon in nodes.daemons:
            nodes.start_agent(daemon, url, "--checkpoint-dir", str(checkpoints))
        wait_for(lambda: all(ready(store, n) for n in NODES), START_SECONDS, "Nodes Ready")
        for _ in apply_all(store, admit([("migration_bench", json.dumps(job_manifest()))]), False):
            pass
        task = str(
            wait_for(lambda: _task_running(store, PAIR[0]), START_SECONDS, f"job {JOB} Running")[
                "metadata"
            ]["name"]
        )
        first = store.get("Task", task)["status"]
        cpusets = {PAIR[0]: str(first["cpuset"])}
        here = PAIR[0]
        for i in range(1, rounds + 1):
            done = cold_round(store, task, here)
            results.cold.append(done)
            cpusets.setdefault(done.target, done.cpuset)
            shown = ", ".join(f"{k} {v:.3f}" for k, v in done.timings.items())
            print(f"  cold round {i}: {here} -> {done.target} {done.wall:.3f} s ({shown})",
                  flush=True)  # fmt: skip
            here = done.target
        with contextlib.closing(nodes.node(here).client()) as client:
            container = store.get("Task", task)["status"]["containerID"]
            spec = raw_spec(client.api.inspect_container(container), cpusets)
        print(f"  auto migration {here} -> {AUTO_TARGET} ...", flush=True)
        try:
            results.auto = auto_round(store, task)
        except (TimeoutError, RuntimeError) as exc:
            results.auto = AutoResult(error=str(exc))
        where = (store.get("Task", task).get("status") or {}).get("node")
        if where in PAIR:
            results.notes.append(
                f"the task stayed on {where} during the raw baseline (the auto migration did "
                f"not move it to {AUTO_TARGET})"
            )
        label = nodes.tag
        with contextlib.ExitStack() as stack:
            clients = {n: stack.enter_context(contextlib.closing(nodes.node(n).client()))
                       for n in PAIR}  # fmt: skip
            raw_rounds(clients, spec, rounds, label, results.raw)
        results.notes.append(
            f"raw container: {spec.image} {' '.join(spec.command)}, memory {spec.memory} B, "
            f"network {spec.network}, cpusets {spec.cpusets}"
        )


def _task_running(store: Store, node: str) -> Object | None:
    items = store.list("Task", field_selector=f"spec.job={JOB}").items
    for item in items:
        status = item.get("status") or {}
        if status.get("phase") == "Running" and status.get("node") == node:
            return item
        if status.get("phase") in ("Failed", "Succeeded"):
            raise RuntimeError(f"task {item['metadata']['name']} ended: {status}")
    return None


# ---------------------------------------------------------------------------- output


def machine_line() -> str:
    """Cores, kernel and the Docker Engine of this machine."""
    try:
        with contextlib.closing(docker.from_env(version="auto", timeout=10)) as client:
            version = client.version()
        engine = f"Docker Engine {version.get('Version')} (API {version.get('ApiVersion')})"
    except docker.errors.DockerException as exc:
        engine = f"Docker Engine: not reachable ({exc})"
    return (
        f"machine: {os.cpu_count()} cores, kernel {platform.release()}, {engine}, "
        f"Python {platform.python_version()}"
    )


def report_lines(results: Results, rounds: int) -> list[str]:
    """The table, the ratio, the auto result and the notes."""
    stages: dict[str, list[float]] = {}
    for r in results.cold:
        for stage, seconds in r.timings.items():
            stages.setdefault(stage, []).append(seconds)
    wall = [r.wall for r in results.cold]
    lines = [
        f"one task ({TEST_IMAGE}, {' '.join(COMMAND)}, 1 core, {MEMORY}), "
        f"{PAIR[0]} <-> {PAIR[1]}, {rounds} round(s) each",
        "",
        *table(result_rows(wall, stages, results.raw), (False, True, True, True, True)),
    ]
    times = ratio(spread(wall), spread(results.raw))
    shown = "n/a" if times is None else f"{times:.2f}"
    lines.append(f"ratio median(swarmapply) / median(raw): {shown}")
    lines += ["", *auto_lines(results.auto)]
    if results.notes:
        lines += ["", *results.notes]
    return lines


def auto_lines(auto: AutoResult | None) -> list[str]:
    """What the auto migration did, its messages shortened."""
    if auto is None:
        return ["auto: not run"]
    if auto.error:
        return [f"auto: FAILED: {shorten(auto.error)}"]
    wall = "" if auto.wall is None else f", wall {auto.wall:.3f} s"
    timings = ", ".join(f"{k} {v:.3f}" for k, v in auto.timings.items())
    lines = [
        f"auto migration -> {AUTO_TARGET}: phase {auto.phase}, mode used {auto.mode or '?'}, "
        f"task now on {auto.node}{wall}",
        f"  timings: {timings or '-'}",
        f"  Migration {auto.reason or '-'}: {shorten(auto.message) or '-'}",
    ]
    if auto.fallback:
        lines += [f"  Event FellBackToCold: {shorten(m)}" for m in auto.fallback]
    else:
        lines.append("  no FellBackToCold Event")
    return lines


# ------------------------------------------------------------------------------ running


def _interrupt(signum: int, frame: types.FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM ignored for the block (so a second Ctrl-C cannot stop a cleanup)."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def preflight() -> str | None:
    """Why the benchmark cannot run here, or None."""
    missing = missing_requirements()
    if missing is not None:
        return f"no multi-node Swarm can be built here: {missing}"
    try:
        with contextlib.closing(docker.from_env(version="auto", timeout=10)) as client:
            client.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        return (
            f"image {TEST_IMAGE} is not on the machine's engine; the test suite builds it "
            "(tests/conftest.py, fixture test_image), e.g. pytest -m docker "
            "tests/integration/test_docker_driver.py"
        )
    except docker.errors.DockerException as exc:
        return f"no Docker Engine answers ({exc})"
    return None


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark; 0 when it measured everything, 1 on a failure, 130 interrupted."""
    parser = argparse.ArgumentParser(prog="python -m bench.migration_bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--rounds", type=int, default=5, help="migrations and raw moves (5)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    print(machine_line(), flush=True)
    why = preflight()
    if why is not None:
        print(f"skipped: {why}")
        return 0
    code, results = run_measured(args.rounds)
    print()
    for line in report_lines(results, args.rounds):
        print(line)
    return code


def run_measured(rounds: int) -> tuple[int, Results]:
    """Builds the cluster, measures, and tears everything down (see :func:`main`).

    Call :func:`preflight` first. Returns the exit code (0 measured, 1 a part failed, 130
    interrupted) and what was measured, with cleanup problems in the notes.
    """
    previous = signal.signal(signal.SIGTERM, _interrupt)
    results = Results()
    code = 0
    nodes = SwarmNodes.new()
    try:
        measure(nodes, rounds, results)
        if results.auto is not None and results.auto.error:
            code = 1
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr, flush=True)
        code = 130
    except (RuntimeError, TimeoutError, docker.errors.DockerException, OSError) as exc:
        results.notes.append(f"FAILED: {exc}")
        print(nodes.logs(), file=sys.stderr)
        code = 1
    finally:
        with signals_ignored():
            print("  tearing the cluster down ...", flush=True)
            problems = nodes.remove()
        signal.signal(signal.SIGTERM, previous)
    results.notes += [f"cleanup: {p}" for p in problems]
    return code, results


if __name__ == "__main__":
    sys.exit(main())
