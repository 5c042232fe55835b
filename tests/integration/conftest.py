"""Fixtures of the integration tests that need more than tests/conftest.py gives."""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import service_missing
from tests.integration.docker_cluster import Cluster
from tests.integration.swarm_nodes import (
    TEST_IMAGE,
    MakeSwarmNodes,
    SwarmNodes,
    missing_requirements,
)

#: The report of each phase (setup, call, teardown) of a test, kept on its item.
PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keeps each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(PHASE_REPORTS, {})
    return any(r.failed for r in reports.values())


@pytest.fixture
def cluster(docker_client: Any, test_image: str, tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of this test's own; everything it made is removed afterwards."""
    made = Cluster(docker_client, tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def make_swarm_nodes(request: pytest.FixtureRequest) -> Iterator[MakeSwarmNodes]:
    """Builds clusters of real Docker daemons (see tests/integration/swarm_nodes.py).

    Call it as ``make_swarm_nodes(names, swarm=True, image=TEST_IMAGE)``; every cluster it
    made is removed after the test, which fails if anything could not be removed. When the
    test failed, the tails of the processes' and daemons' logs go to stderr. Skips (fails
    under CI=true) when the machine cannot build one: not root, or tools missing.
    """
    made: list[SwarmNodes] = []

    def make(
        names: Sequence[str], *, swarm: bool = True, image: str | None = TEST_IMAGE
    ) -> SwarmNodes:
        missing = missing_requirements()
        if missing is not None:
            service_missing(
                "A multi-node Swarm",
                "run as root with iproute2, util-linux and docker.io (Debian) installed",
                missing,
            )
        if image is not None:
            image = str(request.getfixturevalue("test_image")) if image == TEST_IMAGE else image
        nodes = SwarmNodes.new()
        made.append(nodes)
        nodes.create(names, swarm=swarm, image=image)
        return nodes

    try:
        yield make
    finally:
        problems: list[str] = []
        for nodes in made:
            # The logs are read before remove() deletes the cluster's directory.
            logs = nodes.logs() if _failed(request) else ""
            problems += nodes.remove()
            if logs:
                sys.stderr.write(logs)
        assert not problems, problems


@pytest.fixture
def swarm_nodes(make_swarm_nodes: MakeSwarmNodes) -> SwarmNodes:
    """Three daemons in one Swarm: ``node-1`` (the manager), ``node-2`` and ``node-3``."""
    return make_swarm_nodes(["node-1", "node-2", "node-3"])
