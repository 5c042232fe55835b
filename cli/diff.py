"""``swarmapply diff``: what ``apply`` would change, as a unified diff of YAML.

For each object in the manifests, the live object is compared with what apply would make of
it (the same three-way merge apply uses). Exit 0: no differences; 1: differences; 2 (or more):
an error, such as an invalid manifest or an unreachable store. Writes nothing.
"""

from __future__ import annotations

import argparse
import difflib
from typing import Any

import yaml

from swarmapply.cli.apply import add_file_arguments, admitted_for_apply, planned
from swarmapply.cli.context import Context
from swarmapply.cli.output import ref
from swarmapply.errors import SwarmapplyError

EXAMPLES = """examples:
  swarmapply diff -f job.yaml            what applying job.yaml would change
  swarmapply diff -f jobs/ -R && echo "cluster matches jobs/"
exit status: 0 no differences, 1 differences, 2 an error
"""

#: diff's own exit code for errors (0 and 1 mean "same" and "different").
ERROR = 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    parser = commands.add_parser(
        "diff",
        help="show what apply would change",
        description="Show, as a unified diff, how applying the manifests would change the "
        "live objects. Writes nothing.",
        epilog=EXAMPLES,
        **kw,
    )
    add_file_arguments(parser)
    parser.set_defaults(handler=run, read_only=True)


def _yaml(obj: dict[str, Any] | None) -> list[str]:
    if obj is None:
        return []
    return yaml.safe_dump(obj, sort_keys=True, allow_unicode=True).splitlines(keepends=True)


def object_diff(live: dict[str, Any] | None, want: dict[str, Any]) -> str:
    """A unified diff from the live object to the wanted one (empty when equal)."""
    name = ref(want["kind"], want["metadata"]["name"])
    lines = difflib.unified_diff(
        _yaml(live), _yaml(want), fromfile=f"live/{name}", tofile=f"applied/{name}"
    )
    return "".join(lines)


def run(args: argparse.Namespace, ctx: Context) -> int:
    try:
        admitted = admitted_for_apply(args.filename, args.recursive, ctx.stdin)
        store = ctx.store()  # a new store: everything would be created
        texts = [object_diff(*planned(store, item)) for item in admitted]
    except SwarmapplyError as exc:
        errors = getattr(exc, "errors", None) or [exc]
        for error in errors:
            ctx.err(f"error: {error}")
        return ERROR
    except Exception as exc:  # diff's 1 means "different": never let a failure look like it
        if ctx.debug:
            raise
        ctx.err(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)")
        return ERROR
    changed = [text for text in texts if text]
    for text in changed:
        ctx.out(text.rstrip("\n"))
    return 1 if changed else 0
