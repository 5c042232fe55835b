"""The docker driver against a real Docker Engine (and its pure helpers without one).

Each test runs its containers under a node name of its own, so ``containers()`` and
``events()`` see only that test's containers; every container and network a test makes is
removed by the fixtures, also when the test fails.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from swarmapply.agent.docker_driver import (
    DockerDriver,
    canonical_cpuset,
    container_name,
    observed_from_inspect,
    rfc3339_seconds,
)
from swarmapply.agent.driver import Driver, EngineUnavailable, NetworkNotReady, TaskRefused
from swarmapply.agent.model import NODE_NAME, ContainerSpec, Observed

MI = 1024 * 1024
DEADLINE = 15.0


def suffix() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def node_name() -> str:
    return f"test-node-{suffix()}"


@pytest.fixture
def networks(docker_client: Any) -> Iterator[list[str]]:
    """Names of networks the test made; removed after its containers."""
    names: list[str] = []
    yield names
    for name in names:
        docker_client.api.remove_network(name)


@pytest.fixture
def driver(
    docker_client: Any, test_image: str, node_name: str, networks: list[str]
) -> Iterator[DockerDriver]:
    """A driver for a node of the test's own, not pulling; its containers removed after."""
    yield DockerDriver(docker_client, name=node_name, pull=False)
    for entry in docker_client.api.containers(
        all=True, filters={"label": f"{NODE_NAME}={node_name}"}
    ):
        docker_client.api.remove_container(entry["Id"], force=True, v=True)


@pytest.fixture
def network(docker_client: Any, networks: list[str]) -> str:
    """A user-defined bridge network, removed after the test."""
    name = f"swarmapply-test-net-{suffix()}"
    docker_client.networks.create(name, driver="bridge")
    networks.append(name)
    return name


@pytest.fixture
def make_spec(driver: DockerDriver, test_image: str) -> Callable[..., ContainerSpec]:
    def make(command: str | None = "sleep 30", **overrides: Any) -> ContainerSpec:
        tag = suffix()
        fields: dict[str, Any] = {
            "task": f"job-{tag}-t",
            "task_uid": str(uuid.uuid4()),
            "job": f"job-{tag}",
            "node": driver.name,
            "alias": "t",
            "image": test_image,
            "command": ("sh", "-c", command) if command is not None else None,
            "cpuset": "0",
            "memory": 32 * MI,
        }
        fields.update(overrides)
        return ContainerSpec(**fields)

    return make


@pytest.fixture
def make_spec_offline() -> ContainerSpec:
    return ContainerSpec("t-0", str(uuid.uuid4()), "j", "n", "t", "img", None, "0", 8 * MI)


def wait_for(driver: DockerDriver, uid: str, done: Callable[[Observed], bool]) -> Observed:
    """Poll ``containers()`` until the container of ``uid`` satisfies ``done``."""
    deadline = time.monotonic() + DEADLINE
    last: Observed | None = None
    while time.monotonic() < deadline:
        for observed in driver.containers():
            if observed.task_uid == uid:
                last = observed
                if done(observed):
                    return observed
        time.sleep(0.05)
    raise AssertionError(f"container of task uid {uid} never got there; last seen: {last}")


# --- pure helpers ----------------------------------------------------------------------------


def test_rfc3339_seconds_truncates_and_maps_never_to_none() -> None:
    assert rfc3339_seconds("2024-05-01T10:11:12.987654321Z") == "2024-05-01T10:11:12Z"
    assert rfc3339_seconds("2024-05-01T12:11:12+02:00") == "2024-05-01T10:11:12Z"
    assert rfc3339_seconds("0001-01-01T00:00:00Z") is None
    assert rfc3339_seconds("") is None
    with pytest.raises(ValueError, match="RFC 3339"):
        rfc3339_seconds("yesterday")


def test_canonical_cpuset_and_container_name() -> None:
    assert canonical_cpuset("3,0-1,2") == "0-3"
    assert canonical_cpuset("") == ""
    spec = ContainerSpec("web-0", "0123456789abcdef", "j", "n", "web", "img", None, "0", MI)
    assert container_name(spec) == "web-0-01234567"


def test_observed_from_inspect_reads_exit_details() -> None:
    attrs = {
        "Id": "abc",
        "Config": {"Labels": {"swarmapply.io/task-uid": "u1", "swarmapply.io/task-object": "t"}},
        "HostConfig": {"CpusetCpus": "1,0", "Memory": 8 * MI},
        "State": {
            "Status": "removing",
            "ExitCode": 137,
            "OOMKilled": True,
            "Error": "",
            "StartedAt": "2024-05-01T10:11:12.5Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
        },
    }
    observed = observed_from_inspect(attrs)
    assert (observed.task, observed.task_uid, observed.state) == ("t", "u1", "dead")
    assert (observed.cpuset, observed.memory, observed.exit_code) == ("0-1", 8 * MI, 137)
    assert observed.oom_killed and observed.error is None
    assert (observed.started_at, observed.finished_at) == ("2024-05-01T10:11:12Z", None)


# --- against the engine ---------------------------------------------------------------------


@pytest.mark.docker
def test_driver_satisfies_the_protocol_and_reports_the_node(
    driver: DockerDriver, docker_client: Any
) -> None:
    assert isinstance(driver, Driver)
    facts = docker_client.info()
    info = DockerDriver(docker_client, reserved_cores=frozenset({0})).info()
    assert info.name == facts["Name"]
    assert info.memory == facts["MemTotal"] > 0
    assert info.engine_version == facts["ServerVersion"]
    assert 0 not in info.core_ids
    assert set(info.core_ids) <= set(range(1, facts["NCPU"]))
    assert info.core_ids == tuple(sorted(info.core_ids))
    assert len(info.core_ids) >= 1 or facts["NCPU"] == 1
    if facts["Swarm"].get("LocalNodeState") == "active":
        assert info.swarm_node_id == facts["Swarm"]["NodeID"]
        assert info.role in ("manager", "worker")
    else:
        assert info.swarm_node_id is None and info.role is None
    assert driver.info().name == driver.name  # a given name wins over the engine's


@pytest.mark.docker
def test_start_pins_limits_labels_name_and_alias(
    driver: DockerDriver,
    docker_client: Any,
    network: str,
    make_spec: Callable[..., ContainerSpec],
) -> None:
    server = make_spec(network=network, alias="server")
    observed = driver.start(server)
    assert observed.state == "running" and observed.task_uid == server.task_uid
    assert (observed.cpuset, observed.memory) == ("0", 32 * MI)

    attrs = docker_client.api.inspect_container(observed.container_id)
    assert attrs["Name"] == f"/{server.task}-{server.task_uid[:8]}"
    assert attrs["HostConfig"]["CpusetCpus"] == "0"
    assert attrs["HostConfig"]["Memory"] == 32 * MI
    assert attrs["HostConfig"]["MemorySwap"] == 32 * MI
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] in ("", "no")
    assert attrs["Config"]["Labels"] == server.labels
    assert "server" in attrs["NetworkSettings"]["Networks"][network]["Aliases"]

    client = make_spec("nslookup server && ping -c1 -W5 server", network=network, alias="client")
    reached = wait_for(driver, driver.start(client).task_uid, lambda o: o.state == "exited")
    assert reached.exit_code == 0, docker_client.api.logs(reached.container_id)


@pytest.mark.docker
def test_start_is_idempotent_per_task_uid(
    driver: DockerDriver, docker_client: Any, make_spec: Callable[..., ContainerSpec]
) -> None:
    spec = make_spec()
    first = driver.start(spec)
    again = driver.start(spec)
    assert again.container_id == first.container_id
    found = docker_client.api.containers(
        all=True, filters={"label": f"swarmapply.io/task-uid={spec.task_uid}"}
    )
    assert len(found) == 1

    # A container created (say, before an agent crash) but never started is started.
    pending = make_spec()
    created = docker_client.containers.create(
        pending.image, list(pending.command or ()), labels=pending.labels, name="x-" + suffix()
    )
    observed = driver.start(pending)
    assert (observed.container_id, observed.state) == (created.id, "running")


@pytest.mark.docker
def test_exit_code_reaches_observed(
    driver: DockerDriver, make_spec: Callable[..., ContainerSpec]
) -> None:
    spec = make_spec("exit 3")
    driver.start(spec)
    observed = wait_for(driver, spec.task_uid, lambda o: o.state == "exited")
    assert observed.exit_code == 3 and not observed.oom_killed
    assert observed.started_at is not None and observed.finished_at is not None
    assert observed.started_at.endswith("Z") and observed.finished_at >= observed.started_at
    # Served from the finished-container cache the second time: still the same answer.
    assert [o for o in driver.containers() if o.task_uid == spec.task_uid] == [observed]


@pytest.mark.docker
def test_memory_hog_is_oom_killed(
    driver: DockerDriver, make_spec: Callable[..., ContainerSpec]
) -> None:
    spec = make_spec("""x=$(head -c 64m /dev/zero | tr "\\0" a)""", memory=8 * MI)
    driver.start(spec)
    observed = wait_for(driver, spec.task_uid, lambda o: o.state == "exited")
    assert observed.oom_killed and observed.exit_code == 137


@pytest.mark.docker
def test_update_changes_cores_and_memory_in_place(
    driver: DockerDriver, docker_client: Any, make_spec: Callable[..., ContainerSpec]
) -> None:
    observed = driver.start(make_spec())
    cores = docker_client.info()["NCPU"]
    target = "0-1" if cores > 1 else "0"
    driver.update(observed.container_id, target, 64 * MI)
    host = docker_client.api.inspect_container(observed.container_id)["HostConfig"]
    assert (host["CpusetCpus"], host["Memory"], host["MemorySwap"]) == (target, 64 * MI, 64 * MI)
    (now,) = [o for o in driver.containers() if o.container_id == observed.container_id]
    assert (now.cpuset, now.memory, now.state) == (target, 64 * MI, "running")


@pytest.mark.docker
def test_update_below_usage_is_refused(
    driver: DockerDriver, docker_client: Any, make_spec: Callable[..., ContainerSpec]
) -> None:
    # 24 MiB in a tmpfs is charged to the container and cannot be reclaimed without swap.
    spec = make_spec()
    hog = docker_client.containers.run(
        spec.image,
        ["sh", "-c", "head -c 24m /dev/zero > /t/x && touch /t/done && sleep 30"],
        labels=spec.labels,
        tmpfs={"/t": ""},
        mem_limit=64 * MI,
        memswap_limit=64 * MI,
        detach=True,
    )
    deadline = time.monotonic() + DEADLINE
    while hog.exec_run(["ls", "/t/done"]).exit_code != 0:
        assert time.monotonic() < deadline, "the hog never filled its tmpfs"
        time.sleep(0.05)
    with pytest.raises(TaskRefused) as refused:
        driver.update(hog.id, "0", 8 * MI)
    assert refused.value.reason == "MemoryBelowUsage", refused.value
    assert docker_client.api.inspect_container(hog.id)["HostConfig"]["Memory"] == 64 * MI


@pytest.mark.docker
def test_remove_is_idempotent(
    driver: DockerDriver, docker_client: Any, make_spec: Callable[..., ContainerSpec]
) -> None:
    import docker.errors

    spec = make_spec('trap "exit 0" TERM; while true; do sleep 0.1; done')
    observed = driver.start(spec)
    driver.remove(observed.container_id)
    with pytest.raises(docker.errors.NotFound):
        docker_client.api.inspect_container(observed.container_id)
    driver.remove(observed.container_id)
    assert all(o.task_uid != spec.task_uid for o in driver.containers())


@pytest.mark.docker
def test_missing_image_and_failed_pull_are_refused(
    driver: DockerDriver,
    docker_client: Any,
    node_name: str,
    make_spec: Callable[..., ContainerSpec],
) -> None:
    spec = make_spec(image=f"swarmapply-test/absent-{suffix()}:1")
    with pytest.raises(TaskRefused) as missing:
        driver.start(spec)
    assert missing.value.reason == "ImageMissing" and spec.image in str(missing.value)

    # Nothing listens on port 1, so the engine's pull fails at once.
    pulling = DockerDriver(docker_client, name=node_name, pull=True)
    unreachable = make_spec(image=f"127.0.0.1:1/absent-{suffix()}:1")
    with pytest.raises(TaskRefused) as failed:
        pulling.start(unreachable)
    assert failed.value.reason == "ImagePullFailed" and unreachable.image in str(failed.value)
    assert driver.containers() == []


@pytest.mark.docker
def test_a_container_that_cannot_start_is_refused_not_an_engine_outage(
    driver: DockerDriver, make_spec: Callable[..., ContainerSpec]
) -> None:
    spec = make_spec(command=None)
    spec = dataclasses.replace(spec, command=("/no/such/program",))
    with pytest.raises(TaskRefused) as refused:
        driver.start(spec)
    assert refused.value.reason == "StartError"
    assert "/no/such/program" in str(refused.value) and "exit code 127" in str(refused.value)
    [seen] = [o for o in driver.containers() if o.task_uid == spec.task_uid]
    assert seen.state == "created" and seen.error is not None
    with pytest.raises(TaskRefused):  # the same answer when asked again, no second container
        driver.start(spec)
    assert len([o for o in driver.containers() if o.task_uid == spec.task_uid]) == 1


@pytest.mark.docker
def test_missing_network_is_not_ready(
    driver: DockerDriver, make_spec: Callable[..., ContainerSpec]
) -> None:
    spec = make_spec(network=f"swarmapply-test-absent-{suffix()}")
    with pytest.raises(NetworkNotReady, match=spec.network or "?"):
        driver.start(spec)
    assert all(o.state != "running" for o in driver.containers())


@pytest.mark.docker
def test_events_report_exits_and_end_after_stop(
    driver: DockerDriver, make_spec: Callable[..., ContainerSpec]
) -> None:
    stop = threading.Event()
    uids: list[str] = []
    failures: list[BaseException] = []

    def consume() -> None:
        try:
            uids.extend(driver.events(stop))
        except BaseException as exc:  # reported by the assertions below
            failures.append(exc)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    time.sleep(0.2)  # let the first window open
    spec = make_spec("exit 0")
    driver.start(spec)
    wait_for(driver, spec.task_uid, lambda o: o.state == "exited")
    deadline = time.monotonic() + DEADLINE
    while uids.count(spec.task_uid) < 2 and time.monotonic() < deadline:  # start and die
        time.sleep(0.05)
    assert uids.count(spec.task_uid) >= 2 and not failures, (uids, failures)

    stopped_at = time.monotonic()
    stop.set()
    reader.join(timeout=3)
    assert not reader.is_alive() and time.monotonic() - stopped_at < 2.5
    assert not failures


def test_unreachable_engine_is_unavailable(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, make_spec_offline: ContainerSpec
) -> None:
    import docker

    absent = f"unix://{tmp_path}/absent.sock"
    driver = DockerDriver(docker.DockerClient(base_url=absent, version="1.41"), name="n")
    for call in (driver.info, driver.containers, lambda: driver.start(make_spec_offline)):
        with pytest.raises(EngineUnavailable, match="cannot reach the Docker Engine") as down:
            call()
        assert down.value.__cause__ is not None
    monkeypatch.setenv("DOCKER_HOST", absent)
    lazy = DockerDriver()  # no engine needed to construct it
    with pytest.raises(EngineUnavailable):
        lazy.info()
