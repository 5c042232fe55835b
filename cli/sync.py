"""``swarmapply sync DIR``: keep the store equal to a directory of manifests (GitOps).

One *pass* reads every manifest under DIR (recursive; ``.yaml``, ``.yml``, ``.json``; hidden
files and editor leftovers skipped), admits each file on its own, and applies every object of
every valid file with apply's three-way merge, marking it as the source's
(:mod:`.sync_plan`). A file that fails is reported (file, document, field path) and skipped:
what it produced before is neither changed nor pruned. With ``--prune``, owned objects that no
file defines any more are deleted, behind a mass-deletion guard. An object changed or deleted
out of band is put back, with a ``DriftRepaired`` Event on it.

Without ``--watch`` one pass runs and the exit code is apply's: 0, or 1 when anything failed.
With ``--watch`` (:mod:`.sync_watch`) a pass runs at start, about a second after files change
(debounced), and every ``--interval`` seconds; a store outage is retried with exponential
backoff; SIGTERM or SIGINT ends it after the pass under way. It sleeps between passes.

Not guaranteed: atomicity across objects (each is written on its own, as apply does), or
noticing an out-of-band deletion that happened before this process started (the object is
then reported ``created``).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tenacity import wait_exponential

from swarmapply.api.admission import AdmissionError, AdmittedObject, manifest_files
from swarmapply.api.kinds import KINDS
from swarmapply.api.merge import configuration, last_applied
from swarmapply.api.selectors import Requirement, parse_label_selector
from swarmapply.api.store import AlreadyExists, Conflict, NotFound, Object, Store
from swarmapply.cli.apply import CONFLICT_RETRIES, ApplyError, admitted_for_apply, planned
from swarmapply.cli.context import Context
from swarmapply.cli.output import ref
from swarmapply.cli.serving import serving
from swarmapply.cli.sync_plan import (
    SOURCE_LABEL,
    Desired,
    SyncPlan,
    file_of,
    foreign_owner,
    key_of,
    marked,
    outcome,
    plan_pass,
    source_id,
)
from swarmapply.cli.sync_watch import DirectoryEvents
from swarmapply.cli.usage import seconds_type
from swarmapply.controllers.events import record_event
from swarmapply.controllers.workqueue import strategy_delay
from swarmapply.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)

EXAMPLES = """examples:
  swarmapply sync jobs/                       apply every manifest under jobs/ once
  swarmapply sync jobs/ --prune --dry-run     what a pass would create, change and delete
  swarmapply sync jobs/ --watch --prune       keep the cluster equal to jobs/ (a service)
  swarmapply sync jobs/ --watch --interval 30 -l team=ml

Objects are labelled swarmapply.io/sync-source=<id> (see: swarmapply get jobs -l
swarmapply.io/sync-source) and annotated with their file. See docs/gitops.md.
"""

#: The component named on the Events a sync records.
COMPONENT = "sync"
#: Default seconds between passes when no file changes.
DEFAULT_INTERVAL = 60.0
#: Backoff after a failed pass (the store unreachable): 0.5 s doubling up to 30 s.
RETRY = wait_exponential(multiplier=0.5, max=30.0)
#: The longest sleep between two checks of the stop flag.
TICK = 1.0


class SyncError(PermanentError):
    """The source directory cannot be synced at all (missing, unreadable)."""


@dataclass(frozen=True)
class SyncOptions:
    """What a sync does.

    Attributes:
        directory: The source directory.
        source: The source's id (the value of its label).
        prune: Delete owned objects no file defines any more.
        force_prune: Prune past the mass-deletion guard.
        adopt: Take over objects with the same name that no source owns.
        selector: Only objects whose labels match are applied and pruned.
        dry_run: Say what would happen, write nothing.
    """

    directory: str
    source: str
    prune: bool = False
    force_prune: bool = False
    adopt: bool = False
    selector: tuple[Requirement, ...] = ()
    dry_run: bool = False


@dataclass
class PassReport:
    """What one pass did: a count per action (``created``, ``pruned``, ``failed``...)."""

    counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def errors(self) -> int:
        """Files, objects or guards that failed."""
        return self.counts["failed"] + self.counts["refused"]

    def summary(self, dry_run: bool) -> str:
        order = ("created", "recreated", "configured", "repaired", "unchanged", "pruned", "kept")
        parts = [f"{self.counts[k]} {k}" for k in order if self.counts[k]]
        if self.counts["failed"]:
            parts.append(f"{self.counts['failed']} failed")
        if self.counts["refused"]:
            parts.append("prune refused")
        done = ", ".join(parts) or "nothing to do"
        return f"{done} in {self.seconds:.2f}s{' (dry run)' if dry_run else ''}"


def read_directory(directory: str, source: str) -> tuple[list[Desired], dict[str, list[str]]]:
    """Admit every manifest under ``directory`` file by file.

    Returns:
        The objects of the valid files (marked as the source's), and for each failed file
        (relative path) its error lines.

    Raises:
        SyncError: The directory cannot be listed.
    """
    try:
        files = manifest_files(directory, recursive=True)
    except OSError as exc:
        raise SyncError(f"{directory}: cannot list directory: {exc.strerror or exc}") from exc
    desired: list[Desired] = []
    failed: dict[str, list[str]] = {}
    for path in files:
        relative = os.path.relpath(path, directory)
        try:
            admitted: list[AdmittedObject] = admitted_for_apply([path], False, io.StringIO())
        except ApplyError:
            admitted = []  # a file without objects (all commented out): it defines nothing
        except AdmissionError as exc:
            failed[relative] = [str(error) for error in exc.errors]
            continue
        desired += [Desired(relative, marked(item, source, relative)) for item in admitted]
    return desired, failed


class Syncer:
    """Runs passes of one source against one store.

    Args:
        store: Opens (or returns the open) store; called at every use, so that a store that
            was down when the sync started is opened once it answers.
        options: What to sync and how.
        out: Prints an action or summary line.
        err: Prints an error line.
        print_unchanged: Print a line for each unchanged object too (a one-shot sync does; a
            watching one only counts them).
    """

    def __init__(
        self,
        store: Callable[[], Store],
        options: SyncOptions,
        out: Callable[[str], None],
        err: Callable[[str], None],
        *,
        print_unchanged: bool = True,
    ) -> None:
        self._store = store
        self.options = options
        self.out = out
        self.err = err
        self.print_unchanged = print_unchanged
        self._known: set[tuple[str, str]] = set()

    @property
    def store(self) -> Store:
        """The store."""
        return self._store()

    def owned(self) -> list[Object]:
        """Every object in the store labelled as this source's."""
        selector = f"{SOURCE_LABEL}={self.options.source}"
        return [o for kind in KINDS for o in self.store.list(kind, label_selector=selector).items]

    def run_pass(self) -> PassReport:
        """One pass: read, plan, apply, prune; prints a line per action.

        Raises:
            SyncError: The directory cannot be listed (nothing is done).
            TemporaryError: The store failed (the pass stopped where it was; run it again).
        """
        started = time.monotonic()
        report = PassReport()
        desired, failed = read_directory(self.options.directory, self.options.source)
        for file, errors in failed.items():
            for line in errors:
                self.err(f"error: {line}")
            self.err(f"error: {file}: skipped; the objects it defined are left as they are")
            report.counts["failed"] += 1
        owned = self.owned()
        self._known |= {key_of(o) for o in owned}
        plan = plan_pass(
            desired,
            failed,
            owned,
            selector=self.options.selector,
            prune=self.options.prune,
            force_prune=self.options.force_prune,
        )
        self._carry_out(plan, report)
        report.seconds = time.monotonic() - started
        return report

    def _carry_out(self, plan: SyncPlan, report: PassReport) -> None:
        for file, problem in plan.problems:
            self.err(f"error: {file}: {problem}")
            report.counts["failed"] += 1
        for desired in plan.apply:
            report.counts[self._apply(desired)] += 1
        report.counts["kept"] += len(plan.kept)
        if plan.guard is not None:
            self.err(f"error: {plan.guard}")
            report.counts["refused"] += 1
        for obj in plan.prune:
            report.counts[self._prune(obj)] += 1

    def _suffix(self, file: str | None) -> str:
        return f" ({file}){' (dry run)' if self.options.dry_run else ''}"

    def _apply(self, desired: Desired) -> str:
        item, key = desired.item, desired.key
        name = ref(*key)
        config = configuration(item.config or item.obj)
        for _ in range(CONFLICT_RETRIES):
            live, want = planned(self.store, item)
            problem = foreign_owner(live, self.options.source, self.options.adopt)
            if problem is not None:
                self.err(f"error: {name} {problem} ({desired.file})")
                return "failed"
            last = last_applied(live) if live is not None else None
            action = outcome(live, want, last, config, key in self._known)
            if action == "unchanged" or self.options.dry_run:
                self._say(f"{name} {action}{self._suffix(desired.file)}", action)
                return action
            try:
                written = self.store.create(want) if live is None else self.store.update(want)
            except (Conflict, AlreadyExists, NotFound):
                continue  # written by someone meanwhile: plan again from what is there now
            except PermanentError as exc:  # the store refused the object itself
                self.err(f"error: {name} ({desired.file}): {exc}")
                return "failed"
            self._known.add(key)
            if action in ("repaired", "recreated"):
                self._drift_event(written, action, desired.file)
            self._say(f"{name} {action}{self._suffix(desired.file)}", action)
            return action
        self.err(f"error: {name} ({desired.file}): changing faster than sync could follow")
        return "failed"

    def _say(self, line: str, action: str) -> None:
        if action != "unchanged" or self.print_unchanged:
            self.out(line)

    def _drift_event(self, obj: Object, action: str, file: str) -> None:
        what = "deleted" if action == "recreated" else "changed"
        message = (
            f"{obj['kind']} {obj['metadata']['name']} was {what} out of band; put back as "
            f"{file} in sync source {self.options.source} says"
        )
        record_event(self.store, obj, "DriftRepaired", message, component=COMPONENT)

    def _prune(self, obj: Mapping[str, Any]) -> str:
        kind, name = key_of(obj)
        line = f"{ref(kind, name)} pruned{self._suffix(file_of(obj))}"
        if self.options.dry_run:
            self.out(line)
            return "pruned"
        version = str(obj["metadata"].get("resourceVersion") or "") or None
        try:
            self.store.delete(kind, name, resource_version=version)
        except NotFound:
            pass  # deleted meanwhile: what pruning wanted
        except Conflict:
            self.err(f"error: {ref(kind, name)} changed while being pruned: next pass")
            return "failed"
        self._known.discard((kind, name))
        self.out(line)
        return "pruned"


def watch(
    syncer: Syncer,
    stop: threading.Event,
    interval: float,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run passes until ``stop``: at start, after file changes (debounced), every ``interval``.

    A pass that fails on the store is tried again after an exponential backoff; one that
    cannot list the directory waits for the next change or interval.
    """
    wake = threading.Event()
    events = DirectoryEvents(syncer.options.directory, wake.set, clock)
    events.start()
    try:
        next_pass, failures, reason = clock(), 0, "start"
        while not stop.is_set():
            wake.clear()  # before reading due: an event from now on cuts the wait short
            due = events.due_at()
            now = clock()
            if due is not None and due <= now:
                reason = f"{events.take()} file events"
            elif next_pass > now:
                wait = min(next_pass, due if due is not None else next_pass) - now
                wake.wait(min(TICK, max(wait, 0.0)))
                continue
            failures = _one_pass(syncer, reason, failures)
            delay = strategy_delay(RETRY, failures) if failures else interval
            next_pass, reason = clock() + delay, "interval" if not failures else "retry"
    finally:
        events.stop()


def _one_pass(syncer: Syncer, reason: str, failures: int) -> int:
    """Run one watched pass; returns the consecutive failures after it."""
    try:
        report = syncer.run_pass()
    except TemporaryError as exc:
        log.warning("sync pass (%s) stopped: %s; retrying with backoff", reason, exc)
        return failures + 1
    except SyncError as exc:
        log.error("sync pass (%s): %s; next pass at the next change or interval", reason, exc)
        return 0
    except Exception:  # a bug or an unforeseen store error: logged, retried, never fatal
        log.exception("sync pass (%s) failed; retrying with backoff", reason)
        return failures + 1
    syncer.out(f"sync {syncer.options.source} ({reason}): {report.summary(syncer.options.dry_run)}")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    parser = commands.add_parser(
        "sync",
        help="keep the cluster equal to a directory of manifests (GitOps)",
        description="Apply every manifest under DIR; with --prune delete what this directory "
        "applied before and no longer defines; with --watch keep doing it as files change. "
        "A file that fails to parse or validate is reported and skipped: what it applied "
        "before stays as it is.",
        epilog=EXAMPLES,
        **kw,
    )
    parser.add_argument("directory", metavar="DIR", help="the directory of manifests")
    parser.add_argument("--watch", action="store_true", help="keep syncing as files change")
    parser.add_argument(
        "--prune", action="store_true", help="delete objects this directory no longer defines"
    )
    parser.add_argument(
        "--force-prune",
        action="store_true",
        help="prune even when a pass would delete more than half of this directory's objects",
    )
    parser.add_argument(
        "--interval",
        type=seconds_type(positive=True),
        default=DEFAULT_INTERVAL,
        help=f"seconds between passes when nothing changes (--watch; {DEFAULT_INTERVAL:g})",
    )
    parser.add_argument("-l", "--selector", help="only objects with these labels, e.g. team=ml")
    parser.add_argument("--dry-run", action="store_true", help="say what would happen only")
    parser.add_argument(
        "--source",
        help="the source id to label objects with (default: a hash of DIR's real path); "
        "give one to keep ownership when the checkout moves",
    )
    parser.add_argument(
        "--adopt", action="store_true", help="take over same-named objects no source owns"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context, stop: threading.Event | None = None) -> int:
    if not os.path.isdir(args.directory):
        raise SyncError(f"{args.directory}: not a directory")
    options = SyncOptions(
        directory=args.directory,
        source=args.source or source_id(args.directory),
        prune=args.prune or args.force_prune,
        force_prune=args.force_prune,
        adopt=args.adopt,
        selector=parse_label_selector(args.selector),
        dry_run=args.dry_run,
    )
    if not args.watch:
        syncer = Syncer(ctx.store, options, ctx.out, ctx.err)
        report = syncer.run_pass()
        ctx.out(f"sync {options.source}: {report.summary(options.dry_run)}")
        return 1 if report.errors else 0
    stop = stop or threading.Event()
    with serving(ctx, stop) as logger:
        logger.info("sync: watching %s as source %s", args.directory, options.source)
        syncer = Syncer(ctx.store, options, ctx.out, ctx.err, print_unchanged=False)
        watch(syncer, stop, args.interval)
        logger.info("sync: stopped")
    return 0
