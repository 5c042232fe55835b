"""Load patterns and job names of ``swarmapply stress`` (pure).

A pattern says how many jobs to submit in each sampling interval ``t`` (0-based):

* steady ``--rate A``: ``F(t) = floor(A*(t+1)) - floor(A*t)``. A fractional rate carries its
  remainder from one interval to the next, so the first ``n`` intervals together submit exactly
  ``floor(A*n)`` jobs (``--rate 0.5``: 0, 1, 0, 1, ...).
* bursty ``--lambda L``: ``F(t) = ceil(X_t)`` where ``X_0, X_1, ...`` are drawn in order from
  ``random.Random(seed).expovariate(L)`` (an exponential distribution with rate L, mean 1/L).
* incremental ``--slope A --intercept B``: ``F(t) = max(0, floor(A*t + B + 1/2))``, i.e. rounded
  to the nearest integer, halves up. A negative slope gives a decreasing load.
* random ``--min A --max B``: one integer drawn once, uniformly in ``[A, B]``, with
  ``random.Random(seed).randint(A, B)``; every interval submits that many.

The decimal numbers given are used exactly (``0.1 * 30`` is 3, not 3.0000000000000004), so the
counts do not depend on binary rounding. The same pattern, number of intervals and seed always
give the same counts.

Names: each job is named ``job<submit-ms>-<session>-<seq>`` (RESTfulSwarm's ``job<ms>-<session>``
made unique by a per-run sequence number): the submit time in milliseconds since the epoch, the
run's session (6 lower-case hex digits) and the job's 0-based number in the run. Every job
carries the label ``swarmapply.io/stress-session=<session>``.

What this module does not do: read a clock, draw a session, or touch the store. The command
(:mod:`swarmapply.cli.stress`) does those.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from swarmapply.api.names import dns1123_label_error, label_value_error
from swarmapply.cli.usage import UsageError

__all__ = [
    "PATTERNS",
    "PATTERN_OPTIONS",
    "SESSION_LABEL",
    "Bursty",
    "Incremental",
    "Pattern",
    "RandomConstant",
    "Steady",
    "counts",
    "interval_count",
    "is_session",
    "job_name",
    "make_pattern",
    "session_selector",
    "uses_seed",
]

#: The pattern names ``--pattern`` takes.
PATTERNS = ("steady", "bursty", "incremental", "random")

#: The label every job of a run carries; its value is the run's session.
SESSION_LABEL = "swarmapply.io/stress-session"

#: Which options belong to which pattern (the option names as the command line spells them).
PATTERN_OPTIONS: dict[str, tuple[str, ...]] = {
    "steady": ("--rate",),
    "bursty": ("--lambda",),
    "incremental": ("--slope", "--intercept"),
    "random": ("--min", "--max"),
}

_SESSION = re.compile(r"[0-9a-f]{6}")


def _exact(value: float) -> Fraction:
    """The decimal a float was written as (``0.1`` is 1/10), for exact arithmetic."""
    return Fraction(repr(float(value)))


@dataclass(frozen=True)
class Steady:
    """``rate`` jobs per interval on average; a fractional remainder carries over."""

    rate: float
    name: str = "steady"

    def parameters(self) -> dict[str, Any]:
        """The pattern's parameters as ``summary.json`` records them."""
        return {"rate": self.rate}

    def count(self, t: int) -> int:
        """The jobs of interval ``t``: ``floor(rate*(t+1)) - floor(rate*t)``."""
        rate = _exact(self.rate)
        return math.floor(rate * (t + 1)) - math.floor(rate * t)


@dataclass(frozen=True)
class Bursty:
    """Counts drawn from an exponential distribution with rate ``lambd``, rounded up."""

    lambd: float
    name: str = "bursty"

    def parameters(self) -> dict[str, Any]:
        """The pattern's parameters as ``summary.json`` records them."""
        return {"lambda": self.lambd}


@dataclass(frozen=True)
class Incremental:
    """``slope*t + intercept`` jobs in interval ``t``, rounded to nearest, at least 0."""

    slope: float
    intercept: float
    name: str = "incremental"

    def parameters(self) -> dict[str, Any]:
        """The pattern's parameters as ``summary.json`` records them."""
        return {"slope": self.slope, "intercept": self.intercept}

    def count(self, t: int) -> int:
        """The jobs of interval ``t``: ``max(0, floor(slope*t + intercept + 1/2))``."""
        value = _exact(self.slope) * t + _exact(self.intercept) + Fraction(1, 2)
        return max(0, math.floor(value))


@dataclass(frozen=True)
class RandomConstant:
    """One count drawn uniformly in ``[low, high]`` once, used for every interval."""

    low: int
    high: int
    name: str = "random"

    def parameters(self) -> dict[str, Any]:
        """The pattern's parameters as ``summary.json`` records them."""
        return {"min": self.low, "max": self.high}


Pattern = Steady | Bursty | Incremental | RandomConstant


def uses_seed(pattern: Pattern) -> bool:
    """Whether the pattern's counts depend on the seed (bursty and random do)."""
    return isinstance(pattern, (Bursty, RandomConstant))


def counts(pattern: Pattern, intervals: int, seed: int | None) -> list[int]:
    """The number of jobs to submit in each of the first ``intervals`` intervals.

    Args:
        pattern: The load pattern.
        intervals: How many intervals (0 or more).
        seed: The seed of the random draws (bursty, random); ignored by steady and
            incremental. None draws from an unseeded generator (not reproducible).

    Returns:
        ``intervals`` non-negative counts, interval 0 first.
    """
    if isinstance(pattern, (Steady, Incremental)):
        return [pattern.count(t) for t in range(intervals)]
    rng = random.Random(seed)
    if isinstance(pattern, Bursty):
        return [math.ceil(rng.expovariate(pattern.lambd)) for _ in range(intervals)]
    constant = rng.randint(pattern.low, pattern.high)
    return [constant] * intervals


def _number(option: str, value: float | None, *, positive: bool = False) -> float:
    if value is None:
        raise UsageError(f"{option}: required with this --pattern")
    if not math.isfinite(value):
        raise UsageError(f"{option}: expected a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise UsageError(
            f"{option}: expected a number {'>' if positive else '>='} 0, got {value:g}"
        )
    return float(value)


def _whole(option: str, value: float | None) -> int:
    number = _number(option, value)
    if not number.is_integer():
        raise UsageError(f"{option}: expected a whole number of jobs, got {number:g}")
    return int(number)


def make_pattern(name: str, options: dict[str, float | None]) -> Pattern:
    """Builds and checks a pattern from the options given.

    Args:
        name: One of :data:`PATTERNS`.
        options: The pattern options by their command-line name (``--rate``, ``--lambda``,
            ``--slope``, ``--intercept``, ``--min``, ``--max``); None when not given.

    Returns:
        The pattern.

    Raises:
        UsageError: The pattern is unknown, an option it needs is missing, negative, not a
            number it takes, belongs to another pattern, or ``--min`` is above ``--max``. The
            message starts with the option.
    """
    if name not in PATTERNS:
        raise UsageError(f"--pattern: expected one of {', '.join(PATTERNS)}, got {name!r}")
    own = PATTERN_OPTIONS[name]
    for option, value in options.items():
        if value is not None and option not in own:
            owner = next(p for p, opts in PATTERN_OPTIONS.items() if option in opts)
            raise UsageError(f"{option}: only with --pattern {owner} (this run is {name})")
    if name == "steady":
        return Steady(_number("--rate", options.get("--rate")))
    if name == "bursty":
        return Bursty(_number("--lambda", options.get("--lambda"), positive=True))
    if name == "incremental":
        slope = options.get("--slope")
        if slope is None or not math.isfinite(slope):
            raise UsageError(
                "--slope: required with this --pattern"
                if slope is None
                else f"--slope: expected a finite number, got {slope!r}"
            )
        return Incremental(float(slope), _number("--intercept", options.get("--intercept")))
    low = _whole("--min", options.get("--min"))
    high = _whole("--max", options.get("--max"))
    if low > high:
        raise UsageError(f"--min: must not be above --max, got --min {low} and --max {high}")
    return RandomConstant(low, high)


def interval_count(duration: float, interval: float) -> int:
    """How many submission intervals a run has: ``floor(duration / interval)``.

    Args:
        duration: ``--duration``, seconds (> 0).
        interval: ``--interval``, seconds (> 0, at most ``duration``).

    Raises:
        UsageError: ``--interval`` is 0 or longer than ``--duration``.
    """
    if interval <= 0:
        raise UsageError(f"--interval: expected a number of seconds > 0, got {interval:g}")
    if duration <= 0:
        raise UsageError(f"--duration: expected a number of seconds > 0, got {duration:g}")
    if interval > duration:
        raise UsageError(
            f"--interval: must not be longer than --duration ({interval:g}s > {duration:g}s)"
        )
    return math.floor(_exact(duration) / _exact(interval))


def is_session(text: str) -> bool:
    """Whether ``text`` is a session: exactly 6 lower-case hex digits."""
    return _SESSION.fullmatch(text) is not None


def job_name(submit_ms: int, session: str, seq: int) -> str:
    """The name of a submitted job: ``job<submit-ms>-<session>-<seq>``.

    Args:
        submit_ms: The submit time in milliseconds since the epoch.
        session: The run's session (6 lower-case hex digits).
        seq: The job's 0-based number in the run.

    Returns:
        A DNS-1123 label (at most 63 characters).

    Raises:
        ValueError: The inputs do not make a valid name.
    """
    if not is_session(session):
        raise ValueError(f"session {session!r}: expected 6 lower-case hex digits")
    if submit_ms < 0 or seq < 0:
        raise ValueError("submit time and sequence number must be 0 or more")
    name = f"job{submit_ms}-{session}-{seq}"
    problem = dns1123_label_error(name)
    if problem is not None:
        raise ValueError(f"job name {name!r}: {problem}")
    return name


def session_selector(session: str) -> str:
    """The label selector of a run's jobs: ``swarmapply.io/stress-session=<session>``.

    Raises:
        ValueError: ``session`` is not a valid session (or label value).
    """
    problem = label_value_error(session)
    if problem is not None or not is_session(session):
        raise ValueError(f"session {session!r}: expected 6 lower-case hex digits")
    return f"{SESSION_LABEL}={session}"
