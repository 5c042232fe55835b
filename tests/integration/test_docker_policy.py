"""Host settings on the real Docker Engine: refused by default, run as asked under a ClusterPolicy.

Each test runs ``swarmapply up --driver docker`` against a store of its own (the
``cluster`` fixture, :mod:`tests.integration.docker_cluster`), so its ClusterPolicies reach only
its own agent; everything it makes on the engine is removed afterwards.
"""

from __future__ import annotations

from typing import Any

import pytest

from swarmapply.agent.model import TASK_UID
from tests.integration.docker_cluster import START_TIMEOUT, Cluster, events
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.docker

Object = dict[str, Any]


def refusal(cluster: Cluster, task: str) -> str:
    """Waits for Task ``task`` to fail as refused; returns its message."""
    cluster.wait_phase("Task", task, "Failed")
    status = cluster.task(task)["status"]
    assert status["reason"] == "RefusedSetting", status
    assert "containerID" not in status, status
    message: str = status["message"]
    return message


def inspect(cluster: Cluster, task: str) -> Object:
    container = cluster.task(task)["status"]["containerID"]
    attrs: Object = cluster.docker.api.inspect_container(container)
    return attrs


def refused_job(cluster: Cluster, base: str, security: Object) -> str:
    """Applies a job of one task asking for ``security``; returns the task's name.

    One job per setting: a job fails with its first refused task and stops its other tasks,
    which would then never be refused themselves.
    """
    job, path = cluster.job_manifest(
        base, [{"name": "t", "command": ["true"], "securityContext": security}]
    )
    cluster.cli("apply", "-f", path)
    return f"{job}-t"


def test_host_settings_are_refused_without_a_policy_and_nothing_runs(cluster: Cluster) -> None:
    cluster.up()
    priv = refused_job(cluster, "priv", {"privileged": True})
    caps = refused_job(cluster, "caps", {"capabilities": {"add": ["SYS_ADMIN"]}})
    net = refused_job(cluster, "net", {"hostNetwork": True})
    pid = refused_job(cluster, "pid", {"hostPID": True})
    assert refusal(cluster, priv).startswith(
        f"task {priv}: spec.securityContext.privileged: a privileged container owns the host;"
    )
    assert refusal(cluster, caps).startswith(
        f"task {caps}: spec.securityContext.capabilities.add[0]: adding capability SYS_ADMIN"
    )
    assert "Refused" in [e["reason"] for e in events(cluster.store, cluster.task(priv))]
    cluster.wait_phase("Job", priv.removesuffix("-t"), "Failed")
    assert "allowHostNetwork: true" in refusal(cluster, net)
    assert "allowHostPID: true" in refusal(cluster, pid)
    assert cluster.containers() == []


def test_a_cluster_policy_lets_the_settings_run_as_asked(cluster: Cluster) -> None:
    cluster.up()
    policy = {
        "apiVersion": "swarmapply.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": f"trusted-{cluster.suffix}"},
        "spec": {
            "allowPrivileged": True,
            "allowedCapabilities": ["NET_ADMIN"],
            "allowHostNetwork": True,
            "allowHostPID": True,
            "allowedHostPaths": [{"path": "/etc", "readOnly": True}],
        },
    }
    cluster.cli("apply", "-f", cluster.manifest(policy))
    etc = {"source": "/etc", "target": "/host-etc", "readOnly": True}
    namespaces = {"capabilities": {"add": ["net_admin"]}, "hostNetwork": True, "hostPID": True}
    job, path = cluster.job_manifest(
        "trusted",
        [
            {"name": "spaces", "command": ["true"], "securityContext": namespaces},
            {"name": "etc", "command": ["sh", "-c", "test -s /host-etc/passwd"], "volumes": [etc]},
        ],
    )
    cluster.cli("apply", "-f", path)
    cluster.wait_phase("Job", job, "Succeeded")
    host = inspect(cluster, f"{job}-spaces")["HostConfig"]
    assert {c.removeprefix("CAP_") for c in host["CapAdd"]} == {"NET_ADMIN"}
    assert (host["NetworkMode"], host["PidMode"], host["Privileged"]) == ("host", "host", False)
    mounts = inspect(cluster, f"{job}-etc")["Mounts"]
    assert [(m["Source"], m["Destination"], m["RW"]) for m in mounts] == [
        ("/etc", "/host-etc", False)
    ]

    # The policy allows /etc read-only only: a writable bind is still refused, with the fix.
    writable, path = cluster.job_manifest(
        "writable", [{"name": "etc", "command": ["true"], "volumes": [{**etc, "readOnly": False}]}]
    )
    cluster.cli("apply", "-f", path)
    assert refusal(cluster, f"{writable}-etc").endswith(
        "the ClusterPolicy allows it read-only only: set readOnly: true"
    )


def test_a_privileged_task_reaches_the_engine_privileged(cluster: Cluster) -> None:
    """The engine is asked for a privileged container. An engine that itself runs without
    every capability (inside an unprivileged container) cannot start one: the task then
    fails with StartError and the engine's reason, and the agent goes on (no outage)."""
    cluster.up()
    policy = {
        "apiVersion": "swarmapply.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": f"privileged-{cluster.suffix}"},
        "spec": {"allowPrivileged": True},
    }
    cluster.cli("apply", "-f", cluster.manifest(policy))
    job, path = cluster.job_manifest(
        "priv", [{"name": "t", "command": ["true"], "securityContext": {"privileged": True}}]
    )
    cluster.cli("apply", "-f", path)
    name = f"{job}-t"
    wait_for(lambda: cluster.phase("Task", name) in ("Failed", "Succeeded"), START_TIMEOUT, name)
    task = cluster.task(name)
    [entry] = cluster.containers(f"{TASK_UID}={task['metadata']['uid']}")
    assert cluster.docker.api.inspect_container(entry["Id"])["HostConfig"]["Privileged"] is True
    status = task["status"]
    if status["phase"] == "Failed":
        assert status["reason"] == "StartError", status
        assert "the container cannot run" in status["message"], status
        node = cluster.store.get("Node", cluster.node)
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True", ready
    else:
        assert status.get("exitCode") == 0, status
