"""``swarmapply get``: list objects as a table, YAML, JSON or names, and follow changes."""

from __future__ import annotations

import argparse
import json
import threading
from typing import Any

import yaml

from swarmapply.api.kinds import resolve_kind
from swarmapply.api.names import natural_key
from swarmapply.api.store import Gone, NotFound
from swarmapply.cli.context import Context
from swarmapply.cli.output import render, table_rows

EXAMPLES = """examples:
  swarmapply get jobs                               all jobs, as a table
  swarmapply get job hello -o yaml                  one job as YAML
  swarmapply get tasks -l app=web -o wide           tasks with a label
  swarmapply get tasks --field-selector status.node=n1
  swarmapply get jobs -w                            follow changes until interrupted
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    parser = commands.add_parser(
        "get",
        help="list objects",
        description="List objects.",
        epilog=EXAMPLES,
        **kw,
    )
    parser.add_argument("kind", help="job(s), task(s), node(s)/no, migration(s), event(s)/ev, ...")
    parser.add_argument("names", nargs="*", help="object names (default: all)")
    parser.add_argument("-o", "--output", choices=("table", "wide", "yaml", "json", "name"))
    parser.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier!=db")
    parser.add_argument("--field-selector", help="field selector, e.g. status.phase=Running")
    parser.add_argument(
        "-w", "--watch", action="store_true", help="after listing, print changes as they happen"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context, stop: threading.Event | None = None) -> int:
    kind = resolve_kind(args.kind)
    store = ctx.store(must_exist=not args.watch)  # -w may wait for a store still to come
    fmt = args.output or "table"
    missing = 0
    if args.names:
        if args.selector or args.field_selector:
            ctx.err("error: give object names or selectors (-l, --field-selector), not both")
            return 2
        revision = store.revision()
        objects = []
        for name in args.names:
            try:
                objects.append(store.get(kind, name))
            except NotFound as exc:  # show what exists, report each missing one
                ctx.err(f"error: {exc}")
                missing += 1
    else:
        listed = store.list(kind, args.selector, args.field_selector)
        objects, revision = listed.items, listed.revision
        objects.sort(key=lambda o: natural_key(o["metadata"]["name"]))  # node-2 before node-10
        if kind == "Event":  # what happened, oldest first
            objects.sort(key=lambda e: (e.get("lastTimestamp") or "", e["metadata"]["name"]))
    if args.watch and fmt in ("json", "yaml"):  # one stream of events, the listed ones first
        for obj in objects:
            _print_event(ctx, fmt, "ADDED", obj)
    elif objects or fmt in ("json", "yaml"):
        ctx.out(render(kind, objects, fmt, single=len(args.names) == 1, color=ctx.color))
    elif not args.watch and not missing:
        ctx.err("No resources found.")
    if args.watch:
        follow(ctx, args, kind, fmt, revision, header=not objects, stop=stop)
    return 1 if missing else 0


def follow(
    ctx: Context,
    args: argparse.Namespace,
    kind: str,
    fmt: str,
    revision: int,
    header: bool,
    stop: threading.Event | None,
) -> None:
    """Print each later change of a matching object, until interrupted (or ``stop``)."""
    from swarmapply.api.selectors import (
        fields_match,
        labels_match,
        parse_field_selector,
        parse_label_selector,
    )

    labels = parse_label_selector(args.selector)
    fields = parse_field_selector(args.field_selector)
    names = set(args.names)
    while True:
        try:
            for event in ctx.store().watch(kind, revision, stop=stop):
                revision = event.revision
                obj = event.object
                if names and obj["metadata"]["name"] not in names:
                    continue
                if not (labels_match(labels, obj["metadata"].get("labels"))
                        and fields_match(fields, obj)):  # fmt: skip
                    continue
                if fmt in ("table", "wide"):
                    rows = table_rows(
                        kind, [obj], header=header, color=ctx.color, wide=fmt == "wide"
                    )
                    header = False
                    suffix = "   (deleted)" if event.type == "DELETED" else ""
                    ctx.out("\n".join(rows) + suffix)
                elif fmt in ("json", "yaml"):
                    _print_event(ctx, fmt, event.type, obj)
                else:
                    ctx.out(render(kind, [obj], "name", single=True))
            return
        except Gone:  # history compacted under us: list again and carry on from there
            revision = ctx.store().list(kind, args.selector, args.field_selector).revision


def _print_event(ctx: Context, fmt: str, kind_of_change: str, obj: dict[str, Any]) -> None:
    """One change in a watch stream: ``{"type": ..., "object": ...}`` as JSON or YAML."""
    event = {"type": kind_of_change, "object": obj}
    if fmt == "json":
        ctx.out(json.dumps(event, ensure_ascii=False))
    else:
        ctx.out("---\n" + yaml.safe_dump(event, allow_unicode=True).rstrip())
