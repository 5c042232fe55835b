"""``swarmapply delete``: delete objects named on the command line or by manifests.

Each object is deleted with one store call. An object with finalizers is only marked for
deletion (``metadata.deletionTimestamp``): it goes away when its owners remove their
finalizers. ``--force`` removes the finalizers first, without asking their owners; ``--wait``
follows the store's changes until every object named is gone.

What it guarantees: with ``-f`` every manifest is admitted before anything is deleted (an
invalid one deletes nothing); an object reported ``deleted`` was removed from the store, and
with the default ``--cascade=true`` so were the objects it owned that have no finalizers and
no other owner (``--cascade=false`` keeps them, without the reference to the owner).

What it does not guarantee: the deletions of several objects are independent (a missing
object is reported and the others are still deleted); ``--wait`` and ``--force`` apply to the
objects named, not to their dependents, which may still be marked for deletion when the
command ends.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from swarmapply.api.admission import admit_paths
from swarmapply.api.store import Conflict, NotFound, Object, Store
from swarmapply.cli.apply import add_file_arguments
from swarmapply.cli.context import Context
from swarmapply.cli.output import ref
from swarmapply.cli.wait import (
    DEFAULT_TIMEOUT,
    Condition,
    parse_duration,
    parse_targets,
    wait_for,
)
from swarmapply.errors import PermanentError

EXAMPLES = """examples:
  swarmapply delete job hello                      delete a job and, through owner
                                                   references, its tasks
  swarmapply delete job/hello job/other            the KIND/NAME form
  swarmapply delete -f job.yaml                    the objects a manifest names
  swarmapply delete -f manifests/ -R --wait        and wait until they are gone
  swarmapply delete job hello --cascade=false      keep (orphan) the job's tasks
  swarmapply delete job hello --force              remove finalizers first (their owners
                                                   get no chance to clean up)
  swarmapply delete job gone --ignore-not-found    no error if it does not exist

Exit status: 0 when every object was deleted or marked for deletion, 1 when one was missing
(without --ignore-not-found), on a --wait timeout or another error, 2 on bad usage.
"""

#: How often --force re-reads and retries when the object changes while finalizers are removed.
CONFLICT_RETRIES = 5


class DeleteError(PermanentError):
    """What was asked cannot be deleted (for example a manifest with no name)."""


def targets_from_files(
    paths: Sequence[str], recursive: bool, stdin: TextIO
) -> list[tuple[str, str]]:
    """The objects manifests name, admitted first as ``apply`` admits them.

    Args:
        paths: Files, directories or ``-`` (stdin).
        recursive: Whether to descend into subdirectories.
        stdin: The stream ``-`` reads.

    Returns:
        ``(kind, name)`` pairs in manifest order, duplicates dropped.

    Raises:
        AdmissionError: A manifest is unreadable or invalid.
        DeleteError: A manifest names its object only by ``generateName``.
    """
    pairs: list[tuple[str, str]] = []
    for item in admit_paths(paths, recursive, stdin):
        name = item.obj["metadata"].get("name")
        if not name:
            raise DeleteError(
                f"{item.source}: document {item.document + 1}: the {item.obj['kind']} has no "
                "metadata.name (only generateName), so it names no object to delete; "
                "nothing was deleted"
            )
        pairs.append((item.obj["kind"], name))
    return list(dict.fromkeys(pairs))


def remove_finalizers(
    store: Store, kind: str, name: str, warn: Callable[[str], None]
) -> Object | None:
    """Removes every finalizer of an object, retrying when it changes meanwhile.

    Args:
        store: The store.
        kind: The object's kind.
        name: The object's name.
        warn: Called once with a warning line when there are finalizers to remove.

    Returns:
        The object's last state when removing the finalizers removed it (it was already
        marked for deletion), else None.

    Raises:
        NotFound: The object does not exist.
        Conflict: It kept changing for :data:`CONFLICT_RETRIES` attempts.
    """
    warned = False
    for _ in range(CONFLICT_RETRIES):
        live = store.get(kind, name)
        finalizers = live["metadata"].get("finalizers") or []
        if not finalizers:
            return None
        if not warned:
            warn(
                f"warning: removing finalizers [{', '.join(finalizers)}] from {ref(kind, name)} "
                "without waiting for their owners"
            )
            warned = True
        wanted = copy.deepcopy(live)
        del wanted["metadata"]["finalizers"]
        try:
            result = store.update(wanted)
        except Conflict:
            continue
        return result if live["metadata"].get("deletionTimestamp") else None
    raise Conflict(kind, name, "(latest)", "(changing faster than delete --force could follow)")


def delete_one(
    store: Store, kind: str, name: str, *, cascade: bool, force: bool, warn: Callable[[str], None]
) -> Object:
    """Deletes one object (after removing its finalizers when ``force``).

    Args:
        store: The store.
        kind: The object's kind.
        name: The object's name.
        cascade: Whether objects it owns are deleted with it (else they are orphaned).
        force: Whether to remove its finalizers first.
        warn: Where ``force`` reports the finalizers it removes.

    Returns:
        The object's last state: with finalizers left it is only marked for deletion.

    Raises:
        NotFound: The object does not exist.
    """
    if force:
        gone = remove_finalizers(store, kind, name, warn)
        if gone is not None:
            return gone
    return store.delete(kind, name, cascade=cascade)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds the ``delete`` command to the command parsers."""
    parser = commands.add_parser(
        "delete",
        help="delete objects by name or by manifest",
        description="Delete objects named on the command line (KIND NAME... or KIND/NAME...)\n"
        "or by manifests (-f). Objects with finalizers are marked for deletion and go away\n"
        "when the finalizers are removed.",
        epilog=EXAMPLES,
        **kw,
    )
    parser.add_argument("kind", nargs="?", help="job(s), task(s), node(s)/no, ... or KIND/NAME")
    parser.add_argument("names", nargs="*", help="object names")
    add_file_arguments(parser, required=False)
    parser.add_argument(
        "--cascade",
        default="true",
        type=str.lower,
        choices=("true", "false"),
        help="true (default): delete the objects each one owns; false: keep them, unowned",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="remove finalizers first, without waiting for their owners (prints a warning)",
    )
    parser.add_argument(
        "--wait", action="store_true", help="return only when every object is really gone"
    )
    parser.add_argument(
        "--timeout",
        type=parse_duration,
        default=DEFAULT_TIMEOUT,
        metavar="DURATION",
        help="with --wait, give up after this long: seconds, or 30s, 5m, 1h (default 60s)",
    )
    parser.add_argument(
        "--ignore-not-found",
        action="store_true",
        help="a missing object is not an error (and is not reported)",
    )
    parser.set_defaults(handler=run, usage_error=parser.error)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Runs ``swarmapply delete``; returns 1 when an object was missing, else 0."""
    words = [args.kind, *args.names] if args.kind else []
    if args.filename:
        if words:
            args.usage_error("give KIND NAME... or -f PATH, not both")
            return 2
        targets = targets_from_files(args.filename, args.recursive, ctx.stdin)
    elif not words:
        args.usage_error("give KIND NAME [NAME ...], KIND/NAME [KIND/NAME ...] or -f PATH")
        return 2
    else:
        try:
            targets = parse_targets(words)
        except ValueError as exc:
            args.usage_error(f"{exc}; or -f PATH")
            return 2
    store = ctx.store()
    missing = False
    marked: list[tuple[str, str]] = []
    for kind, name in targets:
        try:
            last = delete_one(
                store, kind, name, cascade=args.cascade == "true", force=args.force, warn=ctx.err
            )
        except NotFound as exc:
            if not args.ignore_not_found:
                ctx.err(f"error: {exc}")
                missing = True
            continue
        finalizers = last["metadata"].get("finalizers") or []
        if finalizers:
            ctx.out(f"{ref(kind, name)} marked for deletion (finalizers: {', '.join(finalizers)})")
            marked.append((kind, name))
        else:
            ctx.out(f"{ref(kind, name)} deleted")
    if args.wait and marked:
        wait_for(
            store,
            marked,
            Condition("delete").check,
            args.timeout,
            lambda kind, name: ctx.out(f"{ref(kind, name)} deleted"),
        )
    return 1 if missing else 0
