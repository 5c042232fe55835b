"""Fixtures of the integration tests that need more than tests/conftest.py gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.docker_cluster import Cluster


@pytest.fixture
def cluster(docker_client: Any, test_image: str, tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of this test's own; everything it made is removed afterwards."""
    made = Cluster(docker_client, tmp_path)
    try:
        yield made
    finally:
        made.close()
