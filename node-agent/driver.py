"""The contract between the node agent and a container engine (a Protocol), and its errors.

A driver runs containers for one node: the ``docker`` driver through a Docker Engine, the
``sim`` driver in memory (hollow nodes). The agent decides *what* should run (:mod:`.plan`);
a driver only does what it is told and reports what it sees, so the agent's logic is the same
for both and is tested without an engine.

Errors: :class:`EngineUnavailable` (temporary: the engine is down or busy; the agent retries
with backoff and marks its Node), :class:`NetworkNotReady` (temporary: the deployer has not
created the job's network yet) and :class:`TaskRefused` (permanent for that task: a bad
image, a refused setting; the task fails with the message as its reason). Checkpoints and
restores refuse with reasons of their own: ``CheckpointFailed`` (the engine or CRIU failed; the
message carries their text), ``CheckpointUnsupported`` (the driver or engine cannot checkpoint
at all), ``RestoreFailed``. Anything else a driver raises is a bug and is logged with its
traceback.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from swarmapply.agent.model import ContainerSpec, NodeInfo, Observed
from swarmapply.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)


class EngineUnavailable(TemporaryError):
    """The container engine could not be reached or failed in a way worth retrying."""


class NetworkNotReady(TemporaryError):
    """The task's network does not exist on the engine yet (the deployer creates it)."""


class TaskRefused(PermanentError):
    """The engine (or the driver's policy) will not run this task as specified.

    Attributes:
        reason: A CamelCase reason for the task's status (``ImagePullFailed``,
            ``RefusedSetting``, ``InvalidSpec``...).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@runtime_checkable
class Driver(Protocol):
    """Runs and observes the managed containers of one node."""

    def info(self) -> NodeInfo:
        """The node's name, cores, memory and engine facts (for registration).

        Raises:
            EngineUnavailable: The engine cannot be reached.
        """
        ...

    def containers(self) -> list[Observed]:
        """Every container on this node carrying the managed-by label, in any state.

        Raises:
            EngineUnavailable: The engine cannot be reached.
        """
        ...

    def start(self, spec: ContainerSpec) -> Observed:
        """Create and start the container for ``spec``; idempotent for the same task uid.

        If a container for ``spec.task_uid`` exists already it is returned (started if it
        was only created), never a second one.

        Raises:
            EngineUnavailable: The engine cannot be reached (retry later).
            NetworkNotReady: The job's network does not exist yet (retry later).
            TaskRefused: The task cannot run as specified (the task fails).
        """
        ...

    def update(self, container_id: str, cpuset: str, memory: int) -> None:
        """Change a running container's cores and memory limit in place.

        Raises:
            EngineUnavailable: The engine cannot be reached.
            TaskRefused: The engine refused the new limits.
        """
        ...

    def remove(self, container_id: str) -> None:
        """Stop (if running) and remove the container; a container already gone is fine.

        Raises:
            EngineUnavailable: The engine cannot be reached.
        """
        ...

    def checkpoint(self, container_id: str, directory: str, *, leave_running: bool) -> int:
        """Checkpoint a running container (CRIU) into ``directory``; returns its bytes on disk.

        A checkpoint already in ``directory`` is replaced. With ``leave_running`` False the
        container is stopped by the checkpoint (it stays, exited, until removed); when the
        checkpoint fails the container is left running exactly as it was.

        Raises:
            EngineUnavailable: The engine cannot be reached.
            TaskRefused: ``CheckpointFailed`` (the engine's and CRIU's message),
                ``CheckpointUnsupported`` (this driver or engine cannot checkpoint),
                ``ContainerNotFound``.
        """
        ...

    def restore(self, spec: ContainerSpec, directory: str) -> Observed:
        """Create the container for ``spec`` and start it from the checkpoint in ``directory``.

        A container for ``spec.task_uid`` that has started already is returned as it is; one
        that has not (created, exited) is replaced. A container left by a failed restore is
        removed.

        Raises:
            EngineUnavailable: The engine cannot be reached.
            NetworkNotReady: The job's network does not exist yet.
            TaskRefused: ``RestoreFailed`` (the engine's and CRIU's message),
                ``CheckpointUnsupported``, or any reason :meth:`start` refuses with.
        """
        ...

    def events(self, stop: threading.Event) -> Iterator[str]:
        """Task uids whose containers changed state, as the engine reports them, until stop.

        The agent treats each as a hint to look again (it resyncs periodically anyway), so a
        driver may report a uid more than once, or miss some.
        """
        ...


def directory_bytes(directory: str) -> int:
    """Bytes the files under ``directory`` take (their sizes summed; 0 when it is absent).

    For drivers reporting a checkpoint's size, and agents measuring one they find on disk.
    """
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError as exc:  # removed while counted
                log.debug("checkpoint file %s: %s", os.path.join(root, name), exc)
    return total


__all__ = ["Driver", "EngineUnavailable", "NetworkNotReady", "TaskRefused", "directory_bytes"]
