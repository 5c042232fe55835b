"""Bad option values, and durations in seconds, as every command reports and parses them.

:class:`UsageError` is an option value that is wrong; its message starts with the option, and
a command prints it as one ``error:`` line and exits 2. Durations (``--heartbeat 0.5``,
``--batch-window 2``, ``--starvation-seconds 600``) are a plain number of seconds (no units;
``wait --timeout`` takes ``5m`` forms through its own parser); infinity and NaN are refused.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


class UsageError(ValueError):
    """An option value that is wrong; the message starts with the option."""


def parse_seconds(text: str, *, positive: bool = False) -> float:
    """A number of seconds: finite and at least 0 (above 0 when ``positive``).

    Raises:
        ValueError: Not such a number; the message says what was expected and what was given
            (``expected a number of seconds > 0, got '0'``).
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(
            f"expected a number of seconds {'>' if positive else '>='} 0, got {text!r}"
        )
    return value


def option_seconds(option: str, value: str | float, *, positive: bool = False) -> float:
    """:func:`parse_seconds` for option ``option``.

    Raises:
        UsageError: ``--heartbeat: expected a number of seconds > 0, got '0'``.
    """
    try:
        return parse_seconds(str(value), positive=positive)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def seconds_type(*, positive: bool = False) -> Callable[[str], float]:
    """An argparse ``type=`` for seconds, its error naming the option (exit 2)."""

    def convert(text: str) -> float:
        try:
            return parse_seconds(text, positive=positive)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = "seconds"
    return convert


__all__ = ["UsageError", "option_seconds", "parse_seconds", "seconds_type"]
