"""The pruner: a periodic pass that removes what nothing wants any more (controller ``pruner``).

Each pass reads the manager's Docker Engine (containers and networks carrying our labels)
and then the store (Jobs, Tasks, Nodes, Events, Checkpoints, the revision), asks
:func:`~swarmapply.controllers.prune_plan.plan_prune` what is garbage, and removes it: expired
Jobs first (the store cascades to their Tasks), then containers, networks, Checkpoints and
Events, then compacts the store's change log. ``swarmapply prune`` runs one pass on demand
(:meth:`Pruner.run_once`, optionally as a dry run that removes nothing).

What is guaranteed: store objects are deleted only if unchanged since they were read
(compare-and-swap on resourceVersion), so an Event counted again or a Job restarted meanwhile
survives the pass; a removal that depends on a Job's deletion (its containers, network and
Checkpoints) is skipped when that deletion did not happen. Something already gone counts as
done. A failed removal is logged and reported and never stops the pass. An engine that cannot
be reached makes the pass store-only (logged once while it stays so).

What is not: the engine is the manager's only. Containers on other nodes are their agents':
an agent removes containers whose Task is gone (so those of expired Jobs go with them) but
keeps exited containers of finished Tasks until their Task is deleted. Checkpoint files stay
on the node that took them. Compaction keeps the newest ``history_revisions`` revisions; the
MongoDB store further keeps everything younger than its ``min_compact_age``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import docker
import docker.errors
import requests
import urllib3

from swarmapply.agent.model import MANAGED_BY, MANAGER
from swarmapply.api.store import Conflict, NotFound, Store
from swarmapply.api.store.lifecycle import parse_time
from swarmapply.controllers.prune_plan import (
    ContainerInfo,
    NetworkEntry,
    PrunePlan,
    PrunerSettings,
    Removal,
    plan_prune,
)
from swarmapply.controllers.settings import ControllerSettings
from swarmapply.controllers.swarm import (
    DockerEngine,
    EngineRefused,
    EngineUnavailable,
    engine_failure,
)
from swarmapply.errors import SwarmapplyError

log = logging.getLogger(__name__)

COMPONENT = "pruner"

Clock = Callable[[], datetime]

_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    OSError,
)


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)


# --- the engine -----------------------------------------------------------------------------


class PruneEngine(Protocol):
    """The container and network calls the pruner makes on the manager's engine.

    Every method may raise :class:`EngineUnavailable`; removals may raise
    :class:`EngineRefused` (e.g. a network with running containers attached).
    """

    where: str

    def containers(self) -> list[ContainerInfo]:
        """Every container carrying ``swarmapply.io/managed-by=swarmapply``, in any state."""
        ...

    def networks(self) -> list[NetworkEntry]:
        """Every network carrying ``swarmapply.io/managed-by=swarmapply``."""
        ...

    def remove_container(self, container_id: str) -> None:
        """Stop (if running) and remove the container with its anonymous volumes."""
        ...

    def remove_network(self, network_id: str) -> None:
        """Remove the network."""
        ...


def container_from_listing(entry: Mapping[str, Any]) -> ContainerInfo:
    """The :class:`ContainerInfo` of one entry of the engine's container list (pure)."""
    names = entry.get("Names") or []
    return ContainerInfo(
        id=str(entry.get("Id") or ""),
        name=str(names[0]).lstrip("/") if names else "",
        state=str(entry.get("State") or ""),
        labels={str(k): str(v) for k, v in (entry.get("Labels") or {}).items()},
    )


def network_entry_from_listing(entry: Mapping[str, Any]) -> NetworkEntry:
    """The :class:`NetworkEntry` of one entry of the engine's network list (pure)."""
    return NetworkEntry(
        id=str(entry.get("Id") or ""),
        name=str(entry.get("Name") or ""),
        labels={str(k): str(v) for k, v in (entry.get("Labels") or {}).items()},
        created=parse_time(entry.get("Created")),
    )


class DockerPruneEngine:
    """:class:`PruneEngine` on the deployer's :class:`DockerEngine` (its docker-py client)."""

    def __init__(self, engine: DockerEngine) -> None:
        """Args: engine: The manager's engine, as the deployer reaches it."""
        self.engine = engine
        self.where = engine.docker_host or "$DOCKER_HOST (or the default socket)"

    def _ours(self) -> dict[str, list[str]]:
        return {"label": [f"{MANAGED_BY}={MANAGER}"]}

    def containers(self) -> list[ContainerInfo]:
        """See :meth:`PruneEngine.containers`."""
        try:
            listing = self.engine.client.api.containers(all=True, filters=self._ours())
        except (docker.errors.APIError, *_TRANSPORT_ERRORS) as exc:
            engine_failure("listing containers", exc)
        return [container_from_listing(e) for e in listing or []]

    def networks(self) -> list[NetworkEntry]:
        """See :meth:`PruneEngine.networks`."""
        try:
            listing = self.engine.client.api.networks(filters=self._ours())
        except (docker.errors.APIError, *_TRANSPORT_ERRORS) as exc:
            engine_failure("listing networks", exc)
        return [network_entry_from_listing(e) for e in listing or []]

    def remove_container(self, container_id: str) -> None:
        """See :meth:`PruneEngine.remove_container` (gone already, or going: fine)."""
        try:
            self.engine.client.api.remove_container(container_id, v=True, force=True)
        except docker.errors.NotFound:
            log.debug("container %s is gone already", container_id)
        except docker.errors.APIError as exc:
            if exc.status_code == 409 and "in progress" in str(exc.explanation or ""):
                return
            engine_failure(f"removing container {container_id[:12]}", exc)
        except _TRANSPORT_ERRORS as exc:
            engine_failure(f"removing container {container_id[:12]}", exc)

    def remove_network(self, network_id: str) -> None:
        """See :meth:`PruneEngine.remove_network` (gone already: fine)."""
        try:
            self.engine.client.api.remove_network(network_id)
        except docker.errors.NotFound:
            log.debug("network %s is gone already", network_id)
        except (docker.errors.APIError, *_TRANSPORT_ERRORS) as exc:
            engine_failure(f"removing network {network_id[:12]}", exc)


# --- one pass -------------------------------------------------------------------------------

#: Outcomes of one removal.
REMOVED, GONE, SKIPPED, FAILED, PLANNED = "removed", "gone", "skipped", "failed", "planned"


@dataclass(frozen=True)
class Outcome:
    """What became of one removal.

    Attributes:
        removal: The removal planned.
        result: ``removed``; ``gone`` (someone else removed it first); ``skipped`` (it
            changed since it was read, or the Job it depends on was not deleted);
            ``failed`` (the store or engine refused; ``detail`` says why); ``planned``
            (a dry run).
        detail: Why it was skipped or failed.
    """

    removal: Removal
    result: str
    detail: str = ""


@dataclass(frozen=True)
class PassReport:
    """One pass: the plan, what became of each removal, and the compaction.

    Attributes:
        plan: What the pass planned.
        outcomes: One per removal, in order.
        dry_run: Nothing was removed.
        engine_error: Why the engine was not pruned (unreachable, or turned off); None
            when it was.
        compacted: Change records the compaction removed (None: none was made).
    """

    plan: PrunePlan
    outcomes: tuple[Outcome, ...]
    dry_run: bool = False
    engine_error: str | None = None
    compacted: int | None = None

    def count(self, result: str) -> int:
        """How many removals ended with ``result``."""
        return sum(1 for o in self.outcomes if o.result == result)

    @property
    def failed(self) -> list[Outcome]:
        """The removals that failed."""
        return [o for o in self.outcomes if o.result == FAILED]


class Pruner:
    """The pruner: one pass on demand (:meth:`run_once`), or every ``interval`` (:meth:`run`)."""

    def __init__(
        self,
        store: Store,
        engine: PruneEngine | None,
        settings: PrunerSettings | None = None,
        *,
        clock: Clock = utc_now,
        name: str = COMPONENT,
    ) -> None:
        """Create a pruner; nothing is read until a pass.

        Args:
            store: The store.
            engine: The manager's engine; None to prune the store only.
            settings: Interval and ages.
            clock: Returns the current, timezone-aware time.
            name: The component name in logs.
        """
        self.store = store
        self.engine = engine
        self.settings = settings or PrunerSettings()
        self.clock = clock
        self.name = name
        self.passes = 0
        self.removed = 0
        self.failures = 0
        self._engine_said = ""

    def _read_engine(self) -> tuple[list[ContainerInfo] | None, list[NetworkEntry] | None, str]:
        if self.engine is None or not self.settings.engine:
            return None, None, "the engine is not pruned (turned off)"
        try:
            return self.engine.containers(), self.engine.networks(), ""
        except (EngineUnavailable, EngineRefused) as exc:
            return None, None, f"the Docker Engine at {self.engine.where} was not pruned: {exc}"

    def plan(self) -> tuple[PrunePlan, str | None]:
        """Read the engine, then the store, and plan a pass.

        Returns:
            The plan, and why the engine was not included (None when it was).
        """
        containers, networks, engine_error = self._read_engine()
        store = self.store
        plan = plan_prune(
            jobs=store.list("Job").items,
            tasks=store.list("Task").items,
            nodes=store.list("Node").items,
            events=store.list("Event").items,
            checkpoints=store.list("Checkpoint").items,
            containers=containers,
            networks=networks,
            now=self.clock(),
            settings=self.settings,
            revision=store.revision(),
        )
        return plan, engine_error or None

    def run_once(self, *, dry_run: bool = False) -> PassReport:
        """One pass: plan, then (unless ``dry_run``) remove and compact.

        Raises:
            TemporaryError: The store could not be read (nothing was removed).
        """
        plan, engine_error = self.plan()
        self._note_engine(engine_error)
        if dry_run:
            outcomes = tuple(Outcome(r, PLANNED) for r in plan.removals)
            return PassReport(plan, outcomes, dry_run=True, engine_error=engine_error)
        outcomes_list: list[Outcome] = []
        deleted_jobs: set[str] = set()
        for removal in plan.removals:
            if removal.after_job is not None and removal.after_job not in deleted_jobs:
                outcome = Outcome(removal, SKIPPED, f"Job {removal.after_job} was not deleted")
            else:
                outcome = self._remove(removal)
            if removal.kind == "Job" and outcome.result in (REMOVED, GONE):
                deleted_jobs.add(removal.name)
            self._log(outcome)
            outcomes_list.append(outcome)
        compacted = None
        if plan.compact_to is not None:
            try:
                compacted = self.store.compact(plan.compact_to)
            except SwarmapplyError as exc:
                log.warning("%s: compacting the store up to revision %d failed: %s",
                            self.name, plan.compact_to, exc)  # fmt: skip
        report = PassReport(plan, tuple(outcomes_list), engine_error=engine_error,
                            compacted=compacted)  # fmt: skip
        self.passes += 1
        self.removed += report.count(REMOVED)
        self.failures += len(report.failed)
        return report

    def _note_engine(self, engine_error: str | None) -> None:
        if engine_error and engine_error != self._engine_said:
            log.warning("%s: %s; pruning the store only", self.name, engine_error)
        elif not engine_error and self._engine_said:
            log.info("%s: the Docker Engine is back; pruning it again", self.name)
        self._engine_said = engine_error or ""

    def _remove(self, removal: Removal) -> Outcome:
        try:
            if removal.kind == "container":
                assert self.engine is not None
                self.engine.remove_container(removal.id)
            elif removal.kind == "network":
                assert self.engine is not None
                self.engine.remove_network(removal.id)
            else:
                self.store.delete(removal.kind, removal.id,
                                  resource_version=removal.resource_version)  # fmt: skip
        except NotFound:
            return Outcome(removal, GONE, "removed by someone else first")
        except Conflict:
            return Outcome(removal, SKIPPED, "it changed since it was read")
        except SwarmapplyError as exc:
            return Outcome(removal, FAILED, str(exc))
        return Outcome(removal, REMOVED)

    def _log(self, outcome: Outcome) -> None:
        removal = outcome.removal
        if outcome.result == REMOVED:
            log.info("%s: %s", self.name, removal.line())
        elif outcome.result == FAILED:
            log.warning("%s: could not remove %s %s: %s", self.name, removal.kind, removal.name,
                        outcome.detail)  # fmt: skip
        else:
            log.debug("%s: %s %s %s: %s", self.name, outcome.result, removal.kind, removal.name,
                      outcome.detail)  # fmt: skip

    def run(self, stop: threading.Event) -> None:
        """A pass at once, then every ``interval`` seconds, until ``stop`` is set.

        A pass that fails (the store unreachable) is logged; the next one comes on time.
        """
        while not stop.is_set():
            try:
                report = self.run_once()
                if report.outcomes or report.compacted:
                    log.info("%s: %s", self.name, report_summary(report))
            except Exception:
                log.exception("%s: the pass failed; trying again in %.1fs", self.name,
                              self.settings.interval)  # fmt: skip
            stop.wait(self.settings.interval)

    def summary(self) -> str:
        """The counters in one line, for logs."""
        return f"passes {self.passes}, removed {self.removed}, failed removals {self.failures}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def report_summary(report: PassReport) -> str:
    """One line: how many of each kind were (or would be) removed, and the compaction."""
    wanted = REMOVED if not report.dry_run else PLANNED
    counts: dict[str, int] = {}
    for outcome in report.outcomes:
        if outcome.result == wanted:
            counts[outcome.removal.kind] = counts.get(outcome.removal.kind, 0) + 1
    verb = "would remove" if report.dry_run else "removed"
    kinds = ("Job", "container", "network", "Checkpoint", "Event")
    parts = [_plural(counts.get(k, 0), k) for k in kinds]
    text = f"{verb} " + ", ".join(parts)
    others = [
        f"{report.count(r)} {r}" for r in (GONE, SKIPPED, FAILED) if report.count(r)
    ]  # fmt: skip
    if others:
        text += f" ({', '.join(others)})"
    if report.plan.compact_to is not None:
        if report.dry_run:
            text += f"; would compact the change log up to revision {report.plan.compact_to}"
        elif report.compacted is not None:
            text += (
                f"; compacted the change log up to revision {report.plan.compact_to} "
                f"({_plural(report.compacted, 'record')} removed)"
            )
    return text


def build(store: Store, settings: ControllerSettings) -> Pruner:
    """The pruner as ``swarmapply controllers`` runs it.

    Its settings are ``settings.pruner`` (defaults when the field is absent); it reaches the
    manager's engine as the deployer does (``settings.deployer.docker_host``).
    """
    ours = getattr(settings, "pruner", None)
    prune_settings = ours if isinstance(ours, PrunerSettings) else PrunerSettings()
    engine = None
    if prune_settings.engine:
        engine = DockerPruneEngine(DockerEngine(settings.deployer.docker_host))
    return Pruner(store, engine, prune_settings)


__all__ = [
    "COMPONENT",
    "DockerPruneEngine",
    "Outcome",
    "PassReport",
    "PruneEngine",
    "Pruner",
    "PrunerSettings",
    "build",
    "container_from_listing",
    "network_entry_from_listing",
    "report_summary",
    "utc_now",
]
