"""The ``swarmapply`` command line: apply manifests and query the store.

``swarmapply -f PATH`` is short for ``swarmapply apply -f PATH``. Exit codes: 0 success,
1 invalid input or a failed operation (the message says what and where), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from swarmapply import __version__
from swarmapply.api.admission import AdmissionError, admit_paths
from swarmapply.api.kinds import resolve_kind
from swarmapply.api.store import NotFound, open_store
from swarmapply.cli.apply import apply_all
from swarmapply.cli.config import STORE_ENV, store_url
from swarmapply.cli.output import render
from swarmapply.errors import SwarmapplyError

EXAMPLES = """examples:
  swarmapply -f job.yaml                 apply one manifest
  swarmapply -f manifests/ -R            apply a directory tree
  cat job.json | swarmapply -f -         apply from standard input
  swarmapply get jobs                    list jobs as a table
  swarmapply get job hello -o yaml       one job as YAML
"""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store",
        metavar="URL",
        help=f"store URL (sqlite:///path or mongodb://host/db); default ${STORE_ENV}, "
        "else ~/.local/state/swarmapply/state.db",
    )
    parser = argparse.ArgumentParser(
        prog="swarmapply",
        description="Declarative control plane for core-pinned container jobs on Docker Swarm.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"swarmapply {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    apply = commands.add_parser(
        "apply",
        parents=[common],
        help="create or update objects from manifests",
        description="Admit every document first; write nothing if any is invalid.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    apply.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="PATH",
        help="a file, a directory (*.yaml, *.yml, *.json) or - for stdin; repeatable",
    )
    apply.add_argument("-R", "--recursive", action="store_true", help="descend into directories")
    apply.add_argument(
        "--dry-run", action="store_true", help="say what would happen, write nothing"
    )

    get = commands.add_parser(
        "get",
        parents=[common],
        help="list objects",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    get.add_argument("kind", help="job(s), task(s), node(s)/no, migration(s), event(s)/ev ...")
    get.add_argument("names", nargs="*", help="object names (default: all)")
    get.add_argument("-o", "--output", choices=("table", "wide", "yaml", "json", "name"))
    get.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier!=db")
    get.add_argument("--field-selector", help="field selector, e.g. status.phase=Running")
    return parser


def _normalise_argv(argv: list[str]) -> list[str]:
    """``swarmapply -f x`` means ``swarmapply apply -f x``."""
    commands = {"apply", "get"}
    if any(a in commands for a in argv) or not any(
        a in ("-f", "--filename") or a.startswith(("-f", "--filename=")) for a in argv
    ):
        return argv
    return ["apply", *argv]


def cmd_apply(args: argparse.Namespace) -> int:
    admitted = admit_paths(args.filename, args.recursive, sys.stdin)
    with open_store(store_url(args.store)) as store:
        for line in apply_all(store, admitted, args.dry_run):
            print(line)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    kind = resolve_kind(args.kind)
    with open_store(store_url(args.store)) as store:
        if args.names:
            objects = [store.get(kind, name) for name in args.names]
        else:
            objects = store.list(kind, args.selector, args.field_selector).items
    fmt = "table" if args.output in (None, "wide") else args.output
    if not objects and fmt == "table":
        print("No resources found.", file=sys.stderr)
        return 0
    print(render(kind, objects, fmt, single=len(args.names) == 1))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_normalise_argv(list(sys.argv[1:] if argv is None else argv)))
    handlers = {"apply": cmd_apply, "get": cmd_get}
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return handlers[args.command](args)
    except AdmissionError as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        print(f"nothing was written: {len(exc.errors)} error(s)", file=sys.stderr)
        return 1
    except NotFound as exc:
        print(f"Error from store: {exc}", file=sys.stderr)
        return 1
    except SwarmapplyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
