"""The controller manager: runs the selected controllers, each under its own leader election.

Each controller is campaigned for separately, on the Lease ``controller-<name>``, so several
managers against one store (``swarmapply controllers`` on several machines, or one process per
controller with ``--only``) run exactly one active instance of each controller between them,
and another instance takes over when the active one dies (see :mod:`.leader` for the precise
guarantee). Every leadership term builds a fresh controller through its factory and runs it
with the term's stop event, so a new leader starts from a fresh cache.

Controllers are known by name. The built-in ones are imported lazily, so a controller whose
module is missing or broken fails only when it is selected, with an error naming it. More can
be added without changing this module through the environment variable
``SWARMAPPLY_CONTROLLER_PLUGINS``: ``name=module:function[,name=module:function...]``, each
function a :data:`ControllerFactory`.

What is guaranteed: a controller that raises, or whose factory raises, is logged with its
traceback and its term ends (the Lease is released and campaigned for again after one renew
interval); it never stops the other controllers. :meth:`ControllerManager.run` returns once
its stop event is set and every controller has stopped and released its Lease.

What is not: a controller whose ``run`` ignores its stop event is waited for indefinitely (with
a warning every few seconds), since starting another instance meanwhile could run two.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from swarmapply.api.names import dns1123_label_error
from swarmapply.api.store import Store
from swarmapply.controllers.leader import Clock, LeaderElector
from swarmapply.controllers.lease import default_identity
from swarmapply.controllers.settings import ControllerSettings
from swarmapply.errors import PermanentError

log = logging.getLogger(__name__)


class Runnable(Protocol):
    """A controller loop: runs until its stop event is set (``runtime.Controller`` is one)."""

    name: str

    def run(self, stop: threading.Event) -> None:
        """Runs until ``stop`` is set, then returns promptly."""
        ...


#: Builds a controller for one leadership term.
ControllerFactory = Callable[[Store, ControllerSettings], Runnable]

#: The built-in controllers: name -> ``module:function`` of their factory.
REGISTRY: Mapping[str, str] = {
    "job": "swarmapply.controllers.job:build",
    "scheduler": "swarmapply.controllers.scheduler:build",
    "deployer": "swarmapply.controllers.deployer:build",
    "migrator": "swarmapply.controllers.migrator:build",
    "nodes": "swarmapply.controllers.node_lifecycle:build",
    "pruner": "swarmapply.controllers.pruner:build",
}

#: Environment variable naming extra controllers: ``name=module:function,...``.
PLUGINS_ENV = "SWARMAPPLY_CONTROLLER_PLUGINS"


class ControllerUnavailable(PermanentError):
    """A selected controller's factory cannot be loaded (missing module, bad plugin entry)."""


def lease_name(controller: str) -> str:
    """The Lease a controller's instances campaign for: ``controller-<name>``."""
    return f"controller-{controller}"


def parse_plugins(text: str) -> dict[str, str]:
    """Parses the value of ``SWARMAPPLY_CONTROLLER_PLUGINS`` (pure).

    Args:
        text: ``name=module:function`` entries separated by commas; blanks are ignored.

    Returns:
        name -> ``module:function``.

    Raises:
        ValueError: An entry is malformed or names a built-in controller (the message quotes
            the entry).
    """
    plugins: dict[str, str] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        name, equals, target = (s.strip() for s in entry.partition("="))
        module, colon, function = target.partition(":")
        if not (name and equals and module and colon and function):
            raise ValueError(f"{PLUGINS_ENV}: {entry!r} is not name=module:function")
        if name in REGISTRY:
            raise ValueError(f"{PLUGINS_ENV}: {entry!r} redefines the built-in {name!r}")
        error = dns1123_label_error(lease_name(name))
        if error:
            raise ValueError(f"{PLUGINS_ENV}: {entry!r}: the lease name {error}")
        plugins[name] = target
    return plugins


def known_controllers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The built-in controllers plus the plugins the environment names.

    Raises:
        ControllerUnavailable: The plugin variable is malformed.
    """
    env = os.environ if environ is None else environ
    try:
        return {**REGISTRY, **parse_plugins(env.get(PLUGINS_ENV, ""))}
    except ValueError as exc:
        raise ControllerUnavailable(str(exc)) from exc


def select_names(names: Iterable[str] | None, known: Iterable[str]) -> list[str]:
    """The controllers to run, in order, without duplicates (pure).

    Args:
        names: The names asked for; None or empty for every known controller.
        known: The known names, in their listing order.

    Raises:
        ValueError: A name is unknown; the message lists the known ones.
    """
    known = list(known)
    chosen = list(dict.fromkeys(names or ()))
    if not chosen:
        return known
    unknown = [name for name in chosen if name not in known]
    if unknown:
        listed = ", ".join(known) or "none"
        words = "controllers" if len(unknown) > 1 else "controller"
        raise ValueError(f"unknown {words} {', '.join(map(repr, unknown))}; known: {listed}")
    return chosen


def load_factory(name: str, target: str) -> ControllerFactory:
    """Imports a factory named ``module:function``.

    Raises:
        ControllerUnavailable: It cannot be imported, or is not callable.
    """
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ControllerUnavailable(
            f"controller {name!r} cannot be loaded: {exc} (factory {target})"
        ) from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ControllerUnavailable(
            f"controller {name!r} cannot be loaded: {module_name} has no function {attribute!r}"
        )
    loaded: ControllerFactory = factory
    return loaded


def resolve_factories(
    names: Iterable[str] | None,
    factories: Mapping[str, ControllerFactory] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, ControllerFactory]:
    """The factories of the selected controllers.

    Args:
        names: Controller names; None or empty for all known ones.
        factories: Factories to choose from instead of the registry and plugins.
        environ: The environment the plugins are read from (default ``os.environ``).

    Raises:
        ValueError: An unknown name (the message lists the known ones).
        ControllerUnavailable: A selected controller cannot be loaded.
    """
    if factories is not None:
        return {name: factories[name] for name in select_names(names, factories)}
    known = known_controllers(environ)
    return {name: load_factory(name, known[name]) for name in select_names(names, known)}


class ControllerManager:
    """Runs controllers, each on its own thread under its own leader election."""

    def __init__(
        self,
        store: Store,
        names: Iterable[str] | None,
        settings: ControllerSettings,
        *,
        factories: Mapping[str, ControllerFactory] | None = None,
        identity: str | None = None,
        elect: bool = True,
        clock: Clock = time.monotonic,
    ) -> None:
        """Selects and loads the controllers; nothing runs until :meth:`run`.

        Args:
            store: The store every controller uses.
            names: Controllers to run; None or empty for all known ones.
            settings: Passed to every factory; its lease settings drive the elections.
            factories: Factories to choose from instead of the registry and plugins.
            identity: This manager's identity in every Lease; default one per process.
            elect: Campaign for Leases (False runs every controller unconditionally, for a
                store that only this process uses).
            clock: The monotonic clock of the electors.

        Raises:
            ValueError: An unknown controller name, or a bad identity.
            ControllerUnavailable: A selected controller cannot be loaded.
        """
        self.store = store
        self.settings = settings
        self.factories = resolve_factories(names, factories)
        self.elect = elect
        self.identity = default_identity() if identity is None else identity
        self.electors: dict[str, LeaderElector] = {
            name: LeaderElector(
                store,
                lease_name(name),
                self.identity,
                lease_duration=settings.lease_duration,
                renew_interval=settings.renew_interval,
                clock=clock,
            )
            for name in (self.factories if elect else ())
        }
        self._running: set[str] = set()
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        """The selected controllers, in order."""
        return list(self.factories)

    def running(self) -> list[str]:
        """The controllers running in this manager now."""
        with self._lock:
            return [name for name in self.factories if name in self._running]

    def run(self, stop: threading.Event) -> None:
        """Runs the controllers until ``stop`` is set; returns when all have shut down."""
        threads = [
            threading.Thread(
                target=self._campaign, args=(name, stop), name=f"controller-{name}", daemon=True
            )
            for name in self.factories
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # a timed join leaves the main thread free to take signals

    def _campaign(self, name: str, stop: threading.Event) -> None:
        """The thread of one controller: its election (or an unconditional loop)."""

        def lead(term_stop: threading.Event) -> None:
            self._lead(name, term_stop)

        while not stop.is_set():
            try:
                if self.elect:
                    self.electors[name].run(stop, lead)
                else:
                    lead(stop)
            except Exception:  # never let one controller end silently
                log.exception("controller %s: its loop failed; restarting it", name)
            if not stop.is_set():
                stop.wait(self.settings.renew_interval)

    def _report(self, name: str, controller: Runnable, term_stop: threading.Event) -> None:
        """Log the controller's counters every ``settings.stats_interval`` seconds."""
        interval = self.settings.stats_interval
        while interval and not term_stop.wait(interval):
            _log_summary(name, controller)

    def _lead(self, name: str, term_stop: threading.Event) -> None:
        """One term: build a fresh controller and run it until the term ends."""
        try:
            controller = self.factories[name](self.store, self.settings)
        except Exception:
            log.exception("controller %s: could not be created", name)
            return
        log.info("controller %s: running", name)
        with self._lock:
            self._running.add(name)
        reporter = threading.Thread(
            target=self._report, args=(name, controller, term_stop), daemon=True,
            name=f"{name}-counters",
        )  # fmt: skip
        reporter.start()
        try:
            controller.run(term_stop)
        except Exception:
            log.exception("controller %s: stopped by an error", name)
            return
        finally:
            with self._lock:
                self._running.discard(name)
            _log_summary(name, controller)
        if term_stop.is_set():
            log.info("controller %s: stopped", name)
        else:
            log.warning("controller %s: returned without being asked to stop", name)


def _log_summary(name: str, controller: Runnable) -> None:
    summary = getattr(controller, "summary", None)
    if callable(summary):
        log.info("controller %s: %s", name, summary())


def run_controllers(
    store: Store,
    names: Iterable[str] | None,
    settings: ControllerSettings,
    stop: threading.Event,
    *,
    factories: Mapping[str, ControllerFactory] | None = None,
    identity: str | None = None,
    elect: bool = True,
) -> None:
    """Runs controllers under leader election until ``stop`` is set (see the module docstring).

    Args:
        store: The store every controller uses.
        names: Controllers to run; None or empty for all known ones.
        settings: Passed to every factory; its lease settings drive the elections.
        stop: Set it to stop; the call returns once every controller has shut down.
        factories: Factories to choose from instead of the registry and plugins.
        identity: This process's identity in the Leases.
        elect: Campaign for Leases (False: run every controller unconditionally).

    Raises:
        ValueError: An unknown controller name.
        ControllerUnavailable: A selected controller cannot be loaded.
    """
    manager = ControllerManager(
        store, names, settings, factories=factories, identity=identity, elect=elect
    )
    manager.run(stop)


__all__ = [
    "PLUGINS_ENV",
    "REGISTRY",
    "ControllerFactory",
    "ControllerManager",
    "ControllerUnavailable",
    "Runnable",
    "known_controllers",
    "lease_name",
    "load_factory",
    "parse_plugins",
    "resolve_factories",
    "run_controllers",
    "select_names",
]
