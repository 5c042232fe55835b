"""The ``docker`` driver: runs a node's task containers on a Docker Engine through docker-py.

It implements :class:`~swarmapply.agent.driver.Driver` and nothing more: it creates, starts,
resizes, removes and observes containers as told, labelled per :mod:`swarmapply.agent.model`,
and maps every engine failure onto the driver's typed errors (the cause chained):

* the engine unreachable, a timeout or a 5xx answer -> :class:`EngineUnavailable` (retry);
* the job network missing -> :class:`NetworkNotReady` (temporary: the deployer creates it);
* a 4xx answer to create/start, a missing image (not pulling) or a failed pull, limits the
  engine refuses, a container that cannot start (the engine records the error in its state:
  a missing executable, a capability the host withholds) -> :class:`TaskRefused` with a
  CamelCase reason.

Checkpoint and restore (the engine's experimental API, CRIU) are in
:mod:`swarmapply.agent.docker_checkpoint`.

Guarantees: :meth:`DockerDriver.start` is idempotent per task uid (the containers are looked up
by the ``swarmapply.io/task-uid`` label, and the container name ``<task>-<uid[:8]>`` makes the
engine refuse a concurrent second create). It does not retry (the agent does), it applies no
safety policy to the spec (the agent refuses dangerous settings before asking), and it never
restarts a container that has exited: a finished incarnation stays finished.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, NoReturn

import docker
import docker.errors
import docker.types
import requests
import urllib3

from swarmapply.agent.driver import EngineUnavailable, NetworkNotReady, TaskRefused
from swarmapply.agent.model import (
    MANAGED_BY,
    MANAGER,
    NODE_NAME,
    TASK_OBJECT,
    TASK_UID,
    ContainerSpec,
    NodeInfo,
    Observed,
)
from swarmapply.api.quantity import QuantityError, format_cpuset, parse_cpuset
from swarmapply.api.store.lifecycle import format_rfc3339

log = logging.getLogger(__name__)

#: Seconds a container gets between SIGTERM and SIGKILL when it is removed.
STOP_TIMEOUT = 3
#: Length of one event-stream window (bounds how long :meth:`DockerDriver.events` takes to stop).
EVENT_WINDOW = 1.0
#: Overlap between consecutive event windows, so an event published late is not lost.
EVENT_OVERLAP = 0.25
#: The engine's actions that :meth:`DockerDriver.events` reports.
EVENT_ACTIONS = frozenset({"die", "start", "oom", "destroy"})
#: Docker's "never" timestamp.
ZERO_TIME = "0001-01-01T00:00:00Z"
#: Docker states not in :data:`swarmapply.agent.model.STATES`, and what they are reported as.
STATE_ALIASES = {"removing": "dead"}
_TERMINAL = frozenset({"exited", "dead"})
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$")
_MEMORY_REFUSALS = ("unable to set memory limit", "device or resource busy")
#: Errors meaning the engine could not be talked to at all.
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    OSError,
)


# --- pure helpers -------------------------------------------------------------------------


def container_name(spec: ContainerSpec) -> str:
    """The engine name of a task's container: ``<task>-<first 8 of uid>``.

    Later incarnations of the same task (new uid) get a new name, so they never collide with
    an old, exited container that has not been pruned yet.
    """
    return f"{spec.task}-{spec.task_uid[:8]}"


def rfc3339_seconds(value: str | None) -> str | None:
    """Docker's nanosecond timestamp as RFC 3339 in UTC to the second; None for "never".

    >>> rfc3339_seconds("2024-05-01T10:11:12.123456789Z")
    '2024-05-01T10:11:12Z'
    >>> rfc3339_seconds("0001-01-01T00:00:00Z") is None
    True
    """
    if not value or value == ZERO_TIME:
        return None
    match = _TIME.match(value)
    if match is None:
        raise ValueError(f"expected an RFC 3339 timestamp, got {value!r}")
    stamp = datetime.fromisoformat(match.group(1) + match.group(2).replace("Z", "+00:00"))
    return format_rfc3339(stamp)


def canonical_cpuset(value: str | None) -> str:
    """An engine cpuset (``CpusetCpus``) in canonical form; ``""`` means unrestricted."""
    if not value or not value.strip():
        return ""
    try:
        return format_cpuset(parse_cpuset(value))
    except QuantityError:
        log.warning("engine reported an unparsable cpuset %r; keeping it as is", value)
        return value


def observed_from_inspect(attrs: Mapping[str, Any]) -> Observed:
    """What an ``inspect`` answer says about a managed container (pure).

    Docker's ``removing`` state is reported as ``dead`` (the container is on its way out).
    """
    config = attrs.get("Config") or {}
    host = attrs.get("HostConfig") or {}
    state = attrs.get("State") or {}
    labels: dict[str, str] = dict(config.get("Labels") or {})
    status = str(state.get("Status") or "dead")
    status = STATE_ALIASES.get(status, status)
    return Observed(
        container_id=str(attrs["Id"]),
        task=labels.get(TASK_OBJECT, ""),
        task_uid=labels.get(TASK_UID, ""),
        state=status,
        cpuset=canonical_cpuset(host.get("CpusetCpus")),
        memory=int(host.get("Memory") or 0),
        exit_code=int(state.get("ExitCode", 0)) if status in _TERMINAL else None,
        oom_killed=bool(state.get("OOMKilled", False)),
        error=str(state["Error"]) if state.get("Error") else None,
        started_at=rfc3339_seconds(state.get("StartedAt")),
        finished_at=rfc3339_seconds(state.get("FinishedAt")),
        labels=labels,
    )


def create_arguments(spec: ContainerSpec, endpoint: Any | None) -> dict[str, Any]:
    """The keyword arguments of ``client.containers.create`` for ``spec`` (pure).

    Args:
        spec: The container to run.
        endpoint: The endpoint config for ``spec.network`` (carrying the alias), if any.

    A container on the host's network joins no job network and publishes no ports (it uses
    the node's own).
    """
    mounts = [
        docker.types.Mount(
            target=v.target,
            source=v.source,
            type="bind" if v.source.startswith("/") else "volume",
            read_only=v.read_only,
        )
        for v in spec.volumes
    ]
    arguments: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.command) if spec.command is not None else None,
        "name": container_name(spec),
        "labels": spec.labels,
        "environment": dict(spec.environment),
        "cpuset_cpus": spec.cpuset,
        "mem_limit": spec.memory,
        "memswap_limit": spec.memory,
        "ports": {f"{p.container_port}/{p.protocol}": p.host_port for p in spec.ports},
        "mounts": mounts,
        "detach": True,
    }
    if spec.privileged:
        arguments["privileged"] = True
    if spec.capabilities:
        arguments["cap_add"] = list(spec.capabilities)
    if spec.host_pid:
        arguments["pid_mode"] = "host"
    if spec.host_network:
        arguments["network_mode"] = "host"
        del arguments["ports"]
    elif spec.network:
        arguments["network"] = spec.network
        arguments["networking_config"] = {spec.network: endpoint}
    return arguments


def _unavailable(what: str, exc: BaseException) -> NoReturn:
    if isinstance(exc, docker.errors.APIError):
        detail = exc.explanation or str(exc)
        raise EngineUnavailable(f"{what}: the Docker Engine failed: {detail}") from exc
    raise EngineUnavailable(f"{what}: cannot reach the Docker Engine: {exc}") from exc


def _is_server_error(exc: docker.errors.APIError) -> bool:
    return exc.response is None or bool(exc.is_server_error())


# --- the driver -----------------------------------------------------------------------------


class DockerDriver:
    """Runs and observes one node's task containers on a Docker Engine.

    The client is made on first use (``docker.from_env()``) when none is given, so an agent
    can start while its engine is down and report that through :class:`EngineUnavailable`.
    Safe to use from several threads.

    Args:
        client: The docker-py client; default: from the environment (``DOCKER_HOST``...).
        name: The node's name; default: the engine's hostname (``docker info`` Name).
        reserved_cores: Core ids never given to tasks (left to the system).
        pull: Pull an image that is not present; when False, such a task is refused.
    """

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        name: str | None = None,
        reserved_cores: frozenset[int] = frozenset(),
        pull: bool = True,
    ) -> None:
        self._client = client
        self._name = name
        self._reserved = frozenset(reserved_cores)
        self._pull = pull
        self._lock = threading.Lock()
        # Observed of exited/dead containers, by id, with the list entry's Status prefix they
        # were seen with: finished containers do not change, so they are inspected once.
        self._finished: dict[str, tuple[str, Observed]] = {}

    # -- plumbing --

    @property
    def client(self) -> docker.DockerClient:
        """The docker-py client (made on first use).

        Raises:
            EngineUnavailable: No client given and the engine cannot be reached.
        """
        with self._lock:
            if self._client is None:
                try:
                    self._client = docker.from_env()
                except docker.errors.DockerException as exc:
                    _unavailable("connecting", exc)
            return self._client

    @property
    def name(self) -> str:
        """The node's name (the engine's hostname unless given)."""
        if self._name is None:
            self._name = str(self._engine_info()["Name"])
        return self._name

    def _engine_info(self) -> dict[str, Any]:
        self._drop_idle_connections()
        try:
            info: dict[str, Any] = self.client.info()
        except docker.errors.APIError as exc:
            _unavailable("docker info", exc)
        except _TRANSPORT_ERRORS as exc:
            _unavailable("docker info", exc)
        return info

    def _drop_idle_connections(self) -> None:
        """Make the next call open a new connection to the engine.

        An engine that shuts down closes its listening socket first, then stops its containers
        (up to their stop timeout), and meanwhile still answers on connections already open.
        Only a new connection tells that it is going away: so ``docker info`` (each heartbeat)
        and the check of a container seen ending (:meth:`_confirm_serving`) use one. Streams
        under way (the event stream) keep their connection.
        """
        self.client.api.close()

    def _confirm_serving(self, what: str) -> None:
        """Raise :class:`EngineUnavailable` unless the engine takes a new connection.

        A container killed by its engine's shutdown has not failed by itself: its node is
        going down, and the task is to be reported lost with it, not failed with exit 137.
        """
        self._drop_idle_connections()
        try:
            self.client.api.ping()
        except docker.errors.APIError as exc:
            _unavailable(what, exc)
        except _TRANSPORT_ERRORS as exc:
            _unavailable(what, exc)

    def _engine_is_local(self) -> bool:
        base_url = str(self.client.api.base_url)
        return base_url.startswith("http+docker://") and self.name == socket.gethostname()

    def _inspect(self, container_id: str) -> dict[str, Any] | None:
        """The engine's inspect answer; None when the container is gone."""
        try:
            attrs: dict[str, Any] = self.client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            _unavailable(f"inspecting container {container_id}", exc)
        except _TRANSPORT_ERRORS as exc:
            _unavailable(f"inspecting container {container_id}", exc)
        return attrs

    def _list(self, labels: list[str]) -> list[dict[str, Any]]:
        """List-endpoint entries of all containers (any state) carrying all ``labels``."""
        try:
            entries: list[dict[str, Any]] = self.client.api.containers(
                all=True, filters={"label": labels}
            )
        except docker.errors.APIError as exc:
            _unavailable("listing containers", exc)
        except _TRANSPORT_ERRORS as exc:
            _unavailable("listing containers", exc)
        return entries

    # -- Driver --

    def info(self) -> NodeInfo:
        """The node's name, cores, memory and engine/Swarm facts.

        Core ids are ``0..NCPU-1`` as the engine counts them. When the engine runs on this
        host (a local socket and the engine's hostname is ours) they are intersected with this
        process's CPU affinity: an operator who confines the agent (``taskset``, a systemd
        ``CPUAffinity=`` or cpuset slice) thereby says which cores tasks may have, and a core
        the engine counts but this host has taken away is never handed out. A remote engine
        (or an agent in a container, whose hostname differs) is taken at its word. Reserved
        cores are removed last.

        Raises:
            EngineUnavailable: The engine cannot be reached.
        """
        facts = self._engine_info()
        if self._name is None:
            self._name = str(facts["Name"])
        cores = set(range(int(facts.get("NCPU") or 0)))
        if hasattr(os, "sched_getaffinity") and self._engine_is_local():
            cores &= os.sched_getaffinity(0)
        swarm = facts.get("Swarm") or {}
        in_swarm = swarm.get("LocalNodeState") == "active" and bool(swarm.get("NodeID"))
        return NodeInfo(
            name=self._name,
            core_ids=tuple(sorted(cores - self._reserved)),
            memory=int(facts.get("MemTotal") or 0),
            address=str(swarm["NodeAddr"]) if swarm.get("NodeAddr") else None,
            engine_version=str(facts["ServerVersion"]) if facts.get("ServerVersion") else None,
            swarm_node_id=str(swarm["NodeID"]) if in_swarm else None,
            role=("manager" if swarm.get("ControlAvailable") else "worker") if in_swarm else None,
            swarm_state=str(swarm["LocalNodeState"]) if swarm.get("LocalNodeState") else None,
        )

    def containers(self) -> list[Observed]:
        """Every managed container of this node (label ``swarmapply.io/node``), in any state.

        Cost: one list call (filtered by label on the engine) plus one inspect per container
        that is not finished, because the list endpoint carries neither the limits
        (``HostConfig``) nor the exit details. A finished (exited/dead) container is inspected
        once and then served from a cache while its list entry's state and exit code stay the
        same; so a node keeping many finished containers costs about one call per resync.
        (A finished container restarted and finished again with the same code between two
        calls is reported with its old times.) When a container is seen finished for the first
        time, a ping on a new connection checks that the engine is not shutting down (see
        :meth:`_drop_idle_connections`); if it is, nothing is reported.

        Raises:
            EngineUnavailable: The engine cannot be reached.
        """
        entries = self._list([f"{MANAGED_BY}={MANAGER}", f"{NODE_NAME}={self.name}"])
        observed: list[Observed] = []
        seen: set[str] = set()
        ended = False
        for entry in entries:
            container_id = str(entry["Id"])
            seen.add(container_id)
            key = f"{entry.get('State')}|{str(entry.get('Status', '')).split(')')[0]}"
            with self._lock:
                cached = self._finished.get(container_id)
            if cached is not None and cached[0] == key:
                observed.append(cached[1])
                continue
            attrs = self._inspect(container_id)
            if attrs is None:
                log.debug("container %s went away while being listed", container_id)
                continue
            current = observed_from_inspect(attrs)
            observed.append(current)
            ended = ended or current.state in _TERMINAL
            with self._lock:
                if current.state in _TERMINAL and entry.get("State") in _TERMINAL:
                    self._finished[container_id] = (key, current)
                else:
                    self._finished.pop(container_id, None)
        with self._lock:
            for gone in set(self._finished) - seen:
                del self._finished[gone]
        if ended:  # seen ending just now: not by the engine's own shutdown?
            self._confirm_serving("listing containers")
        return observed

    def _find(self, task_uid: str) -> dict[str, Any] | None:
        """The inspect answer of the container for ``task_uid`` (the oldest if several)."""
        entries = self._list([f"{TASK_UID}={task_uid}"])
        if len(entries) > 1:
            log.warning(
                "task uid %s has %d containers (%s); using the oldest",
                task_uid,
                len(entries),
                ", ".join(str(e["Id"])[:12] for e in entries),
            )
        for entry in sorted(entries, key=lambda e: int(e.get("Created") or 0)):
            attrs = self._inspect(str(entry["Id"]))
            if attrs is not None:
                return attrs
        return None

    def start(self, spec: ContainerSpec) -> Observed:
        """Create and start the container for ``spec``; idempotent for the same task uid.

        An existing container for the uid is returned as it is, or started when it was only
        created; an exited one is not restarted.

        Raises:
            EngineUnavailable: The engine cannot be reached or failed (5xx).
            NetworkNotReady: ``spec.network`` does not exist on the engine.
            TaskRefused: ``ImageMissing`` (not present, not pulling), ``ImagePullFailed``,
                ``EngineRefused`` (the engine's 4xx answer), ``StartError`` (the container
                cannot run; the engine's error and exit code in the message), ``InvalidSpec``.
        """
        attrs = self._find(spec.task_uid)
        if attrs is None:
            container_id = self._create(spec)
        else:
            container_id = str(attrs["Id"])
            if (attrs.get("State") or {}).get("Status") != "created":
                return observed_from_inspect(attrs)
        self._start(spec, container_id)
        attrs = self._inspect(container_id)
        if attrs is None:
            raise EngineUnavailable(
                f"task {spec.task}: container {container_id[:12]} vanished right after start"
            )
        return observed_from_inspect(attrs)

    def _create(self, spec: ContainerSpec, *, pulled: bool = False) -> str:
        what = f"task {spec.task}: creating container {container_name(spec)}"
        try:
            endpoint = (
                self.client.api.create_endpoint_config(aliases=[spec.alias])
                if spec.network
                else None
            )
            container = self.client.containers.create(**create_arguments(spec, endpoint))
        except docker.errors.ImageNotFound as exc:
            if pulled or not self._pull:
                raise TaskRefused(
                    "ImageMissing",
                    f"task {spec.task}: image {spec.image!r} is not present on node "
                    f"{self.name}" + ("" if pulled else " and pulling is disabled"),
                ) from exc
            self._pull_image(spec)
            return self._create(spec, pulled=True)
        except docker.errors.NotFound as exc:
            self._network_missing(spec, exc)
            raise TaskRefused("EngineRefused", f"{what}: {exc.explanation}") from exc
        except docker.errors.APIError as exc:
            if _is_server_error(exc):
                _unavailable(what, exc)
            if exc.status_code == 409:
                existing = self._find(spec.task_uid)
                if existing is not None:  # a concurrent start won the name
                    return str(existing["Id"])
            raise TaskRefused("EngineRefused", f"{what}: {exc.explanation}") from exc
        except (docker.errors.InvalidArgument, docker.errors.InvalidVersion) as exc:
            raise TaskRefused("InvalidSpec", f"{what}: {exc}") from exc
        except _TRANSPORT_ERRORS as exc:
            _unavailable(what, exc)
        return str(container.id)

    def _network_missing(self, spec: ContainerSpec, exc: docker.errors.APIError) -> None:
        """Raise NetworkNotReady when ``exc`` says the task's network does not exist."""
        if spec.network and "network" in str(exc.explanation or "").lower():
            raise NetworkNotReady(
                f"task {spec.task}: network {spec.network!r} does not exist on node "
                f"{self.name} yet ({exc.explanation})"
            ) from exc

    def _pull_image(self, spec: ContainerSpec) -> None:
        log.info("task %s: pulling image %s", spec.task, spec.image)
        try:
            self.client.images.pull(spec.image)
        except docker.errors.APIError as exc:
            raise TaskRefused(
                "ImagePullFailed",
                f"task {spec.task}: pulling image {spec.image!r} failed: {exc.explanation or exc}",
            ) from exc
        except _TRANSPORT_ERRORS as exc:
            _unavailable(f"task {spec.task}: pulling image {spec.image!r}", exc)

    def _start(self, spec: ContainerSpec, container_id: str) -> None:
        what = f"task {spec.task}: starting container {container_id[:12]}"
        try:
            self.client.api.start(container_id)
        except docker.errors.NotFound as exc:
            self._network_missing(spec, exc)
            raise TaskRefused("EngineRefused", f"{what}: {exc.explanation}") from exc
        except docker.errors.APIError as exc:
            # An engine in a Swarm answers a missing network with a 500 ("Could not attach to
            # network X: rpc error: code = NotFound ...") rather than a 404.
            explanation = str(exc.explanation or "")
            if "not found" in explanation.lower():
                self._network_missing(spec, exc)
            self._start_failed(what, container_id, exc)
        except _TRANSPORT_ERRORS as exc:
            _unavailable(what, exc)

    def _start_failed(self, what: str, container_id: str, exc: docker.errors.APIError) -> NoReturn:
        """An error answer to start: the container's fault (it records why) or the engine's.

        A container that cannot run (a command that does not exist: 400; a capability the
        host withholds: 500) keeps the error and an exit code in its state: permanent for the
        task (``StartError``), never an engine outage. Otherwise a 5xx is the engine's failure
        and a 4xx its refusal (``EngineRefused``).
        """
        try:
            attrs = self._inspect(container_id)
        except EngineUnavailable:
            attrs = None
        state = (attrs or {}).get("State") or {}
        if state.get("Error"):
            raise TaskRefused(
                "StartError",
                f"{what}: the container cannot run: {state['Error']} "
                f"(exit code {state.get('ExitCode', '?')})",
            ) from exc
        if _is_server_error(exc):
            _unavailable(what, exc)
        raise TaskRefused("EngineRefused", f"{what}: {exc.explanation}") from exc

    def update(self, container_id: str, cpuset: str, memory: int) -> None:
        """Change a container's cores and memory limit in place (swap limited to the same).

        Lowering the limit of a running container below what it uses now is refused before
        the engine is asked (cgroup v2 would OOM-kill it; v1 fails with "busy"): usage is read
        from one stats sample, page cache that can be dropped not counted.

        Raises:
            EngineUnavailable: The engine cannot be reached or failed.
            TaskRefused: ``ContainerNotFound``, ``MemoryBelowUsage`` or ``EngineRefused``.
        """
        what = f"updating container {container_id[:12]} to cpuset {cpuset!r}, memory {memory}"
        attrs = self._inspect(container_id)
        if attrs is None:
            raise TaskRefused("ContainerNotFound", f"{what}: the container does not exist")
        current = int((attrs.get("HostConfig") or {}).get("Memory") or 0)
        running = (attrs.get("State") or {}).get("Status") == "running"
        if running and memory and (current == 0 or memory < current):
            usage = self._memory_usage(container_id)
            if usage > memory:
                raise TaskRefused(
                    "MemoryBelowUsage",
                    f"{what}: the container uses {usage} bytes, more than the new limit",
                )
        try:
            self.client.api.update_container(
                container_id, cpuset_cpus=cpuset, mem_limit=memory, memswap_limit=memory
            )
        except docker.errors.NotFound as exc:
            raise TaskRefused("ContainerNotFound", f"{what}: {exc.explanation}") from exc
        except docker.errors.APIError as exc:
            text = str(exc.explanation or "").lower()
            if any(fragment in text for fragment in _MEMORY_REFUSALS):
                raise TaskRefused("MemoryBelowUsage", f"{what}: {exc.explanation}") from exc
            if _is_server_error(exc):
                _unavailable(what, exc)
            raise TaskRefused("EngineRefused", f"{what}: {exc.explanation}") from exc
        except _TRANSPORT_ERRORS as exc:
            _unavailable(what, exc)
        with self._lock:
            self._finished.pop(container_id, None)

    def _memory_usage(self, container_id: str) -> int:
        """Bytes a container uses now, without inactive page cache (as ``docker stats``)."""
        what = f"reading memory usage of container {container_id[:12]}"
        try:
            stats: dict[str, Any] = self.client.api.stats(container_id, stream=False, one_shot=True)
        except docker.errors.APIError as exc:
            _unavailable(what, exc)
        except _TRANSPORT_ERRORS as exc:
            _unavailable(what, exc)
        memory = stats.get("memory_stats") or {}
        details = memory.get("stats") or {}
        cache = details.get("total_inactive_file", details.get("inactive_file", 0))
        return max(0, int(memory.get("usage") or 0) - int(cache or 0))

    def remove(self, container_id: str) -> None:
        """Stop the container (``STOP_TIMEOUT`` seconds of grace), then remove it.

        A container already gone, or being removed, is fine. Anonymous volumes go with it;
        named volumes stay.

        Raises:
            EngineUnavailable: The engine cannot be reached or did not remove it.
        """
        what = f"removing container {container_id[:12]}"
        try:
            self.client.api.stop(container_id, timeout=STOP_TIMEOUT)
            self.client.api.remove_container(container_id, v=True, force=True)
        except docker.errors.NotFound:
            log.debug("container %s is gone already", container_id)
        except docker.errors.APIError as exc:
            if exc.status_code == 409 and "in progress" in str(exc.explanation or ""):
                log.debug("container %s is being removed already", container_id)
            else:
                _unavailable(what, exc)
        except _TRANSPORT_ERRORS as exc:
            _unavailable(what, exc)
        with self._lock:
            self._finished.pop(container_id, None)

    def checkpoint(self, container_id: str, directory: str, *, leave_running: bool) -> int:
        """Checkpoint a running container with CRIU into ``directory``; returns its bytes.

        Needs an engine started with ``--experimental`` and CRIU on its machine. A failed
        checkpoint leaves the container running as it was. See
        :mod:`swarmapply.agent.docker_checkpoint`.

        Raises:
            EngineUnavailable: The engine cannot be reached.
            TaskRefused: ``CheckpointFailed`` (the engine's message and CRIU's log errors),
                ``CheckpointUnsupported`` (no experimental API), ``ContainerNotFound``.
        """
        from swarmapply.agent import docker_checkpoint

        return docker_checkpoint.checkpoint(self, container_id, directory, leave_running)

    def restore(self, spec: ContainerSpec, directory: str) -> Observed:
        """Create the container for ``spec`` and start it from the checkpoint in ``directory``.

        Raises:
            EngineUnavailable: The engine cannot be reached.
            NetworkNotReady: The job's network does not exist yet.
            TaskRefused: ``RestoreFailed`` (the engine's message and CRIU's log errors; the
                container made for it is removed), ``CheckpointUnsupported``, or a reason
                :meth:`start` refuses with (``ImageMissing``...).
        """
        from swarmapply.agent import docker_checkpoint

        return docker_checkpoint.restore(self, spec, directory)

    def observe(self, attrs: Mapping[str, Any]) -> Observed:
        """An inspect answer as an :class:`Observed` (see :func:`observed_from_inspect`)."""
        return observed_from_inspect(attrs)

    def forget(self, container_id: str) -> None:
        """Drop what is cached about a container (it changed behind the cache's back)."""
        with self._lock:
            self._finished.pop(container_id, None)

    def _engine_clock_offset(self) -> float:
        """Seconds the engine's clock is ahead of ours (0 when it cannot be told)."""
        before = time.time()
        system_time = str(self._engine_info().get("SystemTime") or "")
        after = time.time()
        match = re.match(
            r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?)\d*(Z|[+-].*)$", system_time
        )
        if match is None:
            return 0.0
        engine = datetime.fromisoformat(match.group(1) + match.group(2).replace("Z", "+00:00"))
        return engine.timestamp() - (before + after) / 2

    def events(self, stop: threading.Event) -> Iterator[str]:
        """Task uids of this node's containers that started, died, were OOM-killed or removed.

        The engine's event stream blocks until an event comes, so it is read in windows of
        :data:`EVENT_WINDOW` seconds (``since``/``until`` on the engine's clock, whose offset
        from ours is measured once); ``stop`` is checked between windows, so this returns
        within about one window after ``stop`` is set. Windows were chosen over closing the
        stream from another thread because that depends on the transport's socket internals.
        Windows overlap by :data:`EVENT_OVERLAP` so an event published late is not lost;
        events seen twice in the overlap are reported once. Costs one request per window.

        Raises:
            EngineUnavailable: The engine cannot be reached (the caller starts over later;
                events in between are caught by its resync).
        """
        filters = {
            "type": "container",
            "label": [f"{MANAGED_BY}={MANAGER}", f"{NODE_NAME}={self.name}"],
        }
        offset = self._engine_clock_offset()
        since = time.time() + offset
        seen: set[tuple[str, str, int]] = set()
        while not stop.is_set():
            until = max(time.time() + offset, since) + EVENT_WINDOW
            current: set[tuple[str, str, int]] = set()
            try:
                stream = self.client.api.events(
                    since=f"{since:.9f}", until=f"{until:.9f}", filters=filters, decode=True
                )
                try:
                    for event in stream:
                        actor = event.get("Actor") or {}
                        action = str(event.get("Action") or event.get("status") or "")
                        key = (str(actor.get("ID", "")), action, int(event.get("timeNano") or 0))
                        current.add(key)
                        uid = (actor.get("Attributes") or {}).get(TASK_UID)
                        if action in EVENT_ACTIONS and uid and key not in seen:
                            yield str(uid)
                finally:
                    stream.close()
            except docker.errors.APIError as exc:
                _unavailable("reading the event stream", exc)
            except _TRANSPORT_ERRORS as exc:
                _unavailable("reading the event stream", exc)
            seen = current
            since = until - EVENT_OVERLAP


__all__ = [
    "EVENT_WINDOW",
    "STOP_TIMEOUT",
    "DockerDriver",
    "canonical_cpuset",
    "container_name",
    "create_arguments",
    "observed_from_inspect",
    "rfc3339_seconds",
]
