"""A test's own cluster on the real Docker Engine: processes, a store, and cleanup of all it made.

:class:`Cluster` runs ``swarmapply up --driver docker`` (or ``swarmapply controllers`` beside
``swarmapply agent --driver docker``) against a store of the test's own, under a node name of
its own; manifests go in through the CLI and results are read from the store and the engine.
:meth:`Cluster.close` kills every process it started (by pid), removes every container of its
node and every network of its jobs, whatever happened, and writes the processes' output to
stderr (pytest shows it when a test fails). The ``cluster`` fixture (tests/integration/
conftest.py) makes one per test.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from swarmapply.agent.agent import lease_name
from swarmapply.agent.model import JOB_NAME, NODE_NAME, TASK_NAME
from swarmapply.api.store import NotFound, Store, open_store
from swarmapply.cli.main import main
from tests.conftest import TEST_IMAGE
from tests.integration.helpers import ControllersProcess, Fleet, wait_for
from tests.integration.test_cli_up import UpProcess, holders

Object = dict[str, Any]

#: Seconds a job may take to get from apply to every task Running (network, image, start).
START_TIMEOUT = 20.0


class AgentProcess(ControllersProcess):
    """One ``swarmapply agent`` subprocess (same handling as a controllers process)."""

    def __init__(self, log: Path, args: Sequence[str]) -> None:
        """Starts ``python -m swarmapply agent ARGS``, its output going to ``log``."""
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "swarmapply", "agent", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
            )


class Cluster:
    """One test's cluster: its store, node name, processes, and what it made on the engine."""

    def __init__(self, docker_client: Any, directory: Path) -> None:
        suffix = secrets.token_hex(3)
        self.docker = docker_client
        self.directory = directory
        self.suffix = suffix
        self.node = f"e2e-{suffix}"
        self.url = f"sqlite:///{directory}/state.db"
        self.store: Store = open_store(self.url)
        self.jobs: list[str] = []
        self.processes: list[UpProcess | ControllersProcess] = []

    # -- names and manifests -------------------------------------------------------------

    def job_name(self, base: str) -> str:
        """A job name unique to this test; its containers and network are cleaned up."""
        name = f"{base}-{self.suffix}"
        self.jobs.append(name)
        return name

    def manifest(self, doc: Object) -> str:
        """Writes ``doc`` to a file of the test's directory; returns its path."""
        path = self.directory / f"{doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return str(path)

    def job_manifest(self, base: str, tasks: list[Object]) -> tuple[str, str]:
        """A manifest of a job with ``tasks`` (test image, one core, 16m each): (name, path)."""
        name = self.job_name(base)
        entries = [{"image": TEST_IMAGE, "cores": 1, "memory": "16m", **t} for t in tasks]
        doc = {
            "apiVersion": "swarmapply.io/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {"tasks": entries},
        }
        return name, self.manifest(doc)

    # -- processes -----------------------------------------------------------------------

    def up(self) -> UpProcess:
        """``swarmapply up --driver docker`` serving; returned once its node runs and leads."""
        process = UpProcess(
            self.directory / f"up-{len(self.processes)}.log",
            "--driver", "docker", "--name", self.node, "--store", self.url,
        )  # fmt: skip
        self.processes.append(process)
        self.wait_running(process, ("controller-scheduler", "controller-deployer"))
        return process

    def agent(self) -> AgentProcess:
        """``swarmapply agent --driver docker``; returned once it holds its node's Lease."""
        index = len(self.processes)
        process = AgentProcess(
            self.directory / f"agent-{index}.log",
            ["--driver", "docker", "--name", self.node, "--store", self.url,
             "--heartbeat", "1", "--resync", "1"],
        )  # fmt: skip
        self.processes.append(process)
        return process

    def controllers_and_agent(self) -> AgentProcess:
        """Starts ``swarmapply controllers`` and ``swarmapply agent`` as separate processes;
        returns the agent once both run."""
        controllers = Fleet(self.directory, "--store", self.url).start()
        self.processes.append(controllers)
        agent = self.agent()
        self.wait_running(agent, ())
        self.wait_running(controllers, ("controller-scheduler", "controller-deployer"))
        return agent

    def sleepers(self, name: str) -> str:
        """Applies a job of two ``sleep 20`` tasks, a and b; returns the job's name."""
        sleep = ["sleep", "20"]
        job, path = self.job_manifest(
            name, [{"name": "a", "command": sleep}, {"name": "b", "command": sleep}]
        )
        self.cli("apply", "-f", path)
        return job

    def wait_running(self, process: UpProcess | ControllersProcess, leases: Sequence[str]) -> None:
        """Waits until the node's Lease and ``leases`` are held (the process must stay up)."""

        def up() -> bool:
            assert process.alive(), process.output()
            held = holders(self.store)
            return all(held.get(name) for name in (lease_name(self.node), *leases))

        wait_for(up, 20, f"node {self.node} and {', '.join(leases)} to be running")

    def cli(self, *args: str) -> None:
        """Runs a ``swarmapply`` command against this cluster's store; it must exit 0."""
        code = main([*args, "--store", self.url])
        assert code == 0, f"swarmapply {' '.join(args)} exited {code}"

    # -- reading -------------------------------------------------------------------------

    def tasks(self, job: str) -> dict[str, Object]:
        """The job's Tasks by their name within the job."""
        items = self.store.list("Task", field_selector=f"spec.job={job}").items
        return {t["metadata"]["labels"][TASK_NAME]: t for t in items}

    def task(self, name: str) -> Object:
        task: Object = self.store.get("Task", name)
        return task

    def phase(self, kind: str, name: str) -> str | None:
        try:
            return (self.store.get(kind, name).get("status") or {}).get("phase")
        except NotFound:
            return None

    def wait_phase(self, kind: str, name: str, phase: str, timeout: float = START_TIMEOUT) -> None:
        wait_for(
            lambda: self.phase(kind, name) == phase,
            timeout,
            f"{kind} {name} to be {phase} (it is {self.phase(kind, name)})",
            interval=0.05,
        )

    def containers(self, *labels: str) -> list[Object]:
        """List entries of this node's containers (any state) carrying every ``labels``."""
        filters = {"label": [f"{NODE_NAME}={self.node}", *labels]}
        entries: list[Object] = self.docker.api.containers(all=True, filters=filters)
        return entries

    # -- cleanup -------------------------------------------------------------------------

    def close(self) -> None:
        """Kills the processes, removes the containers and networks, closes the store."""
        import docker.errors

        try:
            for process in self.processes:
                if process.alive():
                    process.process.kill()
                process.process.wait(10)
                sys.stderr.write(f"--- {process.log.name}\n{process.output()}\n")
        finally:
            for entry in self.docker.api.containers(
                all=True, filters={"label": f"{NODE_NAME}={self.node}"}
            ):
                with contextlib.suppress(docker.errors.NotFound):
                    self.docker.api.remove_container(entry["Id"], force=True, v=True)
            for job in self.jobs:
                for network in self.docker.api.networks(filters={"label": f"{JOB_NAME}={job}"}):
                    with contextlib.suppress(docker.errors.NotFound):
                        self.docker.api.remove_network(network["Id"])
            self.store.close()


def events(store: Store, obj: Object) -> list[Object]:
    uid = obj["metadata"]["uid"]
    return store.list("Event", field_selector=f"involvedObject.uid={uid}").items
