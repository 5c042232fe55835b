"""The deployer's view of the manager's Docker Engine: Swarm, networks and images.

:class:`Engine` is the small Protocol the deployer (:mod:`.deployer`) decides against, so its
decisions are tested with a fake; :class:`DockerEngine` implements it with docker-py. The
adapter only translates: it makes no decisions, retries nothing and keeps no state besides its
client.

Errors, every one with the engine's cause chained:

* the engine unreachable, a timeout, a 5xx answer, or a 409 (someone else changed the same
  thing meanwhile) -> :class:`EngineUnavailable` (temporary: retried with backoff);
* any other 4xx answer (a subnet the engine refuses, an address it cannot advertise) ->
  :class:`EngineRefused` (permanent until someone changes the input);
* a pull that fails for any reason but an unreachable engine -> :class:`ImagePullFailed`.

Not guaranteed: that a network or image seen here is usable on other nodes (agents check
their own engine), or that the join token returned is still valid later (it can be rotated).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import docker
import docker.errors
import docker.types
import requests
import urllib3

from swarmapply.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)

#: The port Swarm managers listen on for joining nodes.
SWARM_PORT = 2377

#: Errors meaning the engine could not be talked to at all.
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    OSError,
)


class EngineUnavailable(TemporaryError):
    """The engine could not be reached, failed, or saw a concurrent change; worth retrying."""


class EngineRefused(PermanentError):
    """The engine refused a request as given (a 4xx answer); retrying the same fails again."""


class ImagePullFailed(PermanentError):
    """An image could not be pulled (not found, access denied, no registry reachable)."""


@dataclass(frozen=True)
class SwarmFacts:
    """What the engine says about itself and its Swarm membership.

    Attributes:
        hostname: The engine's host name (the default name of its Node).
        state: Docker's ``LocalNodeState``: ``inactive``, ``pending``, ``active``,
            ``error`` or ``locked``.
        node_id: The engine's Swarm node id, when it is in a Swarm.
        node_addr: The address the engine advertises to the Swarm.
        is_manager: True when the engine is a Swarm manager.
        manager_addr: ``host:port`` other engines join this manager at (when a manager).
        error: The engine's Swarm error, if any.
    """

    hostname: str
    state: str = "inactive"
    node_id: str | None = None
    node_addr: str | None = None
    is_manager: bool = False
    manager_addr: str | None = None
    error: str = ""

    @property
    def active(self) -> bool:
        """True when the engine is an active member of a Swarm."""
        return self.state == "active" and bool(self.node_id)


@dataclass(frozen=True)
class NetworkInfo:
    """A network as the engine shows it.

    Attributes:
        name: Its name.
        id: The engine's id.
        driver: Its driver (``overlay``, ``bridge``...).
        scope: ``swarm``, ``local`` or ``global``.
        attachable: Whether standalone containers may join it (meaningful for overlay).
        subnets: Its IPAM subnets in CIDR form.
        labels: Its labels.
    """

    name: str
    id: str
    driver: str
    scope: str = "local"
    attachable: bool = False
    subnets: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkRequest:
    """A network the deployer asks the engine to create.

    Attributes:
        name: The network's name.
        driver: The driver.
        subnet: The subnet in CIDR form, or None for one the engine picks.
        attachable: Let standalone containers join it (the agents' containers must).
        labels: Labels to put on it.
    """

    name: str
    driver: str
    subnet: str | None = None
    attachable: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)


class Engine(Protocol):
    """The Swarm, network and image calls the deployer makes on the manager's engine.

    Every method may raise :class:`EngineUnavailable`; others are listed per method.
    """

    def swarm_facts(self) -> SwarmFacts:
        """The engine's host name and Swarm membership."""
        ...

    def init_swarm(self, advertise_addr: str | None) -> None:
        """Make the engine the first manager of a new Swarm.

        Args:
            advertise_addr: The address (or interface, optionally ``:port``) to advertise;
                None lets the engine choose.

        Raises:
            EngineRefused: The engine cannot (e.g. it has several addresses and none was
                given, or it is already in a Swarm).
        """
        ...

    def worker_join_token(self) -> str:
        """The token worker engines join the Swarm with (the engine must be a manager)."""
        ...

    def networks(self, name: str) -> list[NetworkInfo]:
        """Every network named exactly ``name`` (normally zero or one)."""
        ...

    def create_network(self, request: NetworkRequest) -> NetworkInfo:
        """Create a network as requested.

        Raises:
            EngineRefused: The engine refused the settings (e.g. an overlapping subnet).
        """
        ...

    def has_image(self, reference: str) -> bool:
        """Whether the image ``reference`` is present on the engine."""
        ...

    def pull_image(self, reference: str) -> None:
        """Pull the image ``reference`` (``:latest`` when it names no tag or digest).

        Raises:
            ImagePullFailed: The pull failed (the message says why).
        """
        ...


# --- pure helpers -------------------------------------------------------------------------


def swarm_facts_from_info(info: Mapping[str, Any]) -> SwarmFacts:
    """The :class:`SwarmFacts` in an engine's ``docker info`` answer (pure)."""
    swarm: Mapping[str, Any] = info.get("Swarm") or {}
    node_id = str(swarm.get("NodeID") or "") or None
    node_addr = str(swarm.get("NodeAddr") or "") or None
    is_manager = bool(swarm.get("ControlAvailable"))
    manager_addr = None
    if is_manager:
        for manager in swarm.get("RemoteManagers") or []:
            if manager.get("NodeID") == node_id and manager.get("Addr"):
                manager_addr = str(manager["Addr"])
        if manager_addr is None and node_addr:
            manager_addr = join_address(node_addr, SWARM_PORT)
    return SwarmFacts(
        hostname=str(info.get("Name") or ""),
        state=str(swarm.get("LocalNodeState") or "inactive"),
        node_id=node_id,
        node_addr=node_addr,
        is_manager=is_manager,
        manager_addr=manager_addr,
        error=str(swarm.get("Error") or ""),
    )


def join_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass  # a host name
    return f"{host}:{port}"


def network_from_listing(entry: Mapping[str, Any]) -> NetworkInfo:
    """The :class:`NetworkInfo` of one entry of the engine's network list or inspect (pure)."""
    ipam: Mapping[str, Any] = entry.get("IPAM") or {}
    subnets = tuple(str(c["Subnet"]) for c in ipam.get("Config") or [] if c.get("Subnet"))
    return NetworkInfo(
        name=str(entry.get("Name") or ""),
        id=str(entry.get("Id") or ""),
        driver=str(entry.get("Driver") or ""),
        scope=str(entry.get("Scope") or "local"),
        attachable=bool(entry.get("Attachable")),
        subnets=subnets,
        labels={str(k): str(v) for k, v in (entry.get("Labels") or {}).items()},
    )


# --- the docker-py adapter ----------------------------------------------------------------


def engine_failure(what: str, exc: BaseException) -> NoReturn:
    """Raise the typed error for a docker-py or transport exception (cause chained)."""
    if isinstance(exc, docker.errors.APIError):
        detail = str(exc.explanation or exc)
        status = exc.status_code
        if status is not None and 400 <= status < 500 and status != 409:
            raise EngineRefused(f"{what}: the Docker Engine refused: {detail}") from exc
        raise EngineUnavailable(f"{what}: the Docker Engine failed: {detail}") from exc
    if isinstance(exc, docker.errors.DockerException):
        raise EngineUnavailable(f"{what}: {exc}") from exc
    raise EngineUnavailable(f"{what}: cannot reach the Docker Engine: {exc}") from exc


class DockerEngine:
    """:class:`Engine` on a Docker Engine through docker-py."""

    def __init__(self, docker_host: str | None = None, *, client: Any = None) -> None:
        """Create the adapter; the engine is first contacted on the first call.

        Args:
            docker_host: The engine's URL (``unix:///var/run/docker.sock``,
                ``tcp://host:2376``); None for the environment's (``DOCKER_HOST`` or the
                default socket).
            client: A docker-py ``DockerClient`` to use instead of making one.
        """
        self.docker_host = docker_host
        self._client = client

    @property
    def client(self) -> Any:
        """The docker-py client (made on first use).

        Raises:
            EngineUnavailable: The client cannot be made (e.g. a malformed ``DOCKER_HOST``).
        """
        if self._client is None:
            try:
                if self.docker_host:
                    self._client = docker.DockerClient(base_url=self.docker_host, version="auto")
                else:
                    self._client = docker.from_env(version="auto")
            except (docker.errors.DockerException, *_TRANSPORT_ERRORS) as exc:
                engine_failure("connecting", exc)
        return self._client

    def close(self) -> None:
        """Close the client, if one was made."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def swarm_facts(self) -> SwarmFacts:
        """See :meth:`Engine.swarm_facts`."""
        try:
            info = self.client.info()
        except (docker.errors.APIError, *_TRANSPORT_ERRORS) as exc:
            engine_failure("docker info", exc)
        return swarm_facts_from_info(info)

    def init_swarm(self, advertise_addr: str | None) -> None:
        """See :meth:`Engine.init_swarm`."""
        what = "initialising a Swarm" + (f" advertising {advertise_addr}" if advertise_addr else "")
        try:
            self.client.api.init_swarm(advertise_addr=advertise_addr)
        except (docker.errors.APIError, *_TRANSPORT_ERRORS) as exc:
            engine_failure(what, exc)

    def worker_join_token(self) -> str:
        """See :meth:`Engine.worker_join_token`."""
        try:
            attrs = self.client.api.inspect_swarm()
        except (docker.errors.APIError, *_TRANSPORT_ERRORS) as exc:
            engine_failure("reading the Swarm's join tokens", exc)
        token = (attrs.get("JoinTokens") or {}).get("Worker")
        if not token:
            raise EngineUnavailable("reading the Swarm's join tokens: the engine returned none")
        return str(token)

    def networks(self, name: str) -> list[NetworkInfo]:
        """See :meth:`Engine.networks` (the engine's name filter matches parts of names)."""
        try:
            listing = self.client.api.networks(names=[name])
        except (docker.errors.APIError, *_TRANSPORT_ERRORS) as exc:
            engine_failure(f"listing networks named {name!r}", exc)
        return [network_from_listing(e) for e in listing or [] if e.get("Name") == name]

    def create_network(self, request: NetworkRequest) -> NetworkInfo:
        """See :meth:`Engine.create_network`."""
        what = f"creating network {request.name!r} (driver {request.driver})"
        ipam = None
        if request.subnet:
            ipam = docker.types.IPAMConfig(
                pool_configs=[docker.types.IPAMPool(subnet=request.subnet)]
            )
        try:
            created = self.client.api.create_network(
                request.name,
                driver=request.driver,
                ipam=ipam,
                check_duplicate=True,
                labels=dict(request.labels),
                attachable=request.attachable,
            )
            attrs = self.client.api.inspect_network(created["Id"])
        except (docker.errors.APIError, *_TRANSPORT_ERRORS) as exc:
            engine_failure(what, exc)
        return network_from_listing(attrs)

    def has_image(self, reference: str) -> bool:
        """See :meth:`Engine.has_image`."""
        try:
            self.client.api.inspect_image(reference)
        except docker.errors.NotFound:
            return False
        except (docker.errors.APIError, *_TRANSPORT_ERRORS) as exc:
            engine_failure(f"inspecting image {reference!r}", exc)
        return True

    def pull_image(self, reference: str) -> None:
        """See :meth:`Engine.pull_image`."""
        try:
            self.client.images.pull(reference)
        except docker.errors.DockerException as exc:
            # The engine answers a registry it cannot reach (or that refuses) with an error
            # too, so every answer counts as a failed pull; only no answer is the engine's.
            detail = exc.explanation if isinstance(exc, docker.errors.APIError) else None
            raise ImagePullFailed(f"pulling image {reference!r}: {detail or exc}") from exc
        except _TRANSPORT_ERRORS as exc:
            engine_failure(f"pulling image {reference!r}", exc)


__all__ = [
    "SWARM_PORT",
    "DockerEngine",
    "Engine",
    "EngineRefused",
    "EngineUnavailable",
    "ImagePullFailed",
    "NetworkInfo",
    "NetworkRequest",
    "SwarmFacts",
    "engine_failure",
    "join_address",
    "network_from_listing",
    "swarm_facts_from_info",
]
