"""Joining the node's Docker Engine to the Swarm whose join facts the deployer published.

The deployer publishes the worker join token and the manager's ``host:port`` on the Lease
``swarm`` (:func:`swarmapply.controllers.deployer.read_join_info`). An agent started with
``--join`` makes its engine a member of that Swarm before it registers its Node, so the Node
carries its Swarm node id and role from the start.

:func:`decide_join` is the pure decision: given what the engine says about its Swarm membership
and the published join facts, join, do nothing (already a member), wait (temporary) or refuse
(permanent). :func:`join_swarm` is the thin docker-py shell around it, and
:func:`wait_and_join` retries it with exponential backoff until it succeeds, fails permanently
or is stopped.

An engine counts as a member of the published Swarm when the published manager address is one
of the managers the engine knows (``docker info``'s ``Swarm.RemoteManagers``); an engine that
is active in a Swarm whose managers do not include it is in another Swarm, and is never made to
leave it (that is the operator's decision). The token is never logged.

Not guaranteed: that a token rotated after it was read still works (the join fails and is
retried), or that the engine's advertised address is reachable by the other nodes (the engine
chooses it unless ``advertise_addr`` is given).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import docker.errors
import requests
import urllib3

from swarmapply.controllers.deployer import JOIN_LEASE, JoinInfo
from swarmapply.controllers.swarm import SWARM_PORT, join_address
from swarmapply.controllers.workqueue import exponential_backoff
from swarmapply.errors import PermanentError, SwarmapplyError, TemporaryError

log = logging.getLogger(__name__)

#: What :func:`join_swarm` returns when it made the engine join.
JOINED = "joined"
#: What :func:`join_swarm` returns when the engine was a member already.
ALREADY_MEMBER = "already a member"

#: Decisions of :func:`decide_join`.
JOIN = "join"
MEMBER = "member"
WAIT = "wait"
REFUSE = "refuse"

#: Seconds before the first retry of :func:`wait_and_join`, doubling up to :data:`MAX_DELAY`.
FIRST_DELAY = 0.5
MAX_DELAY = 8.0
#: The address the joining engine listens on for Swarm traffic (Docker's default).
LISTEN_ADDR = f"0.0.0.0:{SWARM_PORT}"

_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    OSError,
)


@dataclass(frozen=True)
class EngineSwarm:
    """An engine's Swarm membership as ``docker info`` reports it.

    Attributes:
        hostname: The engine's host name (for messages).
        state: Docker's ``LocalNodeState``: ``inactive``, ``pending``, ``active``, ``error``
            or ``locked``.
        node_id: The engine's Swarm node id, when it has one.
        managers: The ``host:port`` of every manager the engine knows.
        error: The engine's Swarm error, if any.
    """

    hostname: str
    state: str = "inactive"
    node_id: str | None = None
    managers: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class JoinDecision:
    """What to do about an engine's Swarm membership.

    Attributes:
        action: :data:`JOIN`, :data:`MEMBER` (nothing to do), :data:`WAIT` (try again later)
            or :data:`REFUSE` (a person must act).
        message: For a person: why.
    """

    action: str
    message: str


# --- pure decisions -----------------------------------------------------------------------


def normal_address(addr: str) -> str:
    """``addr`` as ``host:port``, adding the Swarm port when it has none (pure).

    >>> normal_address("10.0.0.1")
    '10.0.0.1:2377'
    >>> normal_address("[fd00::1]:2377")
    '[fd00::1]:2377'
    """
    addr = addr.strip()
    if addr.startswith("["):
        return addr if "]:" in addr else f"{addr}:{SWARM_PORT}"
    if addr.count(":") == 1:
        return addr
    return join_address(addr, SWARM_PORT)


def engine_swarm_from_info(info: Mapping[str, Any]) -> EngineSwarm:
    """The :class:`EngineSwarm` in an engine's ``docker info`` answer (pure)."""
    swarm: Mapping[str, Any] = info.get("Swarm") or {}
    managers = tuple(
        normal_address(str(m["Addr"])) for m in swarm.get("RemoteManagers") or [] if m.get("Addr")
    )
    return EngineSwarm(
        hostname=str(info.get("Name") or ""),
        state=str(swarm.get("LocalNodeState") or "inactive"),
        node_id=str(swarm.get("NodeID") or "") or None,
        managers=managers,
        error=str(swarm.get("Error") or ""),
    )


def decide_join(engine: EngineSwarm, info: JoinInfo | None) -> JoinDecision:
    """What to do so that ``engine`` is a member of the Swarm ``info`` describes (pure).

    Args:
        engine: The engine's Swarm membership.
        info: The published join facts, or None when none are published yet.
    """
    who = f"engine {engine.hostname or '(unnamed)'}"
    if info is None:
        return JoinDecision(
            WAIT,
            f"the Swarm's join facts are not published yet (annotations of Lease {JOIN_LEASE}; "
            "the deployer writes them once it has initialised the Swarm)",
        )
    manager = normal_address(info.manager_addr)
    if engine.state == "inactive":
        return JoinDecision(JOIN, f"{who} is in no Swarm: joining the one managed at {manager}")
    if engine.state == "pending":
        return JoinDecision(WAIT, f"{who}: its Swarm membership is pending (a join in progress)")
    if engine.state != "active":
        detail = f": {engine.error}" if engine.error else ""
        return JoinDecision(
            REFUSE,
            f"{who}: its Swarm is {engine.state}{detail}; unlock or repair it (docker swarm "
            "unlock, or docker swarm leave --force) before starting the agent with --join",
        )
    if manager in engine.managers:
        return JoinDecision(MEMBER, f"{who} is a member of the Swarm managed at {manager}")
    if not engine.managers:
        return JoinDecision(WAIT, f"{who} is in a Swarm but knows no managers yet")
    return JoinDecision(
        REFUSE,
        f"{who} is in another Swarm (managers {', '.join(engine.managers)}, not {manager} as "
        f"published on Lease {JOIN_LEASE}); make it leave (docker swarm leave) or start the "
        "agent without --join",
    )


# --- the docker-py shell ------------------------------------------------------------------


def _engine_error(what: str, exc: BaseException) -> SwarmapplyError:
    """The typed error for a docker-py or transport failure of ``what``."""
    if isinstance(exc, docker.errors.APIError):
        detail = str(exc.explanation or exc)
        status = exc.status_code
        if status is not None and 400 <= status < 500 and status != 409:
            return PermanentError(f"{what}: the Docker Engine refused: {detail}")
        return TemporaryError(f"{what}: the Docker Engine failed: {detail}")
    return TemporaryError(f"{what}: cannot reach the Docker Engine: {exc}")


def join_swarm(client: Any, info: JoinInfo | None, *, advertise_addr: str | None = None) -> str:
    """Make the engine of ``client`` a member of the Swarm ``info`` describes.

    Args:
        client: A docker-py ``DockerClient`` of the node's engine.
        info: The published join facts (:func:`~swarmapply.controllers.deployer.read_join_info`),
            or None when none are published yet.
        advertise_addr: The address (or interface) the engine advertises to the Swarm; None
            lets the engine choose.

    Returns:
        :data:`JOINED` or :data:`ALREADY_MEMBER`.

    Raises:
        TemporaryError: The join facts are not published yet, the engine or the manager cannot
            be reached, or a join is still in progress.
        PermanentError: The engine is in another Swarm (or a locked or failed one), or it
            refused the join as asked (e.g. a token it does not accept).
    """
    try:
        facts = client.info()
    except (docker.errors.DockerException, *_TRANSPORT_ERRORS) as exc:
        raise _engine_error("docker info", exc) from exc
    engine = engine_swarm_from_info(facts)
    decision = decide_join(engine, info)
    if decision.action == MEMBER:
        return ALREADY_MEMBER
    if decision.action == WAIT:
        raise TemporaryError(decision.message)
    if decision.action == REFUSE:
        raise PermanentError(decision.message)
    assert info is not None  # decide_join joins only with join facts
    manager = normal_address(info.manager_addr)
    what = f"engine {engine.hostname}: joining the Swarm at {manager}"
    try:
        client.api.join_swarm(
            remote_addrs=[manager],
            join_token=info.token,
            listen_addr=LISTEN_ADDR,
            advertise_addr=advertise_addr,
        )
    except (docker.errors.DockerException, *_TRANSPORT_ERRORS) as exc:
        raise _engine_error(what, exc) from exc
    log.info("%s: joined", what)
    return JOINED


def client_from_env() -> Any:
    """A docker-py client of the environment's engine (``DOCKER_HOST`` or the default socket).

    Raises:
        TemporaryError: The client cannot be made (docker-py asks the engine its API version,
            so an engine that is down fails here).
    """
    try:
        return docker.from_env()
    except (docker.errors.DockerException, *_TRANSPORT_ERRORS) as exc:
        raise _engine_error("connecting", exc) from exc


def wait_and_join(
    connect: Callable[[], Any],
    read_info: Callable[[], JoinInfo | None],
    stop: threading.Event,
    *,
    advertise_addr: str | None = None,
    backoff: Callable[[int], float] | None = None,
) -> str | None:
    """Join the Swarm, retrying temporary failures with backoff until it works or ``stop``.

    Each failed attempt is one log line saying why and when the next one is.

    Args:
        connect: Returns a docker-py ``DockerClient`` of the node's engine (called at each
            attempt, so it should keep the client it made); may raise :class:`TemporaryError`.
        read_info: Reads the published join facts (None when there are none yet).
        stop: Ends the waiting when set.
        advertise_addr: See :func:`join_swarm`.
        backoff: Seconds to wait after the n-th failure (default: from :data:`FIRST_DELAY`,
            doubling, up to :data:`MAX_DELAY`).

    Returns:
        What :func:`join_swarm` returned, or None when stopped first.

    Raises:
        PermanentError: Joining cannot succeed without a person's help.
    """
    delay_after = backoff or exponential_backoff(FIRST_DELAY, MAX_DELAY)
    failures = 0
    while not stop.is_set():
        try:
            return join_swarm(connect(), read_info(), advertise_addr=advertise_addr)
        except TemporaryError as exc:
            failures += 1
            delay = delay_after(failures)
            log.info("swarm join: %s; trying again in %.1fs (attempt %d)", exc, delay, failures)
            stop.wait(delay)
    return None


__all__ = [
    "ALREADY_MEMBER",
    "JOIN",
    "JOINED",
    "MEMBER",
    "REFUSE",
    "WAIT",
    "EngineSwarm",
    "JoinDecision",
    "client_from_env",
    "decide_join",
    "engine_swarm_from_info",
    "join_swarm",
    "normal_address",
    "wait_and_join",
]
