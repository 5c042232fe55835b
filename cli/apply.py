"""``swarmapply apply``: make the store hold what the manifests say.

Every document is admitted first (parsed, converted, defaulted, validated); when any is
invalid every problem is printed and nothing is written. Each object is then created, or
three-way merged (:mod:`swarmapply.api.merge`): what the manifest sets is set, what the
previous apply set and the manifest no longer has is removed, and what others wrote (status,
fields controllers own) is left alone. The configuration applied is kept in an annotation
for the next apply. Not atomic across objects: each object is written on its own.

RESTfulSwarm requests to act are accepted too: a migration (or a group of them) becomes one
Migration each, a checkpoint one Checkpoint per container, an update a resize of the task's
entry in its Job (as ``swarmapply update task``). They are resolved against the store (which
Task a container is, where it runs) before anything is written, and a request that does not
fit the cluster is reported at its document's field like any invalid input. Migrations and
Checkpoints made from requests get names derived from the request, so applying the same file
again reports them unchanged instead of acting twice.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from swarmapply.api.admission import (
    AdmissionError,
    AdmittedObject,
    AdmittedRequest,
    FieldError,
    admit_paths,
    admit_paths_requests,
)
from swarmapply.api.merge import configuration, last_applied, three_way_merge, with_last_applied
from swarmapply.api.normalize import normalize
from swarmapply.api.store import Conflict, NotFound, Store
from swarmapply.cli.checkpoint import resolve_checkpoint_request
from swarmapply.cli.context import Context
from swarmapply.cli.migrate import resolve_migration_request
from swarmapply.cli.output import ref
from swarmapply.cli.update import resolve_update_request
from swarmapply.errors import PermanentError

EXAMPLES = """examples:
  swarmapply apply -f job.yaml              one manifest (swarmapply -f job.yaml is the same)
  swarmapply apply -f jobs/ -R              every *.yaml, *.yml, *.json below jobs/
  swarmapply apply -f a.yaml -f b.json      several files; all are checked before any is applied
  cat job.json | swarmapply apply -f -      from standard input (RESTfulSwarm documents too)
  swarmapply apply -f jobs/ --dry-run       what would be created or configured
"""

#: How often apply re-reads and retries when a controller wrote the object meanwhile.
CONFLICT_RETRIES = 5


def planned(store: Store, item: AdmittedObject) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The live object (None if absent) and what apply would make of it.

    The merge works on what the manifest itself sets (``item.config``); defaults are filled in
    afterwards only where the merged object has no value, so a field someone else set is not
    reset to its default by a manifest that never mentioned it.
    """
    config = with_last_applied(configuration(item.config or item.obj))
    name = item.obj["metadata"].get("name")
    live = None
    if name:
        with contextlib.suppress(NotFound):
            live = store.get(item.obj["kind"], name)
    if live is None:
        return None, normalize(config)[0]
    return live, normalize(three_way_merge(last_applied(live), config, live))[0]


def apply_one(store: Store, item: AdmittedObject, dry_run: bool) -> str:
    """Create or merge one admitted object; returns what happened (``created``...)."""
    obj = item.obj
    for _ in range(CONFLICT_RETRIES):
        live, want = planned(store, item)
        if live is None:
            if not dry_run:
                want = store.create(want)
            return f"{ref(want['kind'], want['metadata']['name'])} created"
        if want == live:
            return f"{ref(live['kind'], live['metadata']['name'])} unchanged"
        if dry_run:
            return f"{ref(live['kind'], live['metadata']['name'])} configured"
        try:
            store.update(want)  # carries live's resourceVersion: compare-and-swap
        except Conflict:
            continue
        return f"{ref(live['kind'], live['metadata']['name'])} configured"
    raise Conflict(
        obj["kind"],
        str(obj["metadata"].get("name")),
        "(latest)",
        "(changing faster than apply could follow)",
    )


def apply_all(store: Store, admitted: Sequence[AdmittedObject], dry_run: bool) -> Iterator[str]:
    """Apply objects in order, yielding one line per object as soon as it is written."""
    suffix = " (dry run)" if dry_run else ""
    for item in admitted:
        yield apply_one(store, item, dry_run) + suffix


def admitted_for_apply(
    paths: Sequence[str], recursive: bool, stdin: TextIO
) -> list[AdmittedObject]:
    """Admit manifests for apply or diff: named objects only, and at least one.

    Raises:
        AdmissionError: an invalid document, or one that has only ``metadata.generateName``
            (apply could never find that object again, so each apply would make another).
        ApplyError: the paths hold no object at all.
    """
    admitted = admit_paths(paths, recursive, stdin)
    _check_named(admitted, paths)
    return admitted


def admitted_with_requests(
    paths: Sequence[str], recursive: bool, stdin: TextIO
) -> list[AdmittedObject | AdmittedRequest]:
    """As :func:`admitted_for_apply`, also accepting RESTfulSwarm requests to act.

    Raises:
        AdmissionError: see :func:`admitted_for_apply`.
        ApplyError: the paths hold no object or request at all.
    """
    admitted = admit_paths_requests(paths, recursive, stdin)
    _check_named(admitted, paths)
    return admitted


def _check_named(
    admitted: Sequence[AdmittedObject | AdmittedRequest], paths: Sequence[str]
) -> None:
    unnamed = [
        FieldError(item.source, item.document, "metadata.name",
                   "apply needs a name (generateName makes a new object on every apply)")
        for item in admitted
        if isinstance(item, AdmittedObject) and not item.obj["metadata"].get("name")
    ]  # fmt: skip
    if unnamed:
        raise AdmissionError(unnamed)
    if not admitted:
        raise ApplyError(f"no objects found in {', '.join(paths)}")


#: One step of apply: an object to create or merge, or a line already decided (a request
#: whose object exists), or an update request to carry out.
Step = AdmittedObject | AdmittedRequest | str


def resolve_requests(
    store: Store, admitted: Sequence[AdmittedObject | AdmittedRequest]
) -> list[Step]:
    """Resolves every RESTfulSwarm request against the store before anything is written.

    Returns:
        The steps in input order: objects as they are; a migration or checkpoint request as
        the object it makes (or, when that exists already, its ``unchanged`` line); an
        update request as it is (checked here, carried out by :func:`run_steps`).

    Raises:
        AdmissionError: Every request that does not fit the cluster, each at its field.
    """
    steps: list[Step] = []
    errors: list[FieldError] = []
    for item in admitted:
        if isinstance(item, AdmittedObject):
            steps.append(item)
            continue
        try:
            if item.kind == "update":
                resolve_update_request(store, item, dry_run=True)
                steps.append(item)
                continue
            resolve = (
                resolve_migration_request if item.kind == "migration"
                else resolve_checkpoint_request
            )  # fmt: skip
            obj, exists = resolve(store, item)
        except AdmissionError as exc:
            errors += exc.errors
            continue
        if exists:
            steps.append(f"{ref(obj['kind'], obj['metadata']['name'])} unchanged")
        else:
            steps.append(AdmittedObject(item.source, item.document, obj, "restfulswarm", obj))
    if errors:
        raise AdmissionError(errors)
    return steps


def run_steps(store: Store, steps: Sequence[Step], dry_run: bool) -> Iterator[str]:
    """Carries out resolved steps in order, yielding one line per step as it is done."""
    suffix = " (dry run)" if dry_run else ""
    for step in steps:
        if isinstance(step, str):
            yield step + suffix
        elif isinstance(step, AdmittedObject):
            yield apply_one(store, step, dry_run) + suffix
        else:
            result = resolve_update_request(store, step, dry_run=dry_run)
            job = ref("Job", result.job)
            if result.changes:
                yield f"{job} configured (task {result.task}: {', '.join(result.changes)}){suffix}"
            else:
                yield f"{job} unchanged{suffix}"


class ApplyError(PermanentError):
    """Apply was given nothing to do."""


def add_file_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``-f PATH`` (repeatable) and ``-R``, as apply, diff and delete take them."""
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        required=required,
        metavar="PATH",
        help="a file, a directory (*.yaml, *.yml, *.json) or - for stdin; repeatable",
    )
    parser.add_argument("-R", "--recursive", action="store_true", help="descend into directories")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    parser = commands.add_parser(
        "apply",
        help="create or update objects from manifests",
        description="Create or update objects from manifests. Every document is admitted "
        "first; if any is invalid, every problem is printed and nothing is written. Apply "
        "merges against the configuration it last applied: fields removed from a file are "
        "removed, fields others wrote are kept.",
        epilog=EXAMPLES,
        **kw,
    )
    add_file_arguments(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would happen, write nothing"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    admitted = admitted_with_requests(args.filename, args.recursive, ctx.stdin)
    store = ctx.store()
    steps = resolve_requests(store, admitted)
    for line in run_steps(store, steps, args.dry_run):
        ctx.out(line)
    return 0
