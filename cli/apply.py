"""``swarmapply apply``: make the store hold what the manifests say.

Every document is admitted first (parsed, converted, defaulted, validated); when any is
invalid every problem is printed and nothing is written. Then each object is created, or its
desired part (labels, annotations and everything outside metadata and status) is replaced.
Status belongs to controllers and is never written by apply.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from typing import Any

from swarmapply.api.admission import AdmittedObject, admit_paths
from swarmapply.api.kinds import kind_info
from swarmapply.api.store import Conflict, NotFound, Store
from swarmapply.api.store.lifecycle import desired_part
from swarmapply.cli.context import Context

#: How often apply re-reads and retries when a controller wrote the object meanwhile.
CONFLICT_RETRIES = 5


def merged(live: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """The live object with the manifest's desired part, labels and annotations."""
    result = copy.deepcopy(live)
    for key in list(desired_part(result)):
        del result[key]
    result.update(copy.deepcopy(desired_part(desired)))
    for field in ("labels", "annotations"):
        if field in desired["metadata"]:
            result["metadata"][field] = copy.deepcopy(desired["metadata"][field])
        else:
            result["metadata"].pop(field, None)
    return result


def apply_one(store: Store, obj: dict[str, Any], dry_run: bool) -> str:
    """Create or update one admitted object; returns what happened (``created``...)."""
    kind = obj["kind"]
    name = obj["metadata"].get("name")
    for _ in range(CONFLICT_RETRIES):
        try:
            live = store.get(kind, name) if name else None
        except NotFound:
            live = None
        if live is None:
            if not dry_run:
                obj = store.create(obj)
            return f"{_ref(obj)} created"
        want = merged(live, obj)
        if want == live:
            return f"{_ref(live)} unchanged"
        if dry_run:
            return f"{_ref(live)} configured"
        try:
            store.update(want)
        except Conflict:
            continue
        return f"{_ref(live)} configured"
    raise Conflict(kind, str(name), "(latest)", "(changing faster than apply could follow)")


def apply_all(store: Store, admitted: Sequence[AdmittedObject], dry_run: bool) -> list[str]:
    """Apply objects in order; one line per object, kubectl style."""
    suffix = " (dry run)" if dry_run else ""
    return [apply_one(store, item.obj, dry_run) + suffix for item in admitted]


def _ref(obj: dict[str, Any]) -> str:
    name = obj["metadata"].get("name") or obj["metadata"].get("generateName", "") + "*"
    return f"{kind_info(obj['kind']).singular}.swarmapply.io/{name}"


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


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: object) -> None:
    parser = commands.add_parser(
        "apply",
        help="create or update objects from manifests",
        description="Create or update objects from manifests. Every document is admitted "
        "first; if any is invalid, every problem is printed and nothing is written.",
        **kw,  # type: ignore[arg-type]
    )
    add_file_arguments(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would happen, write nothing"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    admitted = admit_paths(args.filename, args.recursive, ctx.stdin)
    for line in apply_all(ctx.store(), admitted, args.dry_run):
        ctx.out(line)
    return 0
