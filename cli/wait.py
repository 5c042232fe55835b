"""``swarmapply wait``: block until objects reach a phase, a condition, or are deleted.

How it waits: for each kind named, the objects are listed once (which gives their state and
the store revision of that state together), and every condition that does not hold yet is
then re-checked on each later change the store's watch reports from that revision. Nothing
polls the objects; the wait ends when every condition has held, or at the deadline.

What it guarantees: ``condition met`` is printed for an object only after its condition was
seen to hold in a state the store really had after the command started (or at its start).
An object that is absent while waiting for a phase or a condition is waited for, as it may
still be created; for ``--for=delete`` an absent object is met at once.

What it does not guarantee: conditions of several objects are each seen to hold at some
moment of the wait, not necessarily at the same moment (as ``kubectl wait``); a condition that
holds only briefly, between two changes of other fields, is still seen, since every change is
replayed. The deadline is checked between changes, so the command may end a few poll
intervals of the store after it.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from swarmapply.api.kinds import resolve_kind
from swarmapply.api.store import Gone, Object, Store
from swarmapply.cli.context import Context
from swarmapply.cli.output import ref
from swarmapply.errors import PermanentError

EXAMPLES = """examples:
  swarmapply wait job/hello --for=phase=Succeeded --timeout 5m
  swarmapply wait job hello other --for=phase=Running
  swarmapply wait node/n1 --for=condition=Ready              status True (the default)
  swarmapply wait task/hello-0 --for=condition=Scheduled=false
  swarmapply wait job/hello --for=delete --timeout 30s

--for takes phase=PHASE, condition=TYPE[=STATUS] (STATUS True, False or Unknown, any case)
or delete. --timeout takes plain seconds or a duration such as 30s, 5m, 1h or 1m30s.
Exit status: 0 when every condition held, 1 on a timeout or an error, 2 on bad usage.
"""

#: The default ``--timeout`` of ``wait`` and ``delete --wait``, in seconds.
DEFAULT_TIMEOUT = 60.0

_DURATION = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)[smh]")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}

#: A check returns None when its condition holds for the object (None: absent), else what the
#: object's state is instead, e.g. ``phase is Running, want Succeeded``.
Check = Callable[[Object | None], str | None]


class WaitTimeout(PermanentError):
    """The deadline passed before every condition held; names each object still pending."""

    def __init__(self, timeout: float, pending: Sequence[tuple[str, str]]) -> None:
        self.timeout = timeout
        self.pending = list(pending)
        details = "; ".join(f"{ref}: {state}" for ref, state in self.pending)
        super().__init__(f"timed out after {format_duration(timeout)} waiting for {details}")


def parse_duration(text: str) -> float:
    """Parses a timeout as ``--timeout`` takes it.

    Args:
        text: Plain seconds (``90``, ``2.5``) or one or more number-unit pairs with units
            ``s``, ``m`` and ``h`` (``30s``, ``5m``, ``1h``, ``1m30s``).

    Returns:
        The duration in seconds (0 or more).

    Raises:
        argparse.ArgumentTypeError: The text is not a duration.
    """
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION.findall(value)
        if not value or "".join(parts) != value:
            raise argparse.ArgumentTypeError(
                f"invalid duration {text!r}: use seconds or a number with s, m or h "
                "(30s, 5m, 1h, 1m30s)"
            ) from None
        seconds = sum(float(part[:-1]) * _UNIT_SECONDS[part[-1]] for part in parts)
    if seconds != seconds or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must be a finite number")
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must be 0 or more")
    return seconds


def format_duration(seconds: float) -> str:
    """Formats seconds as timeout messages show them: ``60s``, ``0.5s``."""
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Condition:
    """What ``--for`` asks for: ``kind`` is ``phase``, ``condition`` or ``delete``.

    Attributes:
        kind: Which test: ``phase``, ``condition`` or ``delete``.
        name: The phase (``Succeeded``) or condition type (``Ready``); empty for delete.
        status: The wanted condition status (``True``); empty unless kind is condition.
    """

    kind: str
    name: str = ""
    status: str = ""

    def check(self, obj: Object | None) -> str | None:
        """Tests the condition against an object's state.

        Args:
            obj: The object, or None when it does not exist.

        Returns:
            None when the condition holds, else a description of the state instead.
        """
        if self.kind == "delete":
            if obj is None:
                return None
            finalizers = obj["metadata"].get("finalizers") or []
            if obj["metadata"].get("deletionTimestamp") and finalizers:
                return f"still exists (marked for deletion, finalizers: {', '.join(finalizers)})"
            return "still exists"
        if obj is None:
            return "not found"
        status: dict[str, Any] = obj.get("status") or {}
        if self.kind == "phase":
            phase = status.get("phase") or "Pending"  # as get and describe show it
            if isinstance(phase, str) and phase.lower() == self.name.lower():
                return None
            shown = phase if isinstance(phase, str) else "not set"
            return f"phase is {shown}, want {self.name}"
        for condition in status.get("conditions") or []:
            if isinstance(condition, dict) and str(condition.get("type", "")).lower() == (
                self.name.lower()
            ):
                actual = str(condition.get("status", ""))
                if actual.lower() == self.status.lower():
                    return None
                return f"condition {self.name} is {actual or 'not set'}, want {self.status}"
        return f"condition {self.name} is not set, want {self.status}"


def parse_condition(text: str) -> Condition:
    """Parses the value of ``--for``.

    Args:
        text: ``phase=PHASE``, ``condition=TYPE``, ``condition=TYPE=STATUS`` or ``delete``.

    Returns:
        The condition; a condition's status defaults to ``True``.

    Raises:
        argparse.ArgumentTypeError: The text has none of these forms.
    """
    what, _, rest = text.partition("=")
    what = what.strip().lower()
    if what == "delete" and not rest:
        return Condition("delete")
    if what == "phase" and rest and "=" not in rest:
        return Condition("phase", rest)
    if what == "condition" and rest:
        name, has_status, status = rest.partition("=")
        valid_status = status.lower() in ("true", "false", "unknown") or not has_status
        if name and valid_status and "=" not in status:
            return Condition("condition", name, status.capitalize() if status else "True")
    raise argparse.ArgumentTypeError(
        f"invalid condition {text!r}: use phase=PHASE, condition=TYPE[=True|False|Unknown] "
        "or delete"
    )


def parse_targets(words: Sequence[str]) -> list[tuple[str, str]]:
    """Parses ``KIND/NAME [KIND/NAME ...]`` or ``KIND NAME [NAME ...]``.

    Args:
        words: The positional arguments.

    Returns:
        ``(kind, name)`` pairs in order, duplicates dropped.

    Raises:
        ValueError: The words have neither form (a usage error).
        UnknownKindError: A word names no kind.
    """
    pairs: list[tuple[str, str]] = []
    if words and "/" not in words[0]:
        if len(words) < 2 or any("/" in word or not word for word in words[1:]):
            raise ValueError("give KIND/NAME [KIND/NAME ...] or KIND NAME [NAME ...]")
        kind = resolve_kind(words[0])
        pairs = [(kind, name) for name in words[1:]]
    else:
        for word in words:
            kind_word, slash, name = word.partition("/")
            if not slash or not kind_word or not name or "/" in name:
                raise ValueError(f"{word!r} is not KIND/NAME (or give KIND NAME [NAME ...])")
            pairs.append((resolve_kind(kind_word), name))
    return list(dict.fromkeys(pairs))


def wait_for(
    store: Store,
    targets: Sequence[tuple[str, str]],
    check: Check,
    timeout: float,
    on_met: Callable[[str, str], None],
) -> None:
    """Waits until ``check`` holds for every target, following the store's watch.

    Each kind is listed once; conditions still pending are then re-checked on every later
    change of that kind, in revision order, until they hold or the deadline passes.

    Args:
        store: The store.
        targets: ``(kind, name)`` pairs.
        check: Returns None when the condition holds for an object (None: absent), else a
            description of its state.
        timeout: Seconds until the deadline, for all targets together.
        on_met: Called with ``(kind, name)`` once per target, when its condition holds.

    Raises:
        WaitTimeout: Some conditions did not hold by the deadline.
    """
    deadline = time.monotonic() + timeout
    by_kind: dict[str, list[str]] = {}
    for kind, name in targets:
        by_kind.setdefault(kind, []).append(name)
    late: list[tuple[str, str]] = []
    for kind, names in by_kind.items():
        pending = _wait_kind(store, kind, names, check, deadline, on_met)
        late.extend((ref(kind, name), state) for name, state in pending.items())
    if late:
        raise WaitTimeout(timeout, late)


def _wait_kind(
    store: Store,
    kind: str,
    names: Sequence[str],
    check: Check,
    deadline: float,
    on_met: Callable[[str, str], None],
) -> dict[str, str]:
    """Waits for the objects of one kind; returns the state of those still pending."""
    pending: dict[str, str] = {name: "" for name in names}

    def see(name: str, obj: Object | None) -> None:
        state = check(obj)
        if state is None:
            del pending[name]
            on_met(kind, name)
        else:
            pending[name] = state

    revision = _snapshot(store, kind, pending, see)
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            for event in store.watch(kind, revision, timeout=remaining):
                revision = event.revision
                name = event.object["metadata"]["name"]
                if name in pending:
                    see(name, None if event.type == "DELETED" else event.object)
                    if not pending:
                        break
            else:
                break  # the watch ended at the deadline
        except Gone:  # history compacted under us: list again and follow from there
            revision = _snapshot(store, kind, pending, see)
    return pending


def _snapshot(
    store: Store, kind: str, pending: dict[str, str], see: Callable[[str, Object | None], None]
) -> int:
    """Checks the pending objects as listed; returns the revision of that list."""
    listed = store.list(kind)
    found = {obj["metadata"]["name"]: obj for obj in listed.items}
    for name in list(pending):
        see(name, found.get(name))
    return listed.revision


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds the ``wait`` command to the command parsers."""
    parser = commands.add_parser(
        "wait",
        help="wait until objects reach a phase or condition, or are deleted",
        description="Wait until every object named reaches a phase or a condition, or is\n"
        "deleted. The current state is checked first, then the store's changes are followed\n"
        "until every condition has held or the timeout passes.",
        epilog=EXAMPLES,
        **kw,
    )
    parser.add_argument(
        "targets", nargs="+", metavar="KIND/NAME", help="objects: KIND/NAME ... or KIND NAME ..."
    )
    parser.add_argument(
        "--for",
        dest="condition",
        required=True,
        type=parse_condition,
        metavar="CONDITION",
        help="phase=PHASE, condition=TYPE[=STATUS] (default status True) or delete",
    )
    parser.add_argument(
        "--timeout",
        type=parse_duration,
        default=DEFAULT_TIMEOUT,
        metavar="DURATION",
        help="give up after this long: seconds, or 30s, 5m, 1h (default 60s)",
    )
    parser.set_defaults(handler=run, usage_error=parser.error)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Runs ``swarmapply wait``; returns 0 when every condition held (WaitTimeout otherwise)."""
    try:
        targets = parse_targets(args.targets)
    except ValueError as exc:
        args.usage_error(str(exc))  # argparse's error(): prints usage, exits with status 2
        return 2
    condition: Condition = args.condition
    wait_for(
        ctx.store(),
        targets,
        condition.check,
        args.timeout,
        lambda kind, name: ctx.out(f"{ref(kind, name)} condition met"),
    )
    return 0
