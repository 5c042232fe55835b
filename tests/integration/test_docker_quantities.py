"""Memory quantities and cpusets mean what Docker means, checked against a real engine.

Each case creates (does not start) a container with the Docker CLI, whose flags are parsed by
Docker's own units library, reads back what the engine stored, and compares it with what
swarmapply's admission stores for the same text. Every container made here is removed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from swarmapply.api.admission import AdmissionError, admit
from swarmapply.api.quantity import format_cpuset, parse_cpuset, parse_memory

pytestmark = pytest.mark.docker

MEMORY_CASES = ["10m", "10M", "10mb", "6144k", "1g", "1.5g", "64MiB", "100000000", "7m"]
#: Below Docker's 6 MiB minimum: the engine refuses these, and so does admission.
TOO_SMALL = ["512k", "5m", "1000"]
JOB = """
apiVersion: swarmapply.io/v1
kind: Job
metadata: {{name: small}}
spec:
  tasks: [{{name: t, image: busybox, memory: "{memory}"}}]
"""
CPUSET_CASES = ["0", "0-1", "1,0", "0,1"]


def docker_cli() -> str:
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate:
            return candidate
    pytest.skip("no docker CLI on PATH")
    raise AssertionError("unreachable")


@pytest.fixture
def created(docker_client: Any, test_image: str) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        docker_client.api.remove_container(name, force=True)


def docker_create(names: list[str], image: str, *flags: str) -> dict[str, Any]:
    name = f"swarmapply-test-{uuid.uuid4().hex[:10]}"
    subprocess.run(
        [docker_cli(), "create", "--name", name, *flags, image, "true"],
        check=True,
        capture_output=True,
    )
    names.append(name)
    inspect = subprocess.run(
        [docker_cli(), "inspect", "--format", "{{json .HostConfig}}", name],
        check=True,
        capture_output=True,
        text=True,
    )
    host_config: dict[str, Any] = json.loads(inspect.stdout)
    return host_config


@pytest.mark.parametrize("quantity", MEMORY_CASES)
def test_memory_quantity_matches_docker(created: list[str], test_image: str, quantity: str) -> None:
    host_config = docker_create(created, test_image, "--memory", quantity)
    assert host_config["Memory"] == parse_memory(quantity)


@pytest.mark.parametrize("quantity", TOO_SMALL)
def test_memory_below_dockers_minimum_is_refused_by_both(
    created: list[str], test_image: str, quantity: str
) -> None:
    with pytest.raises(subprocess.CalledProcessError) as refused:
        docker_create(created, test_image, "--memory", quantity)
    assert b"Minimum memory limit" in refused.value.stderr
    with pytest.raises(AdmissionError, match=r"spec\.tasks\[0\]\.memory: expected at least 6Mi"):
        admit([("job.yaml", JOB.format(memory=quantity))])


def test_cpuset_canonical_form_is_accepted_by_docker(
    created: list[str], test_image: str, docker_client: Any
) -> None:
    cores = docker_client.info()["NCPU"]
    for text in CPUSET_CASES:
        ids = parse_cpuset(text)
        if max(ids) >= cores:
            continue
        host_config = docker_create(created, test_image, "--cpuset-cpus", format_cpuset(ids))
        assert parse_cpuset(host_config["CpusetCpus"]) == ids
