"""The deployer's decisions, and its reconcile against a fake engine and a SQLite store.

The fake implements the deployer's own :class:`~swarmapply.controllers.swarm.Engine` Protocol
and records every call, so these tests say exactly what the deployer asks of the engine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from swarmapply.api.admission import validate_object
from swarmapply.api.store import Store, open_store
from swarmapply.controllers.deployer import (
    JOIN_LEASE,
    JOIN_TOKEN_ANNOTATION,
    MANAGER_ADDR_ANNOTATION,
    Deployer,
    JoinInfo,
    NetworkWanted,
    build,
    created_message,
    decide_network,
    engine_nodes,
    image_action,
    images_to_check,
    join_info,
    join_lease,
    needs_engine,
    read_join_info,
    wanted_network,
)
from swarmapply.controllers.runtime import Controller
from swarmapply.controllers.settings import ControllerSettings, DeployerSettings
from swarmapply.controllers.swarm import (
    EngineRefused,
    EngineUnavailable,
    ImagePullFailed,
    NetworkInfo,
    NetworkRequest,
    SwarmFacts,
    join_address,
    network_from_listing,
    swarm_facts_from_info,
)
from swarmapply.errors import PermanentError, TemporaryError

Object = dict[str, Any]
API = "swarmapply.io/v1"
LABELS = {"swarmapply.io/managed-by": "swarmapply", "swarmapply.io/job": "web"}
TOKEN = "SWMTKN-1-secret-worker-token"


# --- builders -----------------------------------------------------------------------------


def job(name: str = "web", network: Object | None = None) -> Object:
    spec: Object = {"tasks": [{"name": "a", "image": "busybox", "cores": 1, "memory": 1 << 26}]}
    if network is not None:
        spec["network"] = network
    obj = {"apiVersion": API, "kind": "Job", "metadata": {"name": name}, "spec": spec}
    assert not validate_object(obj)
    return obj


def task(
    name: str, image: str, phase: str | None = "Scheduled", node: str | None = "mgr"
) -> Object:
    status: Object = {}
    if phase:
        status["phase"] = phase
    if node:
        status.update(node=node, cpuset="0", memory=1 << 26)
    obj: Object = {
        "apiVersion": API,
        "kind": "Task",
        "metadata": {"name": name},
        "spec": {"job": "web", "image": image, "cores": 1, "memory": 1 << 26},
        "status": status,
    }
    return obj


def network(
    name: str = "web",
    driver: str = "overlay",
    subnets: tuple[str, ...] = ("10.10.0.0/24",),
    attachable: bool = True,
    id_: str = "n1" * 10,
) -> NetworkInfo:
    return NetworkInfo(
        name=name, id=id_, driver=driver, scope="swarm", attachable=attachable, subnets=subnets
    )


MANAGER = SwarmFacts(
    hostname="mgr",
    state="active",
    node_id="node-id-1",
    node_addr="127.0.0.1",
    is_manager=True,
    manager_addr="127.0.0.1:2377",
)


class FakeEngine:
    """The deployer's Engine Protocol in memory, recording calls."""

    def __init__(self, facts: SwarmFacts = MANAGER, images: set[str] | None = None) -> None:
        self.facts = facts
        self.nets: list[NetworkInfo] = []
        self.images = set(images or ())
        self.calls: list[tuple[str, Any]] = []
        self.unreachable = False
        self.refuse_create: str | None = None
        self.pull_fails: str | None = None

    def _call(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, arg))
        if self.unreachable:
            raise EngineUnavailable(f"{name}: cannot reach the Docker Engine")

    def called(self, name: str) -> list[Any]:
        return [arg for call, arg in self.calls if call == name]

    def swarm_facts(self) -> SwarmFacts:
        self._call("swarm_facts")
        return self.facts

    def init_swarm(self, advertise_addr: str | None) -> None:
        self._call("init_swarm", advertise_addr)
        addr = advertise_addr or "192.0.2.1"
        self.facts = replace(
            MANAGER, hostname=self.facts.hostname, node_addr=addr, manager_addr=f"{addr}:2377"
        )

    def worker_join_token(self) -> str:
        self._call("worker_join_token")
        return TOKEN

    def networks(self, name: str) -> list[NetworkInfo]:
        self._call("networks", name)
        return [n for n in self.nets if n.name == name]

    def create_network(self, request: NetworkRequest) -> NetworkInfo:
        self._call("create_network", request)
        if self.refuse_create:
            raise EngineRefused(self.refuse_create)
        subnets = (request.subnet,) if request.subnet else ("10.0.9.0/24",)
        made = NetworkInfo(
            name=request.name,
            id=f"id-{request.name}",
            driver=request.driver,
            attachable=request.attachable,
            subnets=subnets,
            labels=dict(request.labels),
        )
        self.nets.append(made)
        return made

    def has_image(self, reference: str) -> bool:
        self._call("has_image", reference)
        return reference in self.images

    def pull_image(self, reference: str) -> None:
        self._call("pull_image", reference)
        if self.pull_fails:
            raise ImagePullFailed(f"pulling image {reference!r}: {self.pull_fails}")
        self.images.add(reference)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path}/state.db")
    yield opened
    opened.close()


def add_node(store: Store, name: str, swarm_id: str | None = None) -> None:
    created = store.create({"apiVersion": API, "kind": "Node", "metadata": {"name": name}})
    if swarm_id:
        store.update_status({**created, "status": {"swarmNodeID": swarm_id}})


def add_task(store: Store, obj: Object) -> None:
    status = obj.pop("status")
    created = store.create(obj)
    if status:
        store.update_status({**created, "status": status})


def events(store: Store, reason: str | None = None) -> list[Object]:
    items = store.list("Event").items
    return [e for e in items if reason is None or e["reason"] == reason]


# --- wanted network -----------------------------------------------------------------------


def test_wanted_network_defaults_to_an_attachable_overlay_named_after_the_job() -> None:
    wanted = wanted_network(job("web"), overlay_possible=True)
    assert wanted.request == NetworkRequest("web", "overlay", None, True, LABELS)
    assert wanted.asked_driver == "overlay"
    assert wanted.note == ""


def test_wanted_network_takes_name_driver_and_subnet_from_the_manifest() -> None:
    spec = {"name": "shared", "driver": "overlay", "subnet": "10.10.0.0/24"}
    wanted = wanted_network(job("web", spec), overlay_possible=True)
    assert (wanted.request.name, wanted.request.driver) == ("shared", "overlay")
    assert wanted.request.subnet == "10.10.0.0/24"
    assert wanted.request.labels == LABELS  # labelled with the job, whatever the name


def test_overlay_falls_back_to_bridge_without_a_swarm_and_says_so() -> None:
    wanted = wanted_network(job("web", {"driver": "overlay"}), overlay_possible=False)
    assert wanted.request.driver == "bridge"
    assert wanted.asked_driver == "overlay"
    assert "not a Swarm manager" in wanted.note


def test_other_drivers_are_used_as_asked_without_a_swarm() -> None:
    wanted = wanted_network(job("web", {"driver": "macvlan"}), overlay_possible=False)
    assert wanted.request.driver == "macvlan"
    assert wanted.note == ""


# --- network decision ---------------------------------------------------------------------


def _want(subnet: str | None = "10.10.0.0/24", overlay: bool = True) -> NetworkWanted:
    spec = {"subnet": subnet} if subnet else {}
    return wanted_network(job("web", spec), overlay_possible=overlay)


def test_a_missing_network_is_created() -> None:
    decision = decide_network("web", _want(), [])
    assert decision.action == "create"
    assert decision.existing is None


def test_an_existing_network_that_fits_is_used_whoever_made_it() -> None:
    present = [network(subnets=("10.10.0.0/24", "fd00::/64"))]
    decision = decide_network("web", _want("10.10.0.0/24"), present)
    assert decision.action == "use"
    assert decision.existing == present[0]
    # no subnet asked: any subnet fits
    assert decide_network("web", _want(None), [network(subnets=("10.0.5.0/24",))]).action == "use"


def test_subnets_are_compared_as_networks_not_text() -> None:
    present = [network(subnets=("10.10.0.0/24",))]
    assert decide_network("web", _want("10.10.0.5/24"), present).action == "use"


def test_a_different_driver_is_a_conflict_naming_the_field() -> None:
    decision = decide_network("web", _want(), [network(driver="bridge")])
    assert decision.action == "conflict"
    assert "spec.network.driver is overlay but the network's is bridge" in decision.message
    assert decision.message.startswith("job web: network web exists but does not fit")
    assert "left as it is" in decision.message


def test_a_different_subnet_is_a_conflict_naming_both() -> None:
    decision = decide_network("web", _want("10.10.0.0/24"), [network(subnets=("10.20.0.0/24",))])
    assert decision.action == "conflict"
    assert (
        "spec.network.subnet is 10.10.0.0/24 but the network's subnets are 10.20.0.0/24"
        in decision.message
    )


def test_a_non_attachable_overlay_is_a_conflict() -> None:
    decision = decide_network("web", _want(), [network(attachable=False)])
    assert decision.action == "conflict"
    assert "not attachable" in decision.message


def test_several_networks_of_one_name_are_a_conflict() -> None:
    present = [network(id_="a" * 20), network(id_="b" * 20)]
    decision = decide_network("web", _want(), present)
    assert decision.action == "conflict"
    assert "2 networks are named web" in decision.message
    assert "aaaaaaaaaaaa, bbbbbbbbbbbb" in decision.message


def test_with_the_bridge_fallback_an_existing_overlay_or_bridge_fits() -> None:
    fallback = _want(None, overlay=False)
    assert decide_network("web", fallback, [network(driver="bridge")]).action == "use"
    assert decide_network("web", fallback, [network(driver="overlay")]).action == "use"
    conflict = decide_network("web", fallback, [network(driver="macvlan")])
    assert "overlay (falling back to bridge)" in conflict.message


def test_created_message_names_driver_subnet_and_fallback() -> None:
    made = network(driver="bridge", subnets=("172.30.0.0/16",))
    message = created_message(made, _want(None, overlay=False))
    assert message.startswith(
        "created network web (driver bridge, subnet 172.30.0.0/16, attachable"
    )
    assert "instead of overlay" in message


# --- images -------------------------------------------------------------------------------


def test_engine_nodes_match_by_swarm_id_or_host_name() -> None:
    nodes = [
        {"metadata": {"name": "mgr"}},  # the engine's host name, no Swarm id
        {"metadata": {"name": "agent-x"}, "status": {"swarmNodeID": "node-id-1"}},
        {"metadata": {"name": "other"}, "status": {"swarmNodeID": "node-id-2"}},
        {"metadata": {"name": "sim-0"}},
    ]
    assert engine_nodes(nodes, MANAGER) == {"mgr", "agent-x"}
    # a Node named like the host but in the Swarm as another node is another engine
    clash = [{"metadata": {"name": "mgr"}, "status": {"swarmNodeID": "node-id-2"}}]
    assert engine_nodes(clash, MANAGER) == set()
    assert engine_nodes(clash, SwarmFacts(hostname="mgr")) == {"mgr"}


def test_images_to_check_are_those_of_scheduled_tasks_bound_here_once_each() -> None:
    tasks = [
        task("a", "img:1"),
        task("b", "img:1"),
        task("c", "other:2"),
        task("d", "running:1", phase="Running"),
        task("e", "pending:1", phase="Pending", node=None),
        task("f", "elsewhere:1", node="node-b"),
    ]
    deleting = task("g", "deleting:1")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert images_to_check([*tasks, deleting], {"mgr"}) == ["img:1", "other:2"]


def _node(name: str, driver: str) -> Object:
    return {"metadata": {"name": name}, "status": {"driver": driver}}


def test_jobs_on_hollow_nodes_only_or_finished_need_no_engine() -> None:
    job: Object = {"metadata": {"name": "web"}, "status": {"phase": "Running"}}
    nodes = [_node("sim-0", "sim"), _node("mgr", "docker")]
    on_sim = task("a", "img:1", node="sim-0")
    on_mgr = task("b", "img:1", node="mgr")
    unbound = task("c", "img:1", phase="Pending", node=None)
    assert not needs_engine(job, [on_sim], nodes)
    assert needs_engine(job, [on_sim, on_mgr], nodes)
    assert needs_engine(job, [task("d", "img:1", node="unknown")], nodes)
    assert needs_engine(job, [unbound], nodes), "a docker node may get it"
    assert not needs_engine(job, [unbound], nodes[:1]), "only hollow nodes exist"
    assert needs_engine(job, [unbound], []), "nothing registered yet: assume real"
    finished = {**job, "status": {"phase": "Succeeded"}}
    assert not needs_engine(finished, [on_mgr], nodes)


@pytest.mark.parametrize(
    ("present", "pull", "action"),
    [(True, True, "none"), (True, False, "none"), (False, True, "pull"), (False, False, "missing")],
)
def test_image_action(present: bool, pull: bool, action: str) -> None:
    assert image_action(present, pull) == action


# --- join facts ---------------------------------------------------------------------------


def test_join_lease_is_created_then_left_alone_then_updated_in_place() -> None:
    created = join_lease(None, TOKEN, "127.0.0.1:2377")
    assert created is not None
    assert created["metadata"] == {
        "name": JOIN_LEASE,
        "annotations": {JOIN_TOKEN_ANNOTATION: TOKEN, MANAGER_ADDR_ANNOTATION: "127.0.0.1:2377"},
    }
    assert not validate_object(created)
    stored = {**created, "metadata": {**created["metadata"], "resourceVersion": "7"}}
    assert join_lease(stored, TOKEN, "127.0.0.1:2377") is None
    stored["metadata"]["annotations"]["note"] = "kept"
    rotated = join_lease(stored, "SWMTKN-1-new", "127.0.0.1:2377")
    assert rotated is not None
    assert rotated["metadata"]["resourceVersion"] == "7"  # compare-and-swap
    assert rotated["metadata"]["annotations"][JOIN_TOKEN_ANNOTATION] == "SWMTKN-1-new"
    assert rotated["metadata"]["annotations"]["note"] == "kept"


def test_join_info_reads_the_lease() -> None:
    assert join_info(None) is None
    assert join_info({"metadata": {"name": JOIN_LEASE}}) is None
    lease = join_lease(None, TOKEN, "10.0.0.1:2377")
    assert join_info(lease) == JoinInfo(TOKEN, "10.0.0.1:2377")


# --- engine answers -----------------------------------------------------------------------


def test_swarm_facts_from_info() -> None:
    info = {
        "Name": "mgr",
        "Swarm": {
            "NodeID": "abc",
            "NodeAddr": "10.0.0.5",
            "LocalNodeState": "active",
            "ControlAvailable": True,
            "RemoteManagers": [{"NodeID": "zzz", "Addr": "10.0.0.9:2377"},
                               {"NodeID": "abc", "Addr": "10.0.0.5:2377"}],
        },
    }  # fmt: skip
    facts = swarm_facts_from_info(info)
    assert facts == SwarmFacts("mgr", "active", "abc", "10.0.0.5", True, "10.0.0.5:2377")
    assert facts.active
    idle = swarm_facts_from_info({"Name": "h", "Swarm": {"LocalNodeState": "inactive"}})
    assert (idle.active, idle.node_id, idle.manager_addr) == (False, None, None)
    worker = swarm_facts_from_info(
        {"Name": "w", "Swarm": {"NodeID": "w1", "NodeAddr": "10.0.0.6", "LocalNodeState": "active"}}
    )
    assert worker.active and not worker.is_manager and worker.manager_addr is None


def test_join_address_brackets_ipv6() -> None:
    assert join_address("fd00::1", 2377) == "[fd00::1]:2377"
    assert join_address("10.0.0.1", 2377) == "10.0.0.1:2377"
    assert join_address("mgr.example", 2377) == "mgr.example:2377"


def test_network_from_listing() -> None:
    entry = {
        "Name": "web",
        "Id": "abc",
        "Driver": "overlay",
        "Scope": "swarm",
        "Attachable": True,
        "IPAM": {"Config": [{"Subnet": "10.10.0.0/24", "Gateway": "10.10.0.1"}]},
        "Labels": LABELS,
    }
    assert network_from_listing(entry) == NetworkInfo(
        "web", "abc", "overlay", "swarm", True, ("10.10.0.0/24",), LABELS
    )
    assert network_from_listing({"Name": "x", "IPAM": None}).subnets == ()


# --- the deployer against the fake engine -------------------------------------------------


def test_an_engine_in_no_swarm_is_initialised_and_its_join_facts_published(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    engine = FakeEngine(SwarmFacts(hostname="mgr"))
    deployer = Deployer(store, engine, DeployerSettings(advertise_addr="127.0.0.1"))
    store.create(job())
    with caplog.at_level(logging.DEBUG):
        deployer.reconcile("web")
        deployer.reconcile("web")
    assert engine.called("init_swarm") == ["127.0.0.1"]
    assert len(engine.called("swarm_facts")) == 2  # before and after init, then remembered
    assert read_join_info(store) == JoinInfo(TOKEN, "127.0.0.1:2377")
    assert TOKEN not in caplog.text
    assert "published the Swarm's worker join facts" in caplog.text
    assert all(TOKEN not in e["message"] for e in events(store))


def test_the_swarm_is_made_and_published_without_waiting_for_a_job(store: Store) -> None:
    engine = FakeEngine(SwarmFacts(hostname="mgr"))
    engine.unreachable = True
    deployer = Deployer(store, engine, DeployerSettings(advertise_addr="127.0.0.1"))
    stop = threading.Event()
    keeper = threading.Thread(target=deployer.keep_swarm, args=(stop,), kwargs={"retry_max": 0.05})
    keeper.start()
    try:
        time.sleep(0.2)
        assert read_join_info(store) is None  # the engine does not answer yet: retried
        engine.unreachable = False
        keeper.join(5)
        assert not keeper.is_alive(), "done once the Swarm is published"
    finally:
        stop.set()
        keeper.join(5)
    assert engine.called("init_swarm") == ["127.0.0.1"]
    assert read_join_info(store) == JoinInfo(TOKEN, "127.0.0.1:2377")
    assert store.list("Job").items == []


def test_a_published_lease_is_not_rewritten(store: Store) -> None:
    store.create(job())
    Deployer(store, FakeEngine()).reconcile("web")
    version = store.get("Lease", JOIN_LEASE)["metadata"]["resourceVersion"]
    Deployer(store, FakeEngine()).reconcile("web")  # a new term publishes again: no change
    assert store.get("Lease", JOIN_LEASE)["metadata"]["resourceVersion"] == version


def test_a_swarm_worker_engine_is_a_permanent_error(store: Store) -> None:
    store.create(job())
    worker = SwarmFacts(hostname="w", state="active", node_id="w1", node_addr="10.0.0.6")
    with pytest.raises(PermanentError, match="engine w is a Swarm worker"):
        Deployer(store, FakeEngine(worker)).reconcile("web")


def test_a_locked_swarm_is_a_permanent_error_and_pending_a_temporary_one(store: Store) -> None:
    store.create(job())
    locked = SwarmFacts(hostname="m", state="locked", error="swarm is encrypted and locked")
    with pytest.raises(PermanentError, match="its Swarm is locked: swarm is encrypted"):
        Deployer(store, FakeEngine(locked)).reconcile("web")
    with pytest.raises(TemporaryError, match="pending"):
        Deployer(store, FakeEngine(SwarmFacts(hostname="m", state="pending"))).reconcile("web")


def test_with_swarm_off_nothing_is_initialised_and_overlay_falls_back(store: Store) -> None:
    engine = FakeEngine(SwarmFacts(hostname="mgr"))
    store.create(job())
    Deployer(store, engine, DeployerSettings(swarm=False)).reconcile("web")
    assert engine.called("init_swarm") == []
    assert engine.called("worker_join_token") == []
    assert read_join_info(store) is None
    [request] = engine.called("create_network")
    assert (request.name, request.driver, request.attachable) == ("web", "bridge", True)
    [event] = events(store, "NetworkCreated")
    assert "driver bridge instead of overlay" in event["message"]


def test_the_network_is_created_once_with_labels_and_an_event(store: Store) -> None:
    engine = FakeEngine()
    store.create(job("web", {"name": "web-net", "subnet": "10.10.0.0/24"}))
    deployer = Deployer(store, engine)
    deployer.reconcile("web")
    deployer.reconcile("web")
    assert engine.called("create_network") == [
        NetworkRequest("web-net", "overlay", "10.10.0.0/24", True, LABELS)
    ]
    [event] = events(store, "NetworkCreated")
    assert event["type"] == "Normal"
    assert event["count"] == 1
    assert event["involvedObject"]["name"] == "web"
    assert event["message"] == (
        "created network web-net (driver overlay, subnet 10.10.0.0/24, attachable)"
    )


def test_a_conflicting_network_gets_a_warning_and_is_left_alone(store: Store) -> None:
    engine = FakeEngine()
    engine.nets.append(network(driver="bridge"))
    store.create(job())
    Deployer(store, engine).reconcile("web")
    assert engine.called("create_network") == []
    [event] = events(store, "NetworkConflict")
    assert event["type"] == "Warning"
    assert "spec.network.driver is overlay but the network's is bridge" in event["message"]


def test_a_refused_network_is_a_permanent_error_after_the_images_step(store: Store) -> None:
    engine = FakeEngine()
    engine.refuse_create = "Pool overlaps with other one on this address space"
    store.create(job("web", {"subnet": "10.10.0.0/24"}))
    add_node(store, "mgr")
    add_task(store, task("web-a", "img:1"))
    with pytest.raises(PermanentError, match=r"job web: spec\.network: Pool overlaps"):
        Deployer(store, engine).reconcile("web")
    assert engine.called("pull_image") == ["img:1"]  # the images step still ran


def test_a_missing_image_of_a_scheduled_task_here_is_pulled(store: Store) -> None:
    engine = FakeEngine(images={"present:1"})
    store.create(job())
    add_node(store, "mgr")
    add_node(store, "node-b")
    for obj in (
        task("web-a", "present:1"),
        task("web-b", "absent:1"),
        task("web-c", "remote:1", node="node-b"),
    ):
        add_task(store, obj)
    Deployer(store, engine).reconcile("web")
    assert engine.called("has_image") == ["absent:1", "present:1"]
    assert engine.called("pull_image") == ["absent:1"]
    [event] = events(store, "ImagePulled")
    assert event["message"] == "pulled image absent:1 on engine mgr"


def test_a_failed_pull_is_a_warning_event_naming_the_image(store: Store) -> None:
    engine = FakeEngine()
    engine.pull_fails = "no such host"
    store.create(job())
    add_node(store, "mgr")
    add_task(store, task("web-a", "nowhere/img:1"))
    Deployer(store, engine).reconcile("web")  # not raised: the agent fails the task itself
    [event] = events(store, "ImagePullFailed")
    assert event["type"] == "Warning"
    assert "image nowhere/img:1 could not be pulled on engine mgr" in event["message"]
    assert "no such host" in event["message"]


def test_with_pulling_off_a_missing_image_is_a_warning(store: Store) -> None:
    engine = FakeEngine()
    store.create(job())
    add_node(store, "mgr")
    add_task(store, task("web-a", "absent:1"))
    Deployer(store, engine, DeployerSettings(pull=False)).reconcile("web")
    assert engine.called("pull_image") == []
    [event] = events(store, "ImageMissing")
    assert "image absent:1 is not present" in event["message"]
    assert "pulling is disabled" in event["message"]


def test_no_scheduled_task_means_no_image_calls(store: Store) -> None:
    engine = FakeEngine()
    store.create(job())
    add_node(store, "mgr")
    add_task(store, task("web-a", "absent:1", phase="Running"))
    Deployer(store, engine).reconcile("web")
    assert engine.called("has_image") == []


def test_an_unreachable_engine_is_temporary_and_the_swarm_is_checked_again(store: Store) -> None:
    engine = FakeEngine()
    store.create(job())
    deployer = Deployer(store, engine)
    deployer.reconcile("web")
    engine.unreachable = True
    with pytest.raises(TemporaryError, match="cannot reach"):
        deployer.reconcile("web")
    engine.unreachable = False
    before = len(engine.called("swarm_facts"))
    deployer.reconcile("web")
    assert len(engine.called("swarm_facts")) == before + 1


def test_a_job_on_hollow_nodes_never_touches_the_engine(store: Store) -> None:
    engine = FakeEngine()
    engine.unreachable = True  # a cluster of sim agents has no Docker Engine at all
    store.create(job())
    created = store.create({"apiVersion": API, "kind": "Node", "metadata": {"name": "sim-0"}})
    store.update_status({**created, "status": {"driver": "sim"}})
    add_task(store, task("web-a", "busybox", node="sim-0"))
    Deployer(store, engine).reconcile("web")
    assert engine.calls == []


def test_a_missing_job_is_left_alone(store: Store) -> None:
    engine = FakeEngine()
    Deployer(store, engine).reconcile("gone")
    assert engine.calls == []


def test_build_makes_a_controller_on_jobs_with_tasks_as_secondary(store: Store) -> None:
    controller = build(store, ControllerSettings(workers=1, resync=None))
    assert isinstance(controller, Controller)
    assert controller.name == "deployer"
    assert controller.kind == "Job"
    assert sorted(controller.informers) == ["Job", "Task"]
