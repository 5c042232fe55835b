"""Checkpoint and restore of task containers through the Docker Engine's experimental API.

docker-py has no checkpoint calls, so these go through its low-level client's request helpers:
``POST /containers/{id}/checkpoints`` (``CheckpointID``, ``CheckpointDir``, ``Exit``) and
``POST /containers/{id}/start?checkpoint=...&checkpoint-dir=...``. A checkpoint "into
``directory``" is the engine's checkpoint named after the directory's last component in its
parent directory, so the files end up exactly in ``directory`` and a restore reads them there.

What it guarantees: every engine failure maps onto the driver's typed errors (see
:mod:`swarmapply.agent.driver`), with the engine's own message; when the engine names a CRIU
log that this machine can read, the log's error lines are added to the message (they are the
actual reason, the engine's message only says that CRIU failed). An engine without the
experimental API is refused with ``CheckpointUnsupported`` and says how to enable it.

What it does not do: move checkpoints between machines (the agent does), or check that CRIU
is installed before trying (the engine's answer says so). The directories are this machine's:
with a remote engine the paths are the engine's, and the size cannot be measured here (0).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from typing import TYPE_CHECKING, NoReturn

import docker.errors
import requests
import urllib3

from swarmapply.agent.driver import EngineUnavailable, TaskRefused, directory_bytes
from swarmapply.agent.model import ContainerSpec, Observed

if TYPE_CHECKING:
    from swarmapply.agent.docker_driver import DockerDriver

log = logging.getLogger(__name__)

#: At most this many error lines of a CRIU log are quoted in a message.
CRIU_LOG_LINES = 3
_LOG_PATH = re.compile(r"path=\s*(\S+\.log)")
_CRIU_ERROR = re.compile(r"^\(\s*[0-9.]+\)\s+Error\s+\([^)]*\):\s*(.+)$")
_STARTED = frozenset({"running", "paused", "restarting"})
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    OSError,
)


# --- pure helpers -------------------------------------------------------------------------


def criu_log_path(message: str) -> str | None:
    """The CRIU log the engine's error names (``... path= /x/criu-dump.log: unknown``), if any.

    >>> criu_log_path("criu failed: type DUMP errno 0 path= /run/c/criu-dump.log: unknown")
    '/run/c/criu-dump.log'
    """
    match = _LOG_PATH.search(message)
    return match.group(1) if match else None


def criu_errors(log_text: str, limit: int = CRIU_LOG_LINES) -> list[str]:
    """The last ``limit`` error lines of a CRIU log, without their timestamp and source.

    >>> criu_errors("(00.1) Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds")
    ['vdso: Unexpected rt vDSO area bounds']
    """
    found = [m.group(1).strip() for m in map(_CRIU_ERROR.match, log_text.splitlines()) if m]
    return found[-limit:] if limit > 0 else []


def failure_message(what: str, engine_text: str, log_text: str | None) -> str:
    """A checkpoint/restore failure as one message: what, the engine's text, CRIU's errors.

    Args:
        what: What was being done (``checkpointing container abc into /d``).
        engine_text: The engine's error message.
        log_text: The CRIU log's content when it could be read, else None.
    """
    message = f"{what}: {engine_text.strip()}"
    path = criu_log_path(engine_text)
    if path is None:
        return message
    errors = criu_errors(log_text or "")
    if errors:
        return f"{message}; the CRIU log {path} says: " + "; ".join(errors)
    return f"{message}; see the CRIU log {path} on the engine's machine"


def split_directory(directory: str) -> tuple[str, str]:
    """``(checkpoint dir, checkpoint id)`` for the engine, so its files land in ``directory``.

    Raises:
        TaskRefused: ``InvalidSpec`` when ``directory`` is not an absolute path below ``/``.
    """
    path = os.path.normpath(directory)
    parent, name = os.path.split(path)
    if not os.path.isabs(path) or not name or not parent:
        raise TaskRefused(
            "InvalidSpec", f"checkpoint directory {directory!r}: expected an absolute path"
        )
    return parent, name


# --- I/O ------------------------------------------------------------------------------------


def _read_log(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError as exc:
        log.debug("CRIU log %s is not readable here: %s", path, exc)
        return None


def _on_this_machine(driver: DockerDriver) -> bool:
    """Whether the engine is reached through a local socket (its paths are this machine's)."""
    return str(driver.client.api.base_url).startswith("http+docker://")


def _require_experimental(driver: DockerDriver, what: str) -> None:
    info = driver._engine_info()
    if not info.get("ExperimentalBuild"):
        raise TaskRefused(
            "CheckpointUnsupported",
            f"{what}: the engine of node {driver.name} (Docker {info.get('ServerVersion', '?')})"
            " does not offer its experimental API, which checkpoints need: start dockerd "
            "with --experimental (and install CRIU)",
        )


def _refusal(driver: DockerDriver, reason: str, what: str, exc: Exception) -> NoReturn:
    text = str(getattr(exc, "explanation", None) or exc)
    if "experimental" in text.lower():
        raise TaskRefused(
            "CheckpointUnsupported",
            f"{what}: {text} (start dockerd with --experimental)",
        ) from exc
    log_text = _read_log(criu_log_path(text)) if _on_this_machine(driver) else None
    raise TaskRefused(reason, failure_message(what, text, log_text)) from exc


def _discard(directory: str | None) -> None:
    """Remove what a failed checkpoint left in ``directory``, and its parent when empty."""
    if directory is None:
        return
    shutil.rmtree(directory, ignore_errors=True)
    with contextlib.suppress(OSError):  # not empty (other checkpoints), or gone: keep it
        os.rmdir(os.path.dirname(directory))


def checkpoint(driver: DockerDriver, container_id: str, directory: str, leave_running: bool) -> int:
    """See :meth:`swarmapply.agent.docker_driver.DockerDriver.checkpoint`."""
    what = f"checkpointing container {container_id[:12]} into {directory}"
    _require_experimental(driver, what)
    parent, name = split_directory(directory)
    local = _on_this_machine(driver)
    if local:
        shutil.rmtree(directory, ignore_errors=True)  # the engine refuses an existing one
        os.makedirs(parent, exist_ok=True)
    api = driver.client.api
    try:
        url = api._url("/containers/{0}/checkpoints", container_id)
        body = {"CheckpointID": name, "CheckpointDir": parent, "Exit": not leave_running}
        api._raise_for_status(api._post_json(url, data=body))
    except docker.errors.NotFound as exc:
        _discard(directory if local else None)
        if "no such container" in str(exc.explanation or "").lower():
            raise TaskRefused("ContainerNotFound", f"{what}: the container does not exist") from exc
        _refusal(driver, "CheckpointFailed", what, exc)
    except docker.errors.APIError as exc:
        if exc.response is None:
            raise EngineUnavailable(f"{what}: the Docker Engine failed: {exc}") from exc
        _discard(directory if local else None)
        _refusal(driver, "CheckpointFailed", what, exc)
    except _TRANSPORT_ERRORS as exc:
        raise EngineUnavailable(f"{what}: cannot reach the Docker Engine: {exc}") from exc
    driver.forget(container_id)
    return directory_bytes(directory) if local else 0


def restore(driver: DockerDriver, spec: ContainerSpec, directory: str) -> Observed:
    """See :meth:`swarmapply.agent.docker_driver.DockerDriver.restore`."""
    what = f"task {spec.task}: restoring from the checkpoint in {directory}"
    _require_experimental(driver, what)
    parent, name = split_directory(directory)
    if _on_this_machine(driver) and not os.path.isdir(directory):
        raise TaskRefused("RestoreFailed", f"{what}: there is no checkpoint there")
    existing = driver._find(spec.task_uid)
    if existing is not None:
        state = str((existing.get("State") or {}).get("Status") or "")
        if state in _STARTED:
            return driver.observe(existing)
        driver.remove(str(existing["Id"]))  # not started: replaced by the restored one
    container_id = driver._create(spec)
    api = driver.client.api
    try:
        url = api._url("/containers/{0}/start", container_id)
        params = {"checkpoint": name, "checkpoint-dir": parent}
        api._raise_for_status(api._post(url, params=params))
    except docker.errors.APIError as exc:
        _remove_quietly(driver, container_id)
        if exc.response is None:
            raise EngineUnavailable(f"{what}: the Docker Engine failed: {exc}") from exc
        driver._network_missing(spec, exc)
        _refusal(driver, "RestoreFailed", what, exc)
    except _TRANSPORT_ERRORS as exc:
        _remove_quietly(driver, container_id)
        raise EngineUnavailable(f"{what}: cannot reach the Docker Engine: {exc}") from exc
    attrs = driver._inspect(container_id)
    if attrs is None:
        raise EngineUnavailable(f"{what}: container {container_id[:12]} vanished after restore")
    return driver.observe(attrs)


def _remove_quietly(driver: DockerDriver, container_id: str) -> None:
    try:
        driver.remove(container_id)
    except EngineUnavailable as exc:
        log.warning("container %s of a failed restore not removed: %s", container_id[:12], exc)


__all__ = [
    "CRIU_LOG_LINES",
    "checkpoint",
    "criu_errors",
    "criu_log_path",
    "failure_message",
    "restore",
    "split_directory",
]
