"""Shared fixtures: real services for integration tests, and the rule for when they are absent.

Tests marked ``docker`` or ``mongodb`` need a real Docker Engine or a real MongoDB
wire-protocol server. On a developer's machine without one they are skipped with a reason that
says how to enable them; when ``CI=true`` a missing service is a test failure, never a skip.

A test that asks for ``store_url`` (or ``store``, or ``cli_store``, which build on it) runs once
per backend, with the ids ``[sqlite]`` and ``[mongodb]``, on a fresh, empty store each time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from swarmapply.api.store import Store, open_store

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
MONGODB_URL_ENV = "SWARMAPPLY_TEST_MONGODB_URL"
DEFAULT_MONGODB_URL = "mongodb://127.0.0.1:27017"
TEST_IMAGE = "swarmapply-test/busybox:1"
STORE_BACKENDS = ["sqlite", pytest.param("mongodb", marks=pytest.mark.mongodb)]
FAST_POLL_SECONDS = 0.01


def service_missing(what: str, how: str, error: BaseException | str) -> None:
    """Skip the test (on a user's machine) or fail it (in CI) because a service is absent."""
    reason = str(error).split(" (configured timeouts")[0]
    reason = reason if len(reason) <= 120 else reason[:117] + "..."
    message = f"{what} is not reachable ({reason}); {how}"
    if IN_CI:
        pytest.fail(f"CI=true requires this service: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A docker-py client for the local engine (``DOCKER_HOST`` or the default socket)."""
    import docker

    try:
        client = docker.from_env(version="auto", timeout=30)
        client.ping()
    except Exception as exc:  # any failure to reach the engine means "service absent"
        service_missing(
            "Docker Engine",
            "start one with `dockerd --iptables=false &` (as root) or set DOCKER_HOST",
            exc,
        )
    yield client
    client.close()


def _busybox_binary() -> str | None:
    for candidate in ("/usr/bin/busybox", "/bin/busybox"):
        if Path(candidate).is_file():
            return candidate
    return shutil.which("busybox")


@pytest.fixture(scope="session")
def test_image(docker_client: Any) -> str:
    """A tiny local image with busybox (``sh``, ``sleep``, ``echo``...), built on demand.

    Nothing can be pulled from a registry here, so the image is imported from the host's
    static busybox (Debian package ``busybox-static``). It is kept between runs on purpose:
    it is an input to the tests, not something a test creates.
    """
    import docker

    try:
        docker_client.images.get(TEST_IMAGE)
        return TEST_IMAGE
    except docker.errors.ImageNotFound:
        pass
    busybox = _busybox_binary()
    if busybox is None:
        service_missing("busybox", "install Debian's busybox-static to build the test image", "")
        raise AssertionError("unreachable")
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = Path(tmp, "rootfs")
        (rootfs / "bin").mkdir(parents=True)
        (rootfs / "tmp").mkdir()
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        for applet in ("sh", "sleep", "echo", "cat", "true", "false", "ping", "ls", "env"):
            (rootfs / "bin" / applet).symlink_to("busybox")
        tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], check=True, capture_output=True)
        docker_client.images.client.api.import_image_from_data(
            tar.stdout, repository=TEST_IMAGE.split(":")[0], tag=TEST_IMAGE.split(":")[1]
        )
    return TEST_IMAGE


@pytest.fixture(scope="session")
def mongodb_server_url() -> str:
    """The URL of a reachable MongoDB wire-protocol server (FerretDB in CI)."""
    import pymongo
    import pymongo.errors

    url = os.environ.get(MONGODB_URL_ENV, DEFAULT_MONGODB_URL)
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=3000
    )
    try:
        client.admin.command("ping")
    except pymongo.errors.PyMongoError as exc:
        service_missing(
            f"MongoDB wire-protocol server at {url}",
            f"start FerretDB or mongod there, or point {MONGODB_URL_ENV} at one",
            exc,
        )
    finally:
        client.close()
    return url.rstrip("/")


@pytest.fixture
def mongodb_store_url(mongodb_server_url: str) -> Iterator[str]:
    """A store URL naming a fresh database, dropped after the test."""
    import pymongo

    db = f"swarmapply_test_{uuid.uuid4().hex[:12]}"
    base = mongodb_server_url.split("?")[0]
    if base.count("/") > 2:  # the server URL names a database already: replace it
        base = base.rsplit("/", 1)[0]
    yield f"{base}/{db}"
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongodb_server_url)
    client.drop_database(db)
    client.close()


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty store of each backend in turn (SQLite, then MongoDB).

    A module runs on one backend only by overriding this fixture with a plain one; a test
    chooses with ``@pytest.mark.parametrize("store_url", [...], indirect=True)``.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    url: str = request.getfixturevalue("mongodb_store_url")
    return url


@pytest.fixture
def open_test_store() -> Iterator[Callable[[str], Store]]:
    """Opens stores by URL on demand, each polling for changes every 10 ms (fast watches).

    Every store it opened is closed after the test; closing one earlier is harmless.
    """
    opened: list[Store] = []

    def open_(url: str) -> Store:
        store = open_store(url)
        store.poll_interval = FAST_POLL_SECONDS  # type: ignore[attr-defined]
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(store_url: str, open_test_store: Callable[[str], Store]) -> Store:
    """The store at ``store_url``, opened with :func:`open_test_store`."""
    return open_test_store(store_url)


@pytest.fixture
def cli_store(store_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The URL of ``store_url``, made the command line's default (SWARMAPPLY_STORE)."""
    monkeypatch.setenv("SWARMAPPLY_STORE", store_url)
    return store_url
