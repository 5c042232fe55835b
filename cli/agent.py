"""``swarmapply agent``: run the node agent (docker) or a set of hollow nodes (sim) until stopped.

With ``--driver docker`` it is the agent of the machine's Docker Engine: the node is named
after the engine's hostname unless ``--name`` is given, its capacity is the engine's cores
(minus ``--reserved-cores``) and memory. With ``--driver sim`` one process runs ``--nodes``
hollow nodes named ``sim-0`` ... (``--name`` changes the prefix), each with ``--cores`` cores
and ``--memory`` memory, whose tasks "run" for their simulated duration.

Checkpoints (CRIU, docker only; migrations and Checkpoint objects) are written below
``--checkpoint-dir`` (default ``/var/lib/swarmapply/checkpoints``); for live migrations between
machines it must be storage both machines can read.

SIGTERM and SIGINT stop it (exit 0); containers keep running and the next agent adopts them.
One line per start, stop and failure goes to stderr. A bad option value is one line and exit 2.
With ``--join`` (docker only) the engine first joins the Swarm whose join facts the deployer
published in the store, waiting with backoff until they are there (one log line per attempt);
an engine in another Swarm is an error (exit 1). It never creates networks (the deployer does).
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from swarmapply.agent.agent import DEFAULT_CHECKPOINT_DIR, DEFAULT_FINISHED_AGE, NodeAgent
from swarmapply.agent.group import AgentGroup
from swarmapply.api.quantity import QuantityError, format_memory, parse_cpuset, parse_memory
from swarmapply.api.store import redact_url
from swarmapply.cli.context import Context
from swarmapply.cli.serving import serving
from swarmapply.cli.usage import UsageError, option_seconds
from swarmapply.errors import PermanentError

EXAMPLES = """examples:
  swarmapply agent --driver docker                     the agent of this machine's engine
  swarmapply agent --driver docker --reserved-cores 0  keep core 0 for the system
  swarmapply agent --driver docker --join              join the store's Swarm first
  swarmapply agent --driver docker --join --advertise-addr eth1   ... on this interface
  swarmapply agent --driver sim --nodes 100 --cores 16 --memory 64Gi   100 hollow nodes

SIGTERM or Ctrl-C stops it; running containers stay and are adopted by the next agent.
Exit status: 0 after a clean shutdown, 1 on an error, 2 on bad usage.
"""

DEFAULT_SIM_CORES = 4
DEFAULT_SIM_MEMORY = "8Gi"


@dataclass(frozen=True)
class AgentOptions:
    """The options of ``swarmapply agent``, checked.

    Attributes:
        driver: ``docker`` or ``sim``.
        name: The node name (docker) or the hollow nodes' name prefix (sim), if given.
        heartbeat: Seconds between heartbeats.
        resync: Seconds between full resyncs.
        reserved_cores: Core ids never given to tasks (docker).
        nodes: How many hollow nodes (sim).
        cores: Cores per hollow node (sim).
        memory: Memory per hollow node in bytes (sim).
        join: Join the Swarm published in the store before starting (docker).
        advertise_addr: The address or interface the engine advertises when it joins.
        pull: Pull images the engine lacks (docker).
        checkpoint_dir: The directory checkpoints are written below.
        finished_age: Seconds the stopped container of a finished task is kept for its logs.
    """

    driver: str
    name: str | None
    heartbeat: float
    resync: float
    reserved_cores: frozenset[int] = frozenset()
    nodes: int = 0
    cores: int = 0
    memory: int = 0
    join: bool = False
    advertise_addr: str | None = None
    pull: bool = True
    checkpoint_dir: str = DEFAULT_CHECKPOINT_DIR
    finished_age: float = DEFAULT_FINISHED_AGE


def _count(option: str, text: str | None, default: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{option}: expected a whole number, got {text!r}") from None
    if value < 1:
        raise UsageError(f"{option}: expected at least 1, got {value}")
    return value


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds the ``agent`` command to the command parsers."""
    parser = commands.add_parser(
        "agent",
        help="run the node agent (docker) or hollow nodes (sim) until stopped",
        description="Register this node (or --nodes hollow ones), heartbeat, and run the\n"
        "tasks bound to it until SIGTERM or Ctrl-C.",
        epilog=EXAMPLES,
        **kw,
    )
    parser.add_argument("--driver", default="docker", metavar="docker|sim", help="default docker")
    parser.add_argument(
        "--name",
        metavar="NAME",
        help="the node's name (docker; default the engine's hostname) or the prefix of the "
        "hollow nodes' names (sim; default sim)",
    )
    parser.add_argument(
        "--heartbeat",
        default="10",
        metavar="SECONDS",
        help="how often the node's Lease and heartbeat are renewed (default 10)",
    )
    parser.add_argument(
        "--resync",
        default="30",
        metavar="SECONDS",
        help="how often everything is compared even when nothing changed (default 30)",
    )
    parser.add_argument(
        "--reserved-cores",
        metavar="LIST",
        help="cores never given to tasks, as a cpuset (docker only), e.g. 0 or 0-1",
    )
    parser.add_argument(
        "--join",
        action="store_true",
        help="first make the engine join the Swarm whose join token the deployer published "
        "in the store, waiting until it is there (docker only)",
    )
    parser.add_argument(
        "--advertise-addr",
        metavar="ADDR",
        help="with --join: the address or interface the engine advertises to the Swarm "
        "(needed when the machine has several; default the engine's choice)",
    )
    parser.add_argument(
        "--no-pull",
        action="store_true",
        help="do not pull images the engine lacks: such tasks fail with ImageMissing (docker)",
    )
    parser.add_argument(
        "--finished-age",
        default=DEFAULT_FINISHED_AGE,
        metavar="SECONDS",
        help="how long the stopped container of a finished task is kept for its logs "
        f"(default {DEFAULT_FINISHED_AGE:g})",
    )
    parser.add_argument(
        "--checkpoint-dir",
        default=DEFAULT_CHECKPOINT_DIR,
        metavar="DIR",
        help="where checkpoints are written (an absolute path; storage the nodes share for "
        f"live migrations between machines; default {DEFAULT_CHECKPOINT_DIR})",
    )
    parser.add_argument("--nodes", metavar="N", help="hollow nodes (sim; default 1)")
    parser.add_argument(
        "--cores", metavar="C", help=f"cores per hollow node (sim; default "
        f"{DEFAULT_SIM_CORES})",
    )  # fmt: skip
    parser.add_argument(
        "--memory", metavar="M", help=f"memory per hollow node (sim; default {DEFAULT_SIM_MEMORY})"
    )
    parser.set_defaults(handler=run)


def check_options(args: argparse.Namespace) -> AgentOptions:
    """Validates the options and their combination (pure).

    Raises:
        UsageError: A value or combination is invalid; the message names the option.
    """
    if args.driver not in ("docker", "sim"):
        raise UsageError(f"--driver: expected docker or sim, got {args.driver!r}")
    heartbeat = option_seconds("--heartbeat", args.heartbeat, positive=True)
    resync = option_seconds("--resync", args.resync, positive=True)
    if args.name is not None and not args.name.strip():
        raise UsageError("--name: expected a name, got an empty string")
    finished_age = option_seconds(
        "--finished-age", getattr(args, "finished_age", None) or DEFAULT_FINISHED_AGE
    )
    checkpoint_dir = str(getattr(args, "checkpoint_dir", None) or DEFAULT_CHECKPOINT_DIR)
    if not os.path.isabs(checkpoint_dir):
        raise UsageError(f"--checkpoint-dir: expected an absolute path, got {checkpoint_dir!r}")
    reserved: frozenset[int] = frozenset()
    if args.driver == "docker":
        for option, value in (("--nodes", args.nodes), ("--cores", args.cores),
                              ("--memory", args.memory)):  # fmt: skip
            if value is not None:
                raise UsageError(f"{option}: only with --driver sim")
        if args.reserved_cores is not None:
            try:
                reserved = frozenset(parse_cpuset(args.reserved_cores))
            except QuantityError as exc:
                raise UsageError(f"--reserved-cores: {exc}") from exc
        join = bool(getattr(args, "join", False))
        advertise = getattr(args, "advertise_addr", None)
        if advertise is not None and not join:
            raise UsageError("--advertise-addr: only with --join")
        return AgentOptions(
            args.driver, args.name, heartbeat, resync, reserved, join=join,
            advertise_addr=advertise, pull=not getattr(args, "no_pull", False),
            checkpoint_dir=checkpoint_dir, finished_age=finished_age,
        )  # fmt: skip
    if getattr(args, "join", False):
        raise UsageError("--join: only with --driver docker (hollow nodes join no Swarm)")
    if getattr(args, "no_pull", False):
        raise UsageError("--no-pull: only with --driver docker (hollow nodes pull nothing)")
    if getattr(args, "advertise_addr", None) is not None:
        raise UsageError("--advertise-addr: only with --driver docker --join")
    if args.reserved_cores is not None:
        raise UsageError("--reserved-cores: only with --driver docker (use --cores for sim)")
    nodes = _count("--nodes", args.nodes, 1)
    cores = _count("--cores", args.cores, DEFAULT_SIM_CORES)
    try:
        memory = parse_memory(DEFAULT_SIM_MEMORY if args.memory is None else args.memory)
    except QuantityError as exc:
        raise UsageError(f"--memory: {exc}") from exc
    if memory < 1:
        raise UsageError(f"--memory: expected more than 0, got {args.memory}")
    return AgentOptions(
        args.driver, args.name, heartbeat, resync, reserved, nodes, cores, memory,
        checkpoint_dir=checkpoint_dir, finished_age=finished_age,
    )  # fmt: skip


def build_group(ctx: Context, args: argparse.Namespace, client: Any = None) -> AgentGroup:
    """The agents the options ask for, as one group (no I/O until it runs).

    Args:
        ctx: The command's context.
        args: The parsed options.
        client: The docker-py client of the engine (docker); None for one from the
            environment, made on first use.

    Raises:
        UsageError: The options are invalid.
    """
    options = check_options(args)
    store = ctx.store()
    common: dict[str, Any] = {
        "heartbeat": options.heartbeat,
        "resync": options.resync,
        "checkpoint_dir": options.checkpoint_dir,
        "finished_age": options.finished_age,
    }
    if options.driver == "docker":
        from swarmapply.agent.docker_driver import DockerDriver

        driver = DockerDriver(
            client, name=options.name, reserved_cores=options.reserved_cores, pull=options.pull
        )
        agent = NodeAgent(store, driver, driver_name="docker", name=options.name, **common)
        return AgentGroup(store, [agent])
    from swarmapply.agent.sim import SimCluster

    cluster = SimCluster()
    prefix = options.name or "sim"
    nodes, cores, memory = options.nodes, options.cores, options.memory
    agents = [
        NodeAgent(
            store, cluster.add_node(f"{prefix}-{i}", cores, memory), driver_name="sim", **common
        )
        for i in range(nodes)
    ]
    logging.getLogger("swarmapply").info(
        "sim: %d hollow nodes %s-0..%s-%d, %d cores and %s each",
        nodes, prefix, prefix, nodes - 1, cores, format_memory(memory),
    )  # fmt: skip
    return AgentGroup(store, agents)


def run(args: argparse.Namespace, ctx: Context, stop: threading.Event | None = None) -> int:
    """Runs ``swarmapply agent`` until a signal (or ``stop``, for tests) stops it.

    Returns:
        0 after a clean shutdown, 1 when the engine cannot join the Swarm (``--join``), 2 on
        a bad option value.
    """
    try:
        options = check_options(args)
    except UsageError as exc:
        ctx.err(f"error: {exc}")
        return 2
    stop = stop if stop is not None else threading.Event()
    with serving(ctx, stop) as logger:
        clients: list[Any] = []  # the engine's client, once made; the driver uses it too
        if options.join:
            from swarmapply.agent.join import client_from_env, wait_and_join
            from swarmapply.controllers.deployer import read_join_info

            def connect() -> Any:
                if not clients:
                    clients.append(client_from_env())
                return clients[0]

            store = ctx.store()
            try:
                outcome = wait_and_join(
                    connect,
                    lambda: read_join_info(store),
                    stop,
                    advertise_addr=options.advertise_addr,
                )
            except PermanentError as exc:
                logger.error("agent: cannot join the Swarm: %s", exc)
                return 1
            if outcome is None:
                logger.info("agent stopped before it joined the Swarm")
                return 0
            logger.info("agent: Swarm membership: %s", outcome)
        group = build_group(ctx, args, clients[0] if clients else None)
        logger.info("agent (%s driver) starting (store %s)", args.driver,
                    redact_url(ctx.store_url))  # fmt: skip
        group.run(stop)
        logger.info("agent stopped: %d containers started", group.starts)
    return 0


__all__ = ["AgentOptions", "build_group", "check_options", "register", "run"]
