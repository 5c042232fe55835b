"""Unit tests of joining the Swarm (node-agent/join.py) and the agent's ``--join`` option."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Mapping
from typing import Any

import docker.errors
import pytest
import requests

from swarmapply.agent.join import (
    ALREADY_MEMBER,
    JOIN,
    JOINED,
    MEMBER,
    REFUSE,
    WAIT,
    EngineSwarm,
    decide_join,
    engine_swarm_from_info,
    join_swarm,
    normal_address,
    wait_and_join,
)
from swarmapply.cli.agent import check_options, register
from swarmapply.cli.usage import UsageError
from swarmapply.controllers.deployer import JoinInfo
from swarmapply.errors import PermanentError, TemporaryError

INFO = JoinInfo(token="SWMTKN-1-secret", manager_addr="10.77.0.2:2377")


def docker_info(
    state: str = "inactive", managers: tuple[str, ...] = (), error: str = ""
) -> dict[str, Any]:
    swarm: dict[str, Any] = {"LocalNodeState": state, "NodeID": "", "Error": error}
    if state != "inactive":
        swarm["NodeID"] = "n1"
        swarm["RemoteManagers"] = [{"NodeID": f"m{i}", "Addr": a} for i, a in enumerate(managers)]
    return {"Name": "worker-host", "Swarm": swarm}


class FakeApi:
    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.joins: list[dict[str, Any]] = []
        self.fail: BaseException | None = None

    def join_swarm(self, **kwargs: Any) -> bool:
        self.joins.append(kwargs)
        if self.fail is not None:
            raise self.fail
        self.client.facts = docker_info("active", (kwargs["remote_addrs"][0],))
        return True


class FakeClient:
    """The two docker-py calls join_swarm makes, on an engine kept in memory."""

    def __init__(self, facts: Mapping[str, Any]) -> None:
        self.facts = dict(facts)
        self.api = FakeApi(self)
        self.info_error: BaseException | None = None

    def info(self) -> dict[str, Any]:
        if self.info_error is not None:
            raise self.info_error
        return self.facts


def api_error(status: int, message: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(message, response=response, explanation=message)


# --- pure ---------------------------------------------------------------------------------


def test_engine_swarm_from_info_reads_state_and_managers() -> None:
    engine = engine_swarm_from_info(docker_info("active", ("10.77.0.2:2377", "10.77.0.3")))
    assert engine == EngineSwarm(
        hostname="worker-host",
        state="active",
        node_id="n1",
        managers=("10.77.0.2:2377", "10.77.0.3:2377"),
    )
    assert engine_swarm_from_info({}) == EngineSwarm(hostname="")


def test_normal_address_adds_the_swarm_port() -> None:
    assert normal_address("10.0.0.1") == "10.0.0.1:2377"
    assert normal_address("10.0.0.1:4000") == "10.0.0.1:4000"
    assert normal_address("manager") == "manager:2377"
    assert normal_address("fd00::1") == "[fd00::1]:2377"
    assert normal_address("[fd00::1]") == "[fd00::1]:2377"
    assert normal_address("[fd00::1]:4000") == "[fd00::1]:4000"


def test_decide_waits_while_nothing_is_published() -> None:
    decision = decide_join(EngineSwarm("h"), None)
    assert decision.action == WAIT
    assert "Lease swarm" in decision.message


def test_decide_joins_an_engine_in_no_swarm() -> None:
    decision = decide_join(EngineSwarm("h"), INFO)
    assert decision.action == JOIN
    assert "10.77.0.2:2377" in decision.message


def test_decide_member_when_the_published_manager_is_known_with_or_without_port() -> None:
    engine = EngineSwarm("h", "active", "n1", ("10.77.0.9:2377", "10.77.0.2:2377"))
    assert decide_join(engine, INFO).action == MEMBER
    assert decide_join(engine, JoinInfo("t", "10.77.0.2")).action == MEMBER


def test_decide_refuses_an_engine_in_another_swarm_naming_both() -> None:
    engine = EngineSwarm("h", "active", "n1", ("192.168.1.5:2377",))
    decision = decide_join(engine, INFO)
    assert decision.action == REFUSE
    assert "another Swarm" in decision.message
    assert "192.168.1.5:2377" in decision.message and "10.77.0.2:2377" in decision.message


@pytest.mark.parametrize(
    ("state", "action"),
    [("pending", WAIT), ("locked", REFUSE), ("error", REFUSE)],
)
def test_decide_on_pending_locked_and_failed_swarms(state: str, action: str) -> None:
    decision = decide_join(EngineSwarm("h", state, error="boom"), INFO)
    assert decision.action == action
    assert state in decision.message


def test_decide_waits_when_an_active_engine_knows_no_manager_yet() -> None:
    assert decide_join(EngineSwarm("h", "active", "n1", ()), INFO).action == WAIT


def test_the_token_never_appears_in_a_message() -> None:
    engines = [
        EngineSwarm("h"),
        EngineSwarm("h", "pending"),
        EngineSwarm("h", "locked"),
        EngineSwarm("h", "active", "n1", ("10.77.0.2:2377",)),
        EngineSwarm("h", "active", "n1", ("10.1.1.1:2377",)),
    ]
    for engine in engines:
        assert INFO.token not in decide_join(engine, INFO).message


# --- the docker-py shell ------------------------------------------------------------------


def test_join_swarm_joins_with_the_published_facts() -> None:
    client = FakeClient(docker_info())
    assert join_swarm(client, INFO, advertise_addr="10.77.0.3") == JOINED
    assert client.api.joins == [
        {
            "remote_addrs": ["10.77.0.2:2377"],
            "join_token": INFO.token,
            "listen_addr": "0.0.0.0:2377",
            "advertise_addr": "10.77.0.3",
        }
    ]
    assert join_swarm(client, INFO) == ALREADY_MEMBER
    assert len(client.api.joins) == 1


def test_join_swarm_without_published_facts_is_temporary() -> None:
    client = FakeClient(docker_info())
    with pytest.raises(TemporaryError, match="not published yet"):
        join_swarm(client, None)
    assert client.api.joins == []


def test_join_swarm_in_another_swarm_is_permanent_and_joins_nothing() -> None:
    client = FakeClient(docker_info("active", ("192.168.1.5:2377",)))
    with pytest.raises(PermanentError, match="another Swarm"):
        join_swarm(client, INFO)
    assert client.api.joins == []


def test_join_swarm_maps_engine_failures() -> None:
    client = FakeClient(docker_info())
    client.api.fail = api_error(503, "Timeout was reached before node joined")
    with pytest.raises(TemporaryError, match="Timeout was reached") as temporary:
        join_swarm(client, INFO)
    assert isinstance(temporary.value.__cause__, docker.errors.APIError)

    client.api.fail = api_error(400, "invalid join token")
    with pytest.raises(PermanentError, match="refused: invalid join token"):
        join_swarm(client, INFO)

    client.info_error = requests.exceptions.ConnectionError("connection refused")
    with pytest.raises(TemporaryError, match="cannot reach the Docker Engine"):
        join_swarm(client, INFO)


def test_wait_and_join_retries_until_the_facts_are_published(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeClient(docker_info())
    published: list[JoinInfo | None] = [None, None, INFO]
    delays: list[int] = []

    def read() -> JoinInfo | None:
        return published.pop(0)

    def backoff(failures: int) -> float:
        delays.append(failures)
        return 0.0

    caplog.set_level("INFO", logger="swarmapply.agent.join")
    outcome = wait_and_join(lambda: client, read, threading.Event(), backoff=backoff)
    assert outcome == JOINED
    assert delays == [1, 2]
    waits = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert len(waits) == 2 and "not published yet" in waits[0]


def test_wait_and_join_retries_a_failed_connection() -> None:
    client = FakeClient(docker_info("active", ("10.77.0.2:2377",)))
    attempts: list[int] = []

    def connect() -> FakeClient:
        attempts.append(1)
        if len(attempts) < 3:
            raise TemporaryError("connecting: cannot reach the Docker Engine")
        return client

    outcome = wait_and_join(connect, lambda: INFO, threading.Event(), backoff=lambda n: 0.0)
    assert outcome == ALREADY_MEMBER
    assert len(attempts) == 3


def test_wait_and_join_stops_when_told_and_raises_permanent_errors() -> None:
    stop = threading.Event()

    def read() -> JoinInfo | None:
        stop.set()
        return None

    client = FakeClient(docker_info())
    assert wait_and_join(lambda: client, read, stop, backoff=lambda n: 60.0) is None

    other = FakeClient(docker_info("active", ("192.168.1.5:2377",)))
    with pytest.raises(PermanentError):
        wait_and_join(lambda: other, lambda: INFO, threading.Event())


# --- the option -----------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["agent", *argv])


def test_join_option_docker_only() -> None:
    assert check_options(parse("--join")).join is True
    assert check_options(parse()).join is False
    with pytest.raises(UsageError, match="--join: only with --driver docker"):
        check_options(parse("--driver", "sim", "--join"))


def test_advertise_addr_goes_with_join_and_no_pull_with_docker() -> None:
    options = check_options(parse("--join", "--advertise-addr", "eth1"))
    assert (options.join, options.advertise_addr, options.pull) == (True, "eth1", True)
    assert check_options(parse("--no-pull")).pull is False
    with pytest.raises(UsageError, match="--advertise-addr: only with --join"):
        check_options(parse("--advertise-addr", "eth1"))
    with pytest.raises(UsageError, match="--advertise-addr: only with --driver docker --join"):
        check_options(parse("--driver", "sim", "--advertise-addr", "eth1"))
    with pytest.raises(UsageError, match="--no-pull: only with --driver docker"):
        check_options(parse("--driver", "sim", "--no-pull"))


def test_checkpoint_dir_defaults_and_must_be_absolute() -> None:
    assert check_options(parse()).checkpoint_dir == "/var/lib/swarmapply/checkpoints"
    sim = check_options(parse("--driver", "sim", "--checkpoint-dir", "/srv/cp"))
    assert sim.checkpoint_dir == "/srv/cp"
    with pytest.raises(UsageError, match="--checkpoint-dir: expected an absolute path"):
        check_options(parse("--checkpoint-dir", "cp"))
