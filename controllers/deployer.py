"""The deployer: makes the Swarm side of each Job exist on the manager's Docker Engine.

One controller on kind Job (its Tasks are a secondary kind, so a task being bound re-runs its
job). Each reconcile of a Job:

1. **Swarm** (at the start of each leadership term, before any Job, and again after an
   engine error): with
   ``DeployerSettings.swarm`` the engine is made the first manager of a new Swarm when it is in
   none (advertising ``advertise_addr`` when given), and the worker join token and the
   manager's ``host:port`` are published as annotations :data:`JOIN_TOKEN_ANNOTATION` and
   :data:`MANAGER_ADDR_ANNOTATION` on the Lease named :data:`JOIN_LEASE` (a Lease because its
   metadata may carry annotations and nothing else uses that name; it has no holder). Agents
   read them with :func:`join_info`. The token is never logged or put in an Event; anyone who
   can read the store can read it, and so can join the Swarm.
2. **Network**: the job's network (``spec.network.name``, default the job's name; driver
   ``spec.network.driver``, default ``overlay``; ``spec.network.subnet`` when given) is created
   attachable, labelled ``swarmapply.io/managed-by=swarmapply`` and ``swarmapply.io/job=<job>``,
   with a Normal Event ``NetworkCreated`` on the Job. A network of that name that exists already
   is used when it fits (same driver, the subnet when one is asked for, attachable when
   overlay), whoever made it; otherwise a Warning Event ``NetworkConflict`` on the Job says what
   differs, and the network is left exactly as it is. Nothing is ever deleted or changed (that
   is the pruner's job). Without an active Swarm (``swarm`` off and the engine in none, or
   the engine not a manager) an overlay network cannot exist, so ``overlay`` falls back to
   ``bridge`` on the manager's engine (said in the ``NetworkCreated`` Event). The schema's
   default fills in ``overlay`` at admission, so an explicit ``overlay`` cannot be told from
   the default, and every job falls back alike; other drivers are used as asked.
3. **Images**: for each task of the job in phase ``Scheduled`` and bound to a Node that is this
   engine (the Node named like the engine's host name, or carrying its Swarm node id), the
   image is looked up on the engine and, if absent and ``pull`` is on, pulled (Normal Event
   ``ImagePulled``). A failed pull is a Warning Event ``ImagePullFailed`` on the Job naming the
   image (the agent then fails the task with its own reason); with pulling off a missing image
   is a Warning Event ``ImageMissing``. Images on other nodes are their agents' business.

Jobs that need none of this are skipped: finished ones, and those that run on hollow (``sim``)
nodes only (see :func:`needs_engine`), so a cluster of sim agents needs no Docker Engine.

Readiness is signalled by the network's existence, not by a status field: the Job's status
belongs to the job controller and the Tasks' to the scheduler and the agents, so the deployer
writes only Events (and the join Lease). An agent that finds no network yet retries
(``NetworkNotReady``) until the deployer has made it.

Errors: an engine that is down, or a concurrent change, raises :class:`TemporaryError` (the
runtime retries with backoff); a setting the engine refuses (a subnet it will not use, no
address to advertise, an engine that is a Swarm worker) raises :class:`PermanentError`, which
the runtime records as a ``ReconcileFailed`` Event on the Job. The image step still runs when
the network step failed permanently; the error is raised afterwards.

Not guaranteed: that the network exists on every node before its tasks start there (agents
retry), that a rotated join token is published before the next term, or that images are
present on nodes other than the manager's.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swarmapply.agent.model import JOB_NAME, MANAGED_BY, MANAGER
from swarmapply.api.store import AlreadyExists, Conflict, NotFound, Object, Store
from swarmapply.controllers.events import record_event
from swarmapply.controllers.job_tasks import FINISHED
from swarmapply.controllers.runtime import Controller, SecondaryKind, owner_keys
from swarmapply.controllers.settings import ControllerSettings, DeployerSettings
from swarmapply.controllers.swarm import (
    DockerEngine,
    Engine,
    EngineUnavailable,
    ImagePullFailed,
    NetworkInfo,
    NetworkRequest,
    SwarmFacts,
)
from swarmapply.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)

COMPONENT = "deployer"
API_VERSION = "swarmapply.io/v1"

#: The Lease whose annotations carry the Swarm's join facts.
JOIN_LEASE = "swarm"
#: Annotation holding the worker join token.
JOIN_TOKEN_ANNOTATION = "swarmapply.io/swarm-join-token"
#: Annotation holding the manager's ``host:port``.
MANAGER_ADDR_ANNOTATION = "swarmapply.io/swarm-manager-addr"

DEFAULT_DRIVER = "overlay"
FALLBACK_DRIVER = "bridge"
SCHEDULED = "Scheduled"
#: The Node ``status.driver`` of hollow nodes, which need no network or image.
SIM_DRIVER = "sim"


# --- pure decisions -----------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkWanted:
    """The network a job needs, as the deployer will ask for it.

    Attributes:
        request: What to create when it does not exist.
        asked_driver: The driver the job asked for (before any fallback).
        note: Why the driver differs from the one asked for, or "".
    """

    request: NetworkRequest
    asked_driver: str
    note: str = ""


@dataclass(frozen=True)
class NetworkDecision:
    """What to do about a job's network.

    Attributes:
        action: ``create`` (it does not exist), ``use`` (an existing one fits) or
            ``conflict`` (one exists and does not fit; leave it alone).
        message: For a person: why (for a conflict, what differs, naming the fields).
        existing: The network that exists, for ``use`` and ``conflict`` (the first if
            several).
    """

    action: str
    message: str
    existing: NetworkInfo | None = None


@dataclass(frozen=True)
class JoinInfo:
    """The facts a worker engine needs to join the Swarm."""

    token: str
    manager_addr: str


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def network_labels(job: str) -> dict[str, str]:
    """The labels the deployer puts on the network of ``job``."""
    return {MANAGED_BY: MANAGER, JOB_NAME: job}


def wanted_network(job: Mapping[str, Any], *, overlay_possible: bool) -> NetworkWanted:
    """The network ``job`` needs (pure).

    Args:
        job: The Job object.
        overlay_possible: True when the engine is an active Swarm manager; without one an
            ``overlay`` driver falls back to ``bridge`` (see the module docstring).
    """
    name = _name(job)
    network: Mapping[str, Any] = (job.get("spec") or {}).get("network") or {}
    asked = str(network.get("driver") or DEFAULT_DRIVER)
    driver, note = asked, ""
    if asked == "overlay" and not overlay_possible:
        driver = FALLBACK_DRIVER
        note = "driver bridge instead of overlay: the manager's engine is not a Swarm manager"
    subnet = network.get("subnet")
    request = NetworkRequest(
        name=str(network.get("name") or name),
        driver=driver,
        subnet=str(subnet) if subnet else None,
        attachable=True,
        labels=network_labels(name),
    )
    return NetworkWanted(request=request, asked_driver=asked, note=note)


def _same_subnet(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_network(a, strict=False) == ipaddress.ip_network(b, strict=False)
    except ValueError:
        return a == b


def network_problems(wanted: NetworkWanted, network: NetworkInfo) -> list[str]:
    """Why an existing ``network`` cannot serve as ``wanted`` (pure); empty when it can.

    Each problem names the job's field and both values.
    """
    request = wanted.request
    problems = []
    if network.driver not in (request.driver, wanted.asked_driver):
        asked = wanted.asked_driver
        if request.driver != asked:
            asked += f" (falling back to {request.driver})"
        problems.append(f"spec.network.driver is {asked} but the network's is {network.driver}")
    if request.subnet and not any(_same_subnet(request.subnet, s) for s in network.subnets):
        found = ", ".join(network.subnets) or "none"
        problems.append(
            f"spec.network.subnet is {request.subnet} but the network's subnets are {found}"
        )
    if network.driver == "overlay" and not network.attachable:
        problems.append("the overlay network is not attachable, so task containers cannot join it")
    return problems


def decide_network(
    job: str, wanted: NetworkWanted, present: Sequence[NetworkInfo]
) -> NetworkDecision:
    """What to do about the network of ``job`` given the networks of that name (pure).

    Args:
        job: The job's name (for messages).
        wanted: The network the job needs (:func:`wanted_network`).
        present: Every network on the engine named ``wanted.request.name``.
    """
    name = wanted.request.name
    if not present:
        return NetworkDecision("create", f"network {name} does not exist")
    if len(present) > 1:
        ids = ", ".join(sorted(n.id[:12] for n in present))
        return NetworkDecision(
            "conflict",
            f"job {job}: {len(present)} networks are named {name} ({ids}); containers cannot "
            "choose between them; remove all but one or set spec.network.name",
            present[0],
        )
    problems = network_problems(wanted, present[0])
    if problems:
        return NetworkDecision(
            "conflict",
            f"job {job}: network {name} exists but does not fit: " + "; ".join(problems)
            + "; it is left as it is: remove it or set spec.network.name to another name",
            present[0],
        )  # fmt: skip
    return NetworkDecision("use", f"network {name} exists and fits", present[0])


def created_message(network: NetworkInfo, wanted: NetworkWanted) -> str:
    """The ``NetworkCreated`` Event's message (pure)."""
    subnets = ", ".join(network.subnets) or "chosen by the engine"
    parts = [f"driver {network.driver}", f"subnet {subnets}"]
    if network.attachable:
        parts.append("attachable")
    note = f"; {wanted.note}" if wanted.note else ""
    return f"created network {network.name} ({', '.join(parts)}){note}"


def engine_nodes(nodes: Iterable[Mapping[str, Any]], facts: SwarmFacts) -> set[str]:
    """The names of the Nodes that are the engine described by ``facts`` (pure).

    A Node is this engine when it carries the engine's Swarm node id, or when it is named
    like the engine's host name (an agent's default name) and carries no other Swarm node id.
    """
    names = set()
    for node in nodes:
        name = _name(node)
        swarm_id = (node.get("status") or {}).get("swarmNodeID")
        same_id = bool(facts.node_id) and swarm_id == facts.node_id
        same_host = bool(facts.hostname) and name == facts.hostname
        if same_id or (same_host and not (swarm_id and facts.node_id)):
            names.add(name)
    return names


def needs_engine(
    job: Mapping[str, Any], tasks: Iterable[Mapping[str, Any]], nodes: Iterable[Mapping[str, Any]]
) -> bool:
    """Whether a Job needs the Swarm side at all (pure).

    Not when it has finished, nor when its tasks run on hollow nodes only: every bound task on
    a Node whose ``status.driver`` is ``sim``, or no task bound yet and every registered Node a
    sim one. A task bound to a Node not (yet) known counts as a real one, and so does a job
    when no Node is registered at all.
    """
    if (job.get("status") or {}).get("phase") in FINISHED:
        return False
    drivers = {_name(n): (n.get("status") or {}).get("driver") for n in nodes}
    bound = [str(node) for t in tasks if (node := (t.get("status") or {}).get("node"))]
    if bound:
        return any(drivers.get(node) != SIM_DRIVER for node in bound)
    return not drivers or any(driver != SIM_DRIVER for driver in drivers.values())


def images_to_check(tasks: Iterable[Mapping[str, Any]], nodes: Collection[str]) -> list[str]:
    """The images of the ``Scheduled`` tasks bound to one of ``nodes``, sorted, once each."""
    images = set()
    for task in tasks:
        status = task.get("status") or {}
        if status.get("phase") != SCHEDULED or status.get("node") not in nodes:
            continue
        if (task.get("metadata") or {}).get("deletionTimestamp"):
            continue
        image = (task.get("spec") or {}).get("image")
        if image:
            images.add(str(image))
    return sorted(images)


def image_action(present: bool, pull: bool) -> str:
    """``none`` (present), ``pull`` (absent, pulling allowed) or ``missing`` (pure)."""
    if present:
        return "none"
    return "pull" if pull else "missing"


def join_lease(current: Object | None, token: str, manager_addr: str) -> Object | None:
    """The join Lease to write so it carries ``token`` and ``manager_addr`` (pure).

    Args:
        current: The Lease as read, or None when there is none.
        token: The worker join token.
        manager_addr: The manager's ``host:port``.

    Returns:
        The Lease to create (when ``current`` is None) or update (with ``current``'s
        resourceVersion, for compare-and-swap); None when ``current`` already says so.
    """
    wanted = {JOIN_TOKEN_ANNOTATION: token, MANAGER_ADDR_ANNOTATION: manager_addr}
    if current is None:
        return {
            "apiVersion": API_VERSION,
            "kind": "Lease",
            "metadata": {"name": JOIN_LEASE, "annotations": wanted},
        }
    meta = dict(current.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    if all(annotations.get(k) == v for k, v in wanted.items()):
        return None
    meta["annotations"] = {**annotations, **wanted}
    return {**current, "metadata": meta}


def join_info(lease: Mapping[str, Any] | None) -> JoinInfo | None:
    """The join facts on the join Lease (:data:`JOIN_LEASE`), or None when it has none."""
    annotations = ((lease or {}).get("metadata") or {}).get("annotations") or {}
    token = annotations.get(JOIN_TOKEN_ANNOTATION)
    addr = annotations.get(MANAGER_ADDR_ANNOTATION)
    if not token or not addr:
        return None
    return JoinInfo(token=str(token), manager_addr=str(addr))


def read_join_info(store: Store) -> JoinInfo | None:
    """The Swarm's join facts as published in ``store``, or None when not (yet) published."""
    try:
        return join_info(store.get("Lease", JOIN_LEASE))
    except NotFound:
        return None


# --- the imperative shell -----------------------------------------------------------------


class Deployer:
    """Reconciles one Job's Swarm side (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        engine: Engine,
        settings: DeployerSettings | None = None,
        *,
        name: str = COMPONENT,
    ) -> None:
        """Create a deployer; nothing touches the engine until :meth:`reconcile`.

        Args:
            store: The store.
            engine: The manager's engine.
            settings: Swarm, advertise address and pulling.
            name: The component name on Events and in logs.
        """
        self.store = store
        self.engine = engine
        self.settings = settings or DeployerSettings()
        self.name = name
        self._facts: SwarmFacts | None = None
        self._swarm_lock = threading.Lock()  # workers share one Swarm check at a time

    # -- Swarm -------------------------------------------------------------------------------

    def ensure_swarm(self) -> SwarmFacts:
        """The engine's Swarm facts, after making the Swarm and publishing its join facts.

        Done once, then remembered until an engine error (:meth:`forget_swarm`); workers
        wait for each other here, so the Swarm is initialised once.

        Raises:
            TemporaryError: The engine is unreachable, or is still joining a Swarm.
            PermanentError: The engine cannot serve (a Swarm worker, a locked or failed
                Swarm, no address to advertise).
        """
        with self._swarm_lock:
            if self._facts is None:
                self._facts = self._check_swarm()
            return self._facts

    def _check_swarm(self) -> SwarmFacts:
        facts = self.engine.swarm_facts()
        if self.settings.swarm:
            if facts.state == "inactive":
                self.engine.init_swarm(self.settings.advertise_addr)
                facts = self.engine.swarm_facts()
                log.info(
                    "%s: initialised a Swarm on engine %s (advertising %s)",
                    self.name, facts.hostname, facts.node_addr or "the engine's choice",
                )  # fmt: skip
            if facts.state == "pending":
                raise TemporaryError(f"engine {facts.hostname}: its Swarm membership is pending")
            if not facts.active:
                detail = f": {facts.error}" if facts.error else ""
                raise PermanentError(
                    f"engine {facts.hostname}: its Swarm is {facts.state}{detail}; unlock or "
                    "repair it (docker swarm unlock / leave) or run the deployer with swarm off"
                )
            if not facts.is_manager:
                raise PermanentError(
                    f"engine {facts.hostname} is a Swarm worker; point the deployer's "
                    "docker_host at a manager engine"
                )
            self._publish(facts)
        return facts

    def keep_swarm(self, stop: threading.Event, *, retry_max: float = 30.0) -> None:
        """Make the Swarm and publish its join facts as soon as a term starts, not only when
        a first Job arrives (agents started with ``--join`` wait for them).

        Retried with exponential backoff (at most ``retry_max`` seconds apart) until done or
        ``stop`` is set; a failure is logged as a warning when it first appears (again at
        debug level while it repeats), so an engine that is absent for good does not flood
        the log.
        """
        delay, said = 0.5, ""
        while not stop.is_set():
            try:
                self.ensure_swarm()
                return
            except (TemporaryError, PermanentError) as exc:
                level = logging.DEBUG if str(exc) == said else logging.WARNING
                log.log(level, "%s: the Swarm is not ready: %s; trying again in %.1fs",
                        self.name, exc, delay)  # fmt: skip
                said = str(exc)
            stop.wait(delay)
            delay = min(retry_max, delay * 2)

    def forget_swarm(self) -> None:
        """Read the engine's Swarm facts again at the next reconcile."""
        with self._swarm_lock:
            self._facts = None

    def _publish(self, facts: SwarmFacts) -> None:
        if not facts.manager_addr:
            raise TemporaryError(f"engine {facts.hostname}: reports no manager address yet")
        token = self.engine.worker_join_token()
        try:
            current: Object | None = self.store.get("Lease", JOIN_LEASE)
        except NotFound:
            current = None
        lease = join_lease(current, token, facts.manager_addr)
        if lease is None:
            return
        try:
            if current is None:
                self.store.create(lease)
            else:
                self.store.update(lease)
        except (AlreadyExists, Conflict, NotFound) as exc:
            raise TemporaryError(
                f"Lease {JOIN_LEASE}: changed while the join facts were published "
                f"({type(exc).__name__})"
            ) from exc
        log.info(
            "%s: published the Swarm's worker join facts (manager %s) on Lease %s",
            self.name, facts.manager_addr, JOIN_LEASE,
        )  # fmt: skip

    # -- reconcile ---------------------------------------------------------------------------

    def reconcile(self, key: str) -> None:
        """Make the Swarm side of Job ``key`` exist (see the module docstring).

        Raises:
            TemporaryError: Retry later (engine down, concurrent change).
            PermanentError: A setting the engine refuses; recorded as an Event by the runtime.
        """
        try:
            job = self.store.get("Job", key)
        except NotFound:
            return  # nothing to deploy; removing its network is the pruner's job
        if (job.get("metadata") or {}).get("deletionTimestamp"):
            return
        tasks = self.store.list("Task", field_selector=f"spec.job={key}").items
        nodes = self.store.list("Node").items
        if not needs_engine(job, tasks, nodes):
            return
        try:
            facts = self.ensure_swarm()
            failure = self._ensure_network(job, facts)
            self._ensure_images(job, facts, tasks, nodes)
        except EngineUnavailable:
            self.forget_swarm()
            raise
        if failure is not None:
            raise failure

    def _ensure_network(self, job: Object, facts: SwarmFacts) -> PermanentError | None:
        """Create the job's network if needed; returns a permanent failure to raise later."""
        name = _name(job)
        wanted = wanted_network(job, overlay_possible=facts.active and facts.is_manager)
        decision = decide_network(name, wanted, self.engine.networks(wanted.request.name))
        if decision.action == "use":
            return None
        if decision.action == "conflict":
            log.warning("%s: %s", self.name, decision.message)
            self._event(job, "NetworkConflict", decision.message, "Warning")
            return None
        try:
            network = self.engine.create_network(wanted.request)
        except PermanentError as exc:
            return PermanentError(f"job {name}: spec.network: {exc}")
        message = created_message(network, wanted)
        log.info("%s: job %s: %s", self.name, name, message)
        self._event(job, "NetworkCreated", message, "Normal")
        return None

    def _ensure_images(
        self, job: Object, facts: SwarmFacts, tasks: Sequence[Object], nodes: Sequence[Object]
    ) -> None:
        """Check (and pull) the images of the job's Scheduled tasks bound to this engine.

        ``tasks`` and ``nodes`` are as read at the start of the reconcile.
        """
        name = _name(job)
        if not any((t.get("status") or {}).get("phase") == SCHEDULED for t in tasks):
            return
        here = engine_nodes(nodes, facts)
        for image in images_to_check(tasks, here):
            action = image_action(self.engine.has_image(image), self.settings.pull)
            if action == "none":
                continue
            if action == "missing":
                message = (
                    f"image {image} is not present on the manager's engine "
                    f"({facts.hostname}) and pulling is disabled"
                )
                log.warning("%s: job %s: %s", self.name, name, message)
                self._event(job, "ImageMissing", message, "Warning")
                continue
            try:
                self.engine.pull_image(image)
            except ImagePullFailed as exc:
                message = f"image {image} could not be pulled on engine {facts.hostname}: {exc}"
                log.warning("%s: job %s: %s", self.name, name, message)
                self._event(job, "ImagePullFailed", message, "Warning")
                continue
            log.info("%s: job %s: pulled image %s", self.name, name, image)
            self._event(job, "ImagePulled", f"pulled image {image} on engine {facts.hostname}",
                        "Normal")  # fmt: skip

    def _event(self, obj: Object, reason: str, message: str, type_: str) -> None:
        record_event(self.store, obj, reason, message, component=self.name, type_=type_)


class DeployerController(Controller):
    """The deployer's controller: on Jobs and their Tasks, and (with ``swarm`` on) a thread
    that makes the Swarm at the start of each term (:meth:`Deployer.keep_swarm`)."""

    def __init__(self, deployer: Deployer, settings: ControllerSettings) -> None:
        super().__init__(
            COMPONENT,
            deployer.store,
            "Job",
            deployer.reconcile,
            secondaries=[SecondaryKind("Task", owner_keys("Job"))],
            workers=settings.workers,
            resync=settings.resync,
        )
        self.deployer = deployer

    def run(self, stop: threading.Event) -> None:
        """Run the Swarm keeper and the controller until ``stop`` is set."""
        keeper = None
        if self.deployer.settings.swarm:
            keeper = threading.Thread(
                target=self.deployer.keep_swarm, args=(stop,), name=f"{self.name}-swarm",
                daemon=True,
            )  # fmt: skip
            keeper.start()
        try:
            super().run(stop)
        finally:
            if keeper is not None:
                keeper.join(5.0)


def build(store: Store, settings: ControllerSettings) -> Controller:
    """The deployer as ``swarmapply controllers`` runs it (see :class:`DeployerController`)."""
    engine = DockerEngine(settings.deployer.docker_host)
    return DeployerController(Deployer(store, engine, settings.deployer), settings)


__all__ = [
    "COMPONENT",
    "JOIN_LEASE",
    "JOIN_TOKEN_ANNOTATION",
    "MANAGER_ADDR_ANNOTATION",
    "Deployer",
    "DeployerController",
    "JoinInfo",
    "NetworkDecision",
    "NetworkWanted",
    "build",
    "created_message",
    "decide_network",
    "engine_nodes",
    "image_action",
    "images_to_check",
    "join_info",
    "join_lease",
    "network_labels",
    "network_problems",
    "read_join_info",
    "wanted_network",
]
