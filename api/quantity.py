"""Memory quantities and cpusets: parsing user input into canonical values and back.

Memory follows Docker's meaning, as the ``docker run --memory`` flag and docker-py read it:
every unit is binary (1024-based) and case-insensitive, so ``10m``, ``10M``, ``10mb``,
``10MiB`` and the Kubernetes form ``10Mi`` all mean 10 MiB (10485760 bytes). Kubernetes'
*decimal* reading of ``10M`` (10^6 bytes) is deliberately not used: Docker's meaning wins,
because the values end up as Docker memory limits. Fractions are allowed with a unit
(``1.5g``) and truncated to whole bytes, as Docker does. Plain integers are bytes.

Cpusets use Docker's ``--cpuset-cpus`` syntax (``0-3,6``). The canonical form is sorted,
with runs of consecutive ids written as ranges.

Pure functions; nothing here knows how many cores or bytes a machine really has.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from swarmapply.api.messages import show_value
from swarmapply.errors import PermanentError

__all__ = [
    "MAX_CPU_ID",
    "MAX_MEMORY_BYTES",
    "QuantityError",
    "format_cpuset",
    "format_memory",
    "parse_cpuset",
    "parse_memory",
]

#: The largest byte count accepted (a signed 64-bit integer, as Docker and BSON store it).
MAX_MEMORY_BYTES = 2**63 - 1
#: The largest core id accepted in a cpuset (far above any real machine; bounds the work done).
MAX_CPU_ID = 65535

_MEMORY_EXAMPLES = "such as 512Mi, 10m, 1.5g or 1073741824 (bytes)"
_CPUSET_EXAMPLES = 'such as "0-3,6" or "2"'

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_MEMORY_RE = re.compile(
    r"(?P<number>[0-9]+(?:\.[0-9]+)?) ?(?P<unit>[kmgtp])?(?P<i>i)?(?P<b>b)?", re.IGNORECASE
)
_FORMAT_UNITS = (
    ("Pi", 1 << 50),
    ("Ti", 1 << 40),
    ("Gi", 1 << 30),
    ("Mi", 1 << 20),
    ("Ki", 1 << 10),
)
_CPUSET_PART_RE = re.compile(r"(?P<lo>[0-9]+)(?:-(?P<hi>[0-9]+))?")


class QuantityError(PermanentError, ValueError):
    """A memory quantity or cpuset that cannot be parsed; the message says what was expected."""


def parse_memory(value: Any) -> int:
    """Parses a memory quantity into a number of bytes.

    Args:
        value: An integer number of bytes, a whole float, or a string: digits with an optional
            fraction and an optional binary unit (``b``, ``k``, ``m``, ``g``, ``t``, ``p``,
            optionally followed by ``i`` and/or ``b``; any case), e.g. ``"512Mi"``, ``"10m"``,
            ``"1.5g"``, ``"4096"``.

    Returns:
        The number of bytes, at least 1 and at most :data:`MAX_MEMORY_BYTES`.

    Raises:
        QuantityError: The value is not a quantity, or is zero, negative or too large.
    """
    expected = f"expected a memory quantity {_MEMORY_EXAMPLES}"
    amount: Fraction
    if isinstance(value, bool) or value is None:
        raise QuantityError(f"{expected}, got {show_value(value)}")
    if isinstance(value, int):
        amount = Fraction(value)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            raise QuantityError(
                f"{expected}, got {show_value(value)} (a number without a unit must be whole bytes)"
            )
        amount = Fraction(int(value))
    elif isinstance(value, str):
        text = value.strip()
        match = _MEMORY_RE.fullmatch(text)
        if not text or match is None or (match["i"] and not match["unit"]):
            raise QuantityError(f"{expected}, got {show_value(value)}")
        if len(match["number"]) > 64:
            raise QuantityError(f"{expected}, got {show_value(value)} (too many digits)")
        unit = (match["unit"] or "").lower()
        amount = Fraction(match["number"]) * _UNITS[unit]
    else:
        raise QuantityError(f"{expected}, got {show_value(value)}")
    if amount < 0:
        raise QuantityError(f"{expected}, got {show_value(value)} (memory cannot be negative)")
    result = int(amount)  # truncates fractions of a byte, as Docker does
    if result < 1:
        raise QuantityError(f"{expected}, got {show_value(value)} (memory must be at least 1 byte)")
    if result > MAX_MEMORY_BYTES:
        raise QuantityError(
            f"{expected}, got {show_value(value)} "
            f"(more than the maximum of {MAX_MEMORY_BYTES} bytes)"
        )
    return result


def format_memory(n: int, exact: bool = True) -> str:
    """Renders a byte count readably with binary units, e.g. ``10Mi``, ``1.5Gi``, ``100B``.

    Args:
        n: A number of bytes (zero is allowed and renders as ``0B``).
        exact: If true (the default) the result parses back to exactly ``n``: the largest unit
            that represents ``n`` with at most two decimals is used, else plain bytes. If false
            the result is rounded to at most one decimal in the largest unit <= ``n``
            (``953.7Mi``), for tables.

    Returns:
        The rendered quantity, parseable by :func:`parse_memory` (except ``0B``).

    Raises:
        QuantityError: ``n`` is not a non-negative integer.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise QuantityError(f"expected a non-negative integer number of bytes, got {show_value(n)}")
    for suffix, unit in _FORMAT_UNITS:
        if n < unit:
            continue
        if not exact:
            return f"{_decimal(Fraction(n, unit), 1)}{suffix}"
        if (n * 100) % unit == 0:
            return f"{_decimal(Fraction(n, unit), 2)}{suffix}"
    return f"{n}B"


def _decimal(value: Fraction, places: int) -> str:
    """Renders a fraction rounded to ``places`` decimals, without trailing zeros."""
    scaled = round(value * 10**places)
    whole, frac = divmod(scaled, 10**places)
    if frac == 0:
        return str(whole)
    return f"{whole}.{str(frac).rjust(places, '0').rstrip('0')}"


def parse_cpuset(value: Any) -> tuple[int, ...]:
    """Parses a cpuset in Docker's ``--cpuset-cpus`` syntax into sorted core ids.

    Args:
        value: A string of comma-separated ids and inclusive ranges (``"0-3,6"``); a single
            non-negative integer is accepted as a one-core set.

    Returns:
        The core ids, sorted and unique, never empty.

    Raises:
        QuantityError: Empty input, junk, a descending range, an id listed twice (also through
            overlapping ranges), or an id above :data:`MAX_CPU_ID`.
    """
    expected = f"expected a cpuset {_CPUSET_EXAMPLES}"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if not isinstance(value, str):
        raise QuantityError(f"{expected}, got {show_value(value)}")
    text = value.strip()
    if not text:
        raise QuantityError(f"{expected}, got an empty string")
    if len(text) > 8 * MAX_CPU_ID:
        raise QuantityError(f"{expected}, got a string of {len(text)} characters")
    seen: set[int] = set()
    for part in text.split(","):
        match = _CPUSET_PART_RE.fullmatch(part)
        if match is None:
            raise QuantityError(
                f"{expected}, got {show_value(value)} (cannot read {show_value(part)})"
            )
        if len(part) > 16:
            raise QuantityError(
                f"{expected}, got {show_value(value)} (core ids go up to {MAX_CPU_ID})"
            )
        lo = int(match["lo"])
        hi = int(match["hi"]) if match["hi"] is not None else lo
        if hi < lo:
            raise QuantityError(
                f"{expected}, got {show_value(value)} (range {part} is descending; write {hi}-{lo})"
            )
        if hi > MAX_CPU_ID:
            raise QuantityError(
                f"{expected}, got {show_value(value)} (core ids go up to {MAX_CPU_ID})"
            )
        ids = range(lo, hi + 1)
        twice = seen.intersection(ids)
        if twice:
            raise QuantityError(
                f"{expected}, got {show_value(value)} (core {min(twice)} is listed more than once)"
            )
        seen.update(ids)
    return tuple(sorted(seen))


def format_cpuset(ids: Iterable[int]) -> str:
    """Renders core ids in canonical cpuset syntax: sorted, consecutive runs as ranges.

    Args:
        ids: Non-negative core ids, in any order, each at most once.

    Returns:
        The canonical cpuset, e.g. ``"0-3,6"``; ``""`` for no ids.

    Raises:
        QuantityError: An id is not a non-negative integer or appears twice.
    """
    values = list(ids)
    for core in values:
        if isinstance(core, bool) or not isinstance(core, int) or core < 0:
            raise QuantityError(f"expected non-negative integer core ids, got {show_value(core)}")
    ordered = sorted(values)
    for a, b in itertools.pairwise(ordered):
        if a == b:
            raise QuantityError(f"core {a} is listed more than once")
    parts: list[str] = []
    start = 0
    for i in range(1, len(ordered) + 1):
        if i == len(ordered) or ordered[i] != ordered[i - 1] + 1:
            lo, hi = ordered[start], ordered[i - 1]
            parts.append(str(lo) if lo == hi else f"{lo}-{hi}")
            start = i
    return ",".join(parts)
