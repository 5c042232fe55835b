"""From a bound Task to the container the agent asks its driver for."""

from __future__ import annotations

from typing import Any

import pytest

from swarmapply.agent.model import (
    MANAGED_BY,
    TASK_UID,
    ContainerSpec,
    PortSpec,
    VolumeSpec,
    container_spec,
    simulated_duration,
)


def bound_task(**spec: Any) -> dict[str, Any]:
    return {
        "kind": "Task",
        "metadata": {
            "name": "web-server",
            "uid": "u-1",
            "labels": {"swarmapply.io/task": "server"},
        },
        "spec": {"job": "web", "image": "busybox", "network": "web", **spec},
        "status": {"phase": "Scheduled", "node": "n1", "cpuset": "2-3", "memory": 64 << 20},
    }


def test_a_bound_task_becomes_a_container_spec() -> None:
    spec = container_spec(
        bound_task(
            command=["sleep", "30"],
            environment={"B": "2", "A": "1"},
            ports=[
                {"containerPort": 80, "hostPort": 8080},
                {"containerPort": 53, "protocol": "udp"},
            ],
            volumes=[{"source": "data", "target": "/data", "readOnly": True}],
        )
    )
    assert spec == ContainerSpec(
        task="web-server",
        task_uid="u-1",
        job="web",
        node="n1",
        alias="server",
        image="busybox",
        command=("sleep", "30"),
        cpuset="2-3",
        memory=64 << 20,
        network="web",
        ports=(PortSpec(80, 8080), PortSpec(53, None, "udp")),
        volumes=(VolumeSpec("data", "/data", True),),
        environment=(("A", "1"), ("B", "2")),
        duration=30.0,
    )
    assert spec.labels[MANAGED_BY] == "swarmapply"
    assert spec.labels[TASK_UID] == "u-1"


def test_an_unbound_task_or_one_without_uid_is_refused_by_name() -> None:
    task = bound_task()
    del task["status"]["cpuset"]
    with pytest.raises(ValueError, match="task web-server: is not bound"):
        container_spec(task)
    task = bound_task()
    del task["metadata"]["uid"]
    with pytest.raises(ValueError, match=r"task web-server: has no metadata\.uid"):
        container_spec(task)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"simulation": {"duration": 12.5}, "command": ["sleep", "99"]}, 12.5),
        ({"command": ["sleep", "30"]}, 30.0),
        ({"command": ["/bin/sleep", "0.5"]}, 0.5),
        ({"command": ["sh", "-c", "sleep 5; echo done"]}, None),
        ({}, None),
    ],
)
def test_simulated_duration(spec: dict[str, Any], expected: float | None) -> None:
    assert simulated_duration(spec) == expected
