"""``swarmapply explain``: the documentation of a kind or one of its fields, from its schema.

Everything printed comes from the kind's JSON Schema (:func:`swarmapply.api.schema.field_doc`),
the single source of truth for object shapes, so it cannot drift from what admission accepts.
Lists are looked through: ``job.spec.tasks.cores`` is the ``cores`` of each task. No store is
opened.

What it does not guarantee: rules the schema cannot express (name syntax, quantities that must
parse, unique task names...) are checked by admission and are only as visible here as the
descriptions make them.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from typing import Any

from swarmapply.api.kinds import API_VERSION, resolve_kind
from swarmapply.api.schema import FieldDoc, field_doc
from swarmapply.cli.context import Context

EXAMPLES = """examples:
  swarmapply explain job                        what a Job is, and its top-level fields
  swarmapply explain jobs.spec.tasks            plural and short names work too
  swarmapply explain job.spec.tasks.cores       a field inside each item of a list
  swarmapply explain node.status.capacity
  swarmapply explain job.spec --recursive       every field below spec, with types
"""

#: The width descriptions are wrapped to.
WIDTH = 80

#: How deep ``--recursive`` goes; deeper levels are shown as ``...`` (the schemas are far
#: shallower; this only stops a self-referencing schema from recursing forever).
MAX_DEPTH = 12


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds the ``explain`` command to the command line.

    Args:
        commands: The sub-command parsers of ``swarmapply``.
        **kw: Options every command's parser takes (parents, formatter class).
    """
    parser = commands.add_parser(
        "explain",
        help="document a kind or a field of it",
        description="Document a kind or one of its fields: type, description, default, "
        "allowed values, and the fields below it. Lists are looked through.",
        epilog=EXAMPLES,
        **kw,
    )
    parser.add_argument(
        "target", metavar="KIND[.FIELD.PATH]", help="e.g. job, jobs.spec, job.spec.tasks.cores"
    )
    parser.add_argument(
        "--recursive", action="store_true", help="list every field below, with types, as a tree"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Prints the documentation asked for.

    Args:
        args: The parsed arguments: ``target`` and ``recursive``.
        ctx: The invocation's context (only its output is used).

    Returns:
        The exit code, 0.

    Raises:
        UnknownKindError: The kind names no kind.
        UnknownFieldError: The kind has no such field.
    """
    ctx.out(explain(args.target, recursive=args.recursive))
    return 0


def explain(target: str, recursive: bool = False) -> str:
    """Renders the documentation of a kind or one of its fields.

    Args:
        target: ``KIND`` or ``KIND.field.path``; the kind as :func:`resolve_kind` accepts it.
        recursive: List the whole tree of fields below (names and types) instead of the
            direct sub-fields with their descriptions.

    Returns:
        The text, without a trailing newline.

    Raises:
        UnknownKindError: The kind names no kind.
        UnknownFieldError: The kind has no such field; the message names the path asked for
            and lists the fields at the deepest level that exists.
    """
    word, _, path = target.partition(".")
    kind = resolve_kind(word)
    doc = field_doc(kind, path)
    lines = [f"KIND:     {kind}", f"VERSION:  {API_VERSION}", ""]
    shown = doc.type
    if doc.path:
        lines.append(f"FIELD:    {doc.path} <{shown}>{' -required-' if doc.required else ''}")
    else:
        lines.append(f"TYPE:     <{shown}>")
    if doc.default is not None:
        lines.append(f"DEFAULT:  {doc.default}")
    if doc.enum:
        lines.append(f"ENUM:     {', '.join(doc.enum)}")
    lines += ["", "DESCRIPTION:", *_wrap(doc.description or "<empty>", "    ")]
    if doc.fields:
        lines += ["", "FIELDS:"]
        if recursive:
            lines += _tree(kind, doc.path, doc.fields, 1)
        else:
            lines += _fields(doc.fields)
    return "\n".join(lines)


def _fields(fields: Sequence[FieldDoc]) -> list[str]:
    """Each field with its type and markers, then the first line of its description."""
    width = max(len(f.path) for f in fields)
    lines: list[str] = []
    for f in fields:
        shown = f.type
        lines.append(f"  {f.path.ljust(width)}  <{shown}>{' -required-' if f.required else ''}")
        if f.description:
            lines += _wrap(f.description.splitlines()[0], "    ")
        if f.default is not None:
            lines.append(f"    default: {f.default}")
        if f.enum:
            lines.append(f"    enum: {', '.join(f.enum)}")
    return lines


def _tree(kind: str, parent: str, fields: Sequence[FieldDoc], depth: int) -> list[str]:
    """Every field below ``parent``, one a line, indented by depth, siblings aligned."""
    indent = "  " * depth
    if depth > MAX_DEPTH:
        return [f"{indent}..."]
    width = max(len(f.path) for f in fields)
    lines: list[str] = []
    for f in fields:
        path = _join(parent, f.path)
        marker = " -required-" if f.required else ""
        lines.append(f"{indent}{f.path.ljust(width)}  <{f.type}>{marker}")
        children = field_doc(kind, path).fields
        if children:
            lines += _tree(kind, path, children, depth + 1)
    return lines


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent) or [indent]
