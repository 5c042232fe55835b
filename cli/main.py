"""The ``swarmapply`` command line: assembles the commands and turns errors into exit codes.

``swarmapply -f PATH`` is short for ``swarmapply apply -f PATH``. Exit codes: 0 success,
1 invalid input or a failed operation (one line per problem on stderr), 2 bad usage. A
traceback is printed only with ``--debug``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from swarmapply import __version__
from swarmapply.api.admission import AdmissionError
from swarmapply.cli.config import STORE_ENV
from swarmapply.cli.context import Context
from swarmapply.errors import SwarmapplyError

#: The command modules, in the order ``--help`` lists them; each has register() and run().
COMMANDS = (
    "up",
    "apply",
    "sync",
    "diff",
    "get",
    "describe",
    "delete",
    "explain",
    "wait",
    "migrate",
    "update",
    "checkpoint",
    "node",
    "cluster",
    "prune",
    "simulate",
    "stress",
    "report",
    "controllers",
    "agent",
    "plan",
    "completion",
)

EXAMPLES = """examples:
  swarmapply up -f manifests/examples/hello.yaml --until-done   a cluster here; run a job
  swarmapply -f job.yaml                 apply one manifest
  swarmapply -f manifests/ -R            apply a directory tree
  cat job.json | swarmapply -f -         apply from standard input
  swarmapply get jobs                    list jobs as a table
  swarmapply describe job hello          status, tasks and events of a job
  swarmapply wait job/hello --for=phase=Succeeded --timeout 5m
  swarmapply sync jobs/ --watch --prune  keep the cluster equal to a directory (GitOps)
  swarmapply simulate --nodes nodes.yaml -f jobs.yaml --strategy all   compare strategies
  swarmapply stress --pattern steady --rate 2 --duration 60 --interval 5 --template job.yaml
  swarmapply report runs/* --out plots/  plots and a summary table of stress runs
  swarmapply migrate task hello-server --to n2 --wait   move a running task (live or cold)
  swarmapply update task hello-server --cores 2        resize a running task in place
  swarmapply checkpoint task hello-server --wait       a CRIU checkpoint of a running task
  swarmapply drain n3                    cordon n3 and move its tasks to other nodes
  swarmapply cluster info                store, Swarm manager, nodes and controller leaders
  swarmapply prune --dry-run             what the pruner would remove now
  swarmapply plan -f job.yaml            where a job would be placed now, writing nothing
  swarmapply controllers                 run the control loops (run several for failover)
  swarmapply agent --driver sim --nodes 10   run 10 hollow nodes (--driver docker: this engine)
"""


def _common() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store",
        metavar="URL",
        default=argparse.SUPPRESS,
        help=f"store URL (sqlite:///path or mongodb://host/db); default ${STORE_ENV}, "
        "else ~/.local/state/swarmapply/state.db",
    )
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    return common


def _modules() -> list[ModuleType]:
    return [importlib.import_module(f"swarmapply.cli.{name}") for name in COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="swarmapply",
        description="Declarative control plane for core-pinned container jobs on Docker Swarm.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"swarmapply {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _modules():
        module.register(
            commands, parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter
        )
    version = commands.add_parser(
        "version",
        parents=[common],
        help="print the version",
        epilog="example:\n  swarmapply version      prints: swarmapply " + __version__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    version.set_defaults(handler=lambda args, ctx: ctx.out(f"swarmapply {__version__}") or 0)
    return parser


def _command_index(argv: list[str]) -> int:
    """Where the command word is: after the global options ``--store URL`` and ``--debug``."""
    i = 0
    while i < len(argv):
        if argv[i] == "--store":
            i += 2
        elif argv[i].startswith("--store=") or argv[i] == "--debug":
            i += 1
        else:
            break
    return i


def _usage_exit(argv: list[str]) -> int:
    """The exit code for bad usage of the command in ``argv``: 2, unless the command says
    otherwise (``plan`` uses 2 for "would wait", so its usage errors exit 1)."""
    i = _command_index(argv)
    if i < len(argv) and argv[i] in COMMANDS:
        module = importlib.import_module(f"swarmapply.cli.{argv[i]}")
        return int(getattr(module, "USAGE_EXIT", 2))
    return 2


def _normalise_argv(argv: list[str]) -> list[str]:
    """``swarmapply [--store URL] [--debug] -f x ...`` means ``swarmapply ... apply -f x ...``.

    Only the first token after the global options decides, so a file that happens to be named
    like a command (``-f version``) is still applied.
    """
    i = _command_index(argv)
    rest = argv[i:]
    apply_flags = ("-f", "--filename", "-R", "--recursive", "--dry-run")
    if rest and (rest[0] in apply_flags or rest[0].startswith(("-f", "--filename="))):
        return [*argv[:i], "apply", *rest]
    return argv


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    words = _normalise_argv(list(sys.argv[1:] if argv is None else argv))
    try:
        parser = build_parser()
        args = parser.parse_args(words)
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # argparse: --help (0) or bad usage (2)
        if exc.code == 2:
            raise SystemExit(_usage_exit(words)) from None
        raise
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return 2
    ctx = ctx or Context()
    ctx.store_flag = getattr(args, "store", None)
    ctx.debug = getattr(args, "debug", False)
    try:
        code: int = args.handler(args, ctx)
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as shell tools do
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except AdmissionError as exc:
        for error in exc.errors:
            ctx.err(f"error: {error}")
        count = len(exc.errors)
        errors = f"{count} error{'s' if count != 1 else ''}"
        # Commands that never write (plan, simulate, diff) have nothing to reassure about.
        ctx.err(errors if getattr(args, "read_only", False) else f"nothing was changed: {errors}")
        return 1
    except SwarmapplyError as exc:
        if ctx.debug:
            raise
        ctx.err(f"error: {exc}")
        return 1
    except Exception as exc:  # a bug, not the user's fault: say so, briefly
        if ctx.debug:
            raise
        ctx.err(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)")
        return 1
    finally:
        ctx.close()


if __name__ == "__main__":
    from swarmapply.cli.entry import run

    run()
