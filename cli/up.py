"""``swarmapply up``: a whole cluster in one process — store, every controller and a local agent.

One command runs what otherwise takes three: the store (the embedded SQLite file by default,
MongoDB with ``--store``), every registered controller (as ``swarmapply controllers``) and
the agent of this machine (as ``swarmapply agent``). The agent uses the ``docker`` driver when
a Docker Engine answers (``DOCKER_HOST`` or the default socket), else the ``sim`` driver
(hollow nodes whose tasks run for their simulated duration), with a one-line notice;
``--driver`` forces one. With ``-f`` the manifests are applied exactly as ``apply`` does
(everything admitted first; one line per object). With ``--until-done`` every phase change of
the applied jobs is printed, and the command exits when all of them have finished: 0 when
every one succeeded, 1 otherwise.

What it guarantees: the controllers run under leader election, so a second ``up`` (or
``controllers``) on the same store is harmless: only one instance of each controller is active.
The same holds for the agent: when a live agent elsewhere already holds the heartbeat Lease of
a node this process would run, the local agent stands by (with a notice), so a second ``up``
only applies and follows, and takes the node over if the other agent stops. Every shutdown
(jobs done, SIGINT or SIGTERM) is clean: the controllers finish their current work, the agent
stops, and the controller and node Leases are released so that another process takes over at
once. A second signal exits at once.

What it does not do: remove finished containers or networks (the pruner's job), or stop
containers that still run when it is stopped (the next agent adopts them).
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from swarmapply.agent.agent import lease_name as node_lease_name
from swarmapply.agent.group import AgentGroup
from swarmapply.api.admission import AdmittedObject
from swarmapply.api.store import Gone, NotFound, Object, Store, redact_url
from swarmapply.cli import agent as agent_command
from swarmapply.cli.apply import add_file_arguments, admitted_for_apply, apply_all
from swarmapply.cli.context import Context
from swarmapply.cli.serving import serving
from swarmapply.cli.usage import UsageError
from swarmapply.controllers.lease import live_holder
from swarmapply.controllers.manager import ControllerManager, known_controllers
from swarmapply.controllers.settings import ControllerSettings
from swarmapply.errors import PermanentError

EXAMPLES = """examples:
  swarmapply up -f manifests/examples/hello.yaml --until-done   run a job, exit when it is done
  swarmapply up                                    serve until Ctrl-C; apply with other commands
  swarmapply up --driver sim --sim-nodes 8 --sim-cores 16 -f jobs/ -R
  swarmapply up --store mongodb://db:27017/swarm   a cluster other machines can join

The agent uses the docker driver when a Docker Engine answers (DOCKER_HOST, or the default
socket), else the sim driver; --driver forces one. SIGTERM or Ctrl-C stops it cleanly; a
second one exits at once.
Exit status: 0 after a clean shutdown (with --until-done: every job succeeded), 1 on an error
or a job that did not succeed, 2 on bad usage.
"""

#: Seconds the probe of the Docker Engine waits for an answer.
PROBE_TIMEOUT = 5.0
#: Seconds a watch waits before it checks whether to stop.
WATCH_TIMEOUT = 1.0
#: The phases after which a job does not change any more.
FINISHED = ("Succeeded", "Failed")
#: Controllers that act on the Docker Engine itself; not run for hollow (sim) nodes.
ENGINE_CONTROLLERS = frozenset({"deployer", "pruner"})
#: The default engine address, for messages.
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"

log = logging.getLogger("swarmapply")


class DriverUnavailable(PermanentError):
    """``--driver docker`` was asked for and no Docker Engine answers."""


# -------------------------------------------------------------------------- options (pure)


@dataclass(frozen=True)
class UpOptions:
    """The options of ``swarmapply up``, checked.

    Attributes:
        paths: Manifests to apply (empty: apply nothing).
        recursive: Descend into directories.
        driver: ``docker``, ``sim`` or ``auto`` (docker when an engine answers).
        name: The node's name (docker) or the hollow nodes' name prefix (sim), if given.
        sim_nodes: ``--sim-nodes`` as given (None: the agent's default).
        sim_cores: ``--sim-cores`` as given.
        sim_memory: ``--sim-memory`` as given.
        until_done: Exit when every applied job has finished.
    """

    paths: tuple[str, ...] = ()
    recursive: bool = False
    driver: str = "auto"
    name: str | None = None
    sim_nodes: str | None = None
    sim_cores: str | None = None
    sim_memory: str | None = None
    until_done: bool = False


def check_options(args: argparse.Namespace) -> UpOptions:
    """Validates the options and their combination (pure).

    Raises:
        UsageError: A value or combination is invalid; the message names the option.
    """
    driver = args.driver or "auto"
    if driver not in ("auto", "docker", "sim"):
        raise UsageError(f"--driver: expected docker or sim, got {args.driver!r}")
    sim = {"--sim-nodes": args.sim_nodes, "--sim-cores": args.sim_cores,
           "--sim-memory": args.sim_memory}  # fmt: skip
    if driver == "docker":
        for option, value in sim.items():
            if value is not None:
                raise UsageError(f"{option}: only with the sim driver, not with --driver docker")
    paths = tuple(args.filename or ())
    if args.until_done and not paths:
        raise UsageError("--until-done: give the jobs to wait for with -f PATH")
    if args.recursive and not paths:
        raise UsageError("-R: give directories with -f PATH")
    options = UpOptions(
        paths=paths,
        recursive=args.recursive,
        driver=driver,
        name=args.name,
        sim_nodes=args.sim_nodes,
        sim_cores=args.sim_cores,
        sim_memory=args.sim_memory,
        until_done=args.until_done,
    )
    # The agent's own checks (counts, memory, names), with the option names of this command.
    # (With auto, the sim options are checked too: they are used when no engine answers.)
    checked = "docker" if driver == "docker" else "sim"
    try:
        agent_command.check_options(agent_arguments(options, checked))
    except UsageError as exc:
        raise UsageError(_up_option(str(exc))) from exc
    return options


def _up_option(message: str) -> str:
    """An agent option error, re-worded with this command's option names."""
    for old, new in (("--nodes", "--sim-nodes"), ("--cores", "--sim-cores"),
                     ("--memory", "--sim-memory")):  # fmt: skip
        if message.startswith(old + ":"):
            return new + message[len(old) :]
    return message


def agent_arguments(options: UpOptions, driver: str, name: str | None = None) -> argparse.Namespace:
    """The arguments ``swarmapply agent`` would get for this ``up`` (pure).

    Args:
        options: The checked options.
        driver: The driver chosen: ``docker`` or ``sim``.
        name: The node name to use when ``--name`` was not given (the engine's hostname).
    """
    sim = driver == "sim"
    return argparse.Namespace(
        driver=driver,
        name=options.name if options.name is not None else name,
        heartbeat="10",
        resync="30",
        reserved_cores=None,
        nodes=options.sim_nodes if sim else None,
        cores=options.sim_cores if sim else None,
        memory=options.sim_memory if sim else None,
    )


def controllers_for(driver: str, known: Iterable[str]) -> list[str]:
    """The controllers ``up`` runs with this driver (pure).

    Every registered controller runs with the docker driver. With the sim driver, those that
    act on a container engine (:data:`ENGINE_CONTROLLERS`) do not: hollow nodes have no engine,
    and a simulated job must not create networks or a Swarm on a real one.
    """
    return [name for name in known if driver == "docker" or name not in ENGINE_CONTROLLERS]


def docker_host(environ: Mapping[str, str] | None = None) -> str:
    """Where the docker driver looks for the engine: ``DOCKER_HOST`` or the default socket."""
    env = os.environ if environ is None else environ
    return env.get("DOCKER_HOST") or f"{DEFAULT_DOCKER_HOST} (the default; DOCKER_HOST unset)"


def choose_driver(requested: str, engine_error: str | None, host: str) -> tuple[str, str | None]:
    """Which driver the agent uses, and the notice to print about it (pure).

    Args:
        requested: ``auto``, ``docker`` or ``sim``.
        engine_error: Why the Docker Engine did not answer; None when it did (or when it was
            not asked because ``sim`` was requested).
        host: Where the engine was looked for, for messages.

    Returns:
        ``(driver, notice)``; the notice is None when there is nothing to say.

    Raises:
        DriverUnavailable: ``docker`` was requested and the engine did not answer.
    """
    if requested == "sim":
        return "sim", None
    if engine_error is None:
        return "docker", None
    if requested == "docker":
        raise DriverUnavailable(
            f"--driver docker: no Docker Engine answers at DOCKER_HOST={host}: {engine_error}; "
            "start dockerd or set DOCKER_HOST, or use --driver sim"
        )
    return "sim", (
        f"notice: no Docker Engine answers at {host} ({engine_error}); using the sim driver: "
        "hollow nodes whose tasks run for their simulated duration"
    )


def held_by_other(lease: Object, identity: str, now: datetime) -> str | None:
    """The holder of a Lease when someone else holds it and it has not expired (pure).

    Args:
        lease: The Lease object.
        identity: Our own identity (a Lease we hold is not "held by another").
        now: The current wall-clock time (aware).

    Returns:
        The other holder's identity, or None when the Lease is free, ours or expired.
    """
    holder = live_holder(lease, now)
    return holder if holder != identity else None


# ------------------------------------------------------------------------ progress (pure)


@dataclass
class JobProgress:
    """What one job has been seen to do.

    Attributes:
        phases: The phases seen, in order, without repeats (Pending when the job has none).
        message: The last ``status.message`` printed (while it waits, why it waits).
        deleted: The job was deleted before it finished.
        finished_before: The job had already finished when it was first seen.
    """

    phases: list[str] = field(default_factory=list)
    message: str | None = None
    deleted: bool = False
    finished_before: bool = False

    @property
    def phase(self) -> str | None:
        """The last phase seen (None before the job was seen)."""
        return self.phases[-1] if self.phases else None

    @property
    def done(self) -> bool:
        """Whether the job will not change any more (finished, or deleted)."""
        return self.deleted or self.phase in FINISHED


class Progress:
    """Follows the phases of a set of jobs and says what to print (pure; no I/O).

    Args:
        names: The jobs to follow.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.jobs: dict[str, JobProgress] = {name: JobProgress() for name in names}

    def observe(self, name: str, job: Object | None) -> list[str]:
        """Takes one state of a job (None: deleted); returns the lines to print for it."""
        progress = self.jobs.get(name)
        if progress is None or progress.done:
            return []
        if job is None:
            if not progress.phases:
                return []  # not created yet, as far as this state goes
            progress.deleted = True
            return [f"job {name}: deleted before it finished (last phase {progress.phase})"]
        status: Mapping[str, Any] = job.get("status") or {}
        phase = str(status.get("phase") or "Pending")
        message = status.get("message") if isinstance(status.get("message"), str) else None
        before = progress.phase
        lines: list[str] = []
        if before is None:
            progress.phases.append(phase)
            if phase in FINISHED:
                progress.finished_before = True
                lines.append(
                    f"job {name}: {phase} (it had finished before; delete it to run it again)"
                )
            else:
                lines.append(f"job {name}: {phase}")
        elif phase != before:
            progress.phases.append(phase)
            lines.append(f"job {name}: {before} -> {phase}")
        if message and message != progress.message and phase not in ("Running", "Succeeded"):
            lines.append(f"job {name}: {phase}: {message}")
        progress.message = message
        return lines

    @property
    def done(self) -> bool:
        """Whether every job has finished (or was deleted)."""
        return all(progress.done for progress in self.jobs.values())

    @property
    def succeeded(self) -> bool:
        """Whether every job has succeeded."""
        return all(p.phase == "Succeeded" and not p.deleted for p in self.jobs.values())

    def summary(self) -> list[str]:
        """One line per job: every phase it went through (``Pending -> ... -> Succeeded``)."""
        lines = []
        for name, progress in self.jobs.items():
            path = " -> ".join(progress.phases) or "not found"
            if progress.deleted:
                path += " -> deleted"
            elif not progress.done:
                path += " (not finished)"
            lines.append(f"job {name}: {path}")
        return lines


# ---------------------------------------------------------------------------- the shell


def probe_docker(timeout: float = PROBE_TIMEOUT) -> tuple[str | None, str | None]:
    """Asks the Docker Engine (``DOCKER_HOST`` or the default socket) whether it answers.

    Returns:
        ``(hostname, None)`` when it answers (the engine's host name), else ``(None, why)``.
    """
    import docker
    import docker.errors
    import requests

    try:
        client = docker.from_env(timeout=int(max(1, timeout)))
    except docker.errors.DockerException as exc:
        return None, str(exc) or type(exc).__name__
    try:
        client.ping()
        name = str(client.info().get("Name") or "") or None
        return name, None
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        return None, str(exc) or type(exc).__name__
    finally:
        client.close()


def follow_jobs(
    store: Store, progress: Progress, stop: threading.Event, out: Callable[[str], None]
) -> None:
    """Prints every phase change of the jobs in ``progress`` until all are done or ``stop``.

    The jobs are listed once, then every later change of a Job is replayed in revision order,
    so no phase a job went through is missed (when the history is compacted meanwhile, the
    jobs are listed again and only the states since then are seen).
    """

    def snapshot() -> int:
        listed = store.list("Job")
        found = {obj["metadata"]["name"]: obj for obj in listed.items}
        for name in progress.jobs:
            for line in progress.observe(name, found.get(name)):
                out(line)
        return listed.revision

    revision = snapshot()
    while not progress.done and not stop.is_set():
        try:
            for event in store.watch("Job", revision, stop=stop, timeout=WATCH_TIMEOUT):
                revision = event.revision
                name = event.object["metadata"]["name"]
                obj = None if event.type == "DELETED" else event.object
                for line in progress.observe(name, obj):
                    out(line)
                if progress.done:
                    break
        except Gone:
            revision = snapshot()


def _busy_nodes(store: Store, group: AgentGroup) -> list[tuple[str, str]]:
    """The nodes of ``group`` whose heartbeat Lease a live agent elsewhere seems to hold.

    For the notice only (the wall clocks of two machines compared): the agents themselves
    judge the Lease on their own clock and stand by while it is held.
    """
    now = datetime.now(timezone.utc)
    busy = []
    for agent in group.agents:
        if agent.name is None:
            continue
        try:
            lease = store.get("Lease", node_lease_name(agent.name))
        except NotFound:
            continue
        holder = held_by_other(lease, agent.identity, now)
        if holder is not None:
            busy.append((agent.name, holder))
    return busy


@dataclass
class _Cluster:
    """The threads of one ``up``: the controllers and the agent."""

    stop: threading.Event
    threads: list[threading.Thread] = field(default_factory=list)
    failed: bool = False

    def start(self, name: str, target: Callable[[threading.Event], None]) -> None:
        def body() -> None:
            try:
                target(self.stop)
            except Exception:
                log.exception("%s: stopped by an error; stopping everything", name)
                self.failed = True
                self.stop.set()

        thread = threading.Thread(target=body, name=f"up-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def shutdown(self) -> None:
        """Stops everything and waits (the agent and the controllers release their Leases);
        the main thread stays free to take a second signal."""
        self.stop.set()
        for thread in self.threads:
            while thread.is_alive():
                thread.join(0.2)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds the ``up`` command to the command parsers."""
    parser = commands.add_parser(
        "up",
        help="run a whole cluster here: store, controllers and a local agent (docker or sim)",
        description="Run the store, every controller and this machine's agent in one process;\n"
        "apply manifests with -f, and with --until-done exit when their jobs have finished.",
        epilog=EXAMPLES,
        **kw,
    )
    add_file_arguments(parser, required=False)
    parser.add_argument(
        "--until-done",
        action="store_true",
        help="print the jobs' progress and exit when all have finished (0: all succeeded)",
    )
    parser.add_argument(
        "--driver",
        metavar="docker|sim",
        help="the agent's driver (default: docker when an engine answers, else sim)",
    )
    parser.add_argument(
        "--name",
        metavar="NAME",
        help="the node's name (docker; default the engine's hostname) or the prefix of the "
        "hollow nodes' names (sim; default sim)",
    )
    parser.add_argument("--sim-nodes", metavar="N", help="hollow nodes (sim; default 1)")
    parser.add_argument(
        "--sim-cores",
        metavar="C",
        help=f"cores per hollow node (sim; default {agent_command.DEFAULT_SIM_CORES})",
    )
    parser.add_argument(
        "--sim-memory",
        metavar="M",
        help=f"memory per hollow node (sim; default {agent_command.DEFAULT_SIM_MEMORY})",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context, stop: threading.Event | None = None) -> int:
    """Runs ``swarmapply up`` until the jobs are done, or a signal (or ``stop``) stops it.

    Returns:
        0 after a clean shutdown (with ``--until-done``: every job succeeded); 1 when a job
        did not succeed, the wait was interrupted, or a controller or agent thread failed;
        2 on a bad option value.

    Raises:
        AdmissionError: A manifest is invalid (nothing was started or written).
        DriverUnavailable: ``--driver docker`` and no engine answers.
    """
    try:
        options = check_options(args)
    except UsageError as exc:
        ctx.err(f"error: {exc}")
        return 2
    admitted = []
    if options.paths:
        admitted = admitted_for_apply(list(options.paths), options.recursive, ctx.stdin)
    hostname, engine_error = (None, None) if options.driver == "sim" else probe_docker()
    driver, notice = choose_driver(options.driver, engine_error, docker_host())
    if notice:
        ctx.err(notice)
    store = ctx.store()
    stop = stop if stop is not None else threading.Event()
    quiet = logging.WARNING if options.until_done else logging.INFO
    with serving(ctx, stop, quiet):
        return _serve(ctx, options, admitted, driver, hostname, store, stop)


def _serve(
    ctx: Context,
    options: UpOptions,
    admitted: list[AdmittedObject],
    driver: str,
    hostname: str | None,
    store: Store,
    stop: threading.Event,
) -> int:
    """Runs the cluster (controllers, agent) and follows the jobs; shuts everything down."""
    cluster = _Cluster(stop)
    try:
        names = controllers_for(driver, known_controllers())
        manager = ControllerManager(store, names, ControllerSettings(), elect=True)
        group = agent_command.build_group(ctx, agent_arguments(options, driver, hostname))
        log.info(
            "up: controllers %s as %s, %s agent (store %s)",
            ", ".join(manager.names), manager.identity, driver, redact_url(ctx.store_url),
        )  # fmt: skip
        cluster.start("controllers", manager.run)
        busy = _busy_nodes(store, group)
        if busy:
            held = ", ".join(f"{node} by {holder}" for node, holder in busy)
            ctx.err(
                f"notice: the local agent stands by: its nodes are run by another agent ({held});"
                " it takes over if that one stops"
            )
        cluster.start("agent", group.run)
        for line in apply_all(store, admitted, dry_run=False):
            ctx.out(line)
        if not options.until_done:
            while not stop.wait(0.2):
                pass
            return 1 if cluster.failed else 0
        names = [item.obj["metadata"]["name"] for item in admitted if item.obj["kind"] == "Job"]
        progress = Progress(list(dict.fromkeys(names)))
        follow_jobs(store, progress, stop, ctx.out)
        for line in progress.summary():
            ctx.out(line)
        if not progress.done:
            ctx.err("error: stopped before every job had finished")
            return 1
        return 0 if progress.succeeded else 1
    finally:
        cluster.shutdown()
        log.info("up: stopped")


__all__ = [
    "ENGINE_CONTROLLERS",
    "DriverUnavailable",
    "JobProgress",
    "Progress",
    "UpOptions",
    "agent_arguments",
    "check_options",
    "choose_driver",
    "controllers_for",
    "docker_host",
    "follow_jobs",
    "held_by_other",
    "probe_docker",
    "register",
    "run",
]
