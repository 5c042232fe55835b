"""Name syntax checks following Kubernetes' rules (DNS-1123 names, label keys and values).

Each function returns ``None`` for a valid input and otherwise a message saying what was
expected, so callers can collect every problem instead of stopping at the first. Only syntax
is checked: whether a name is taken, or a prefix is reserved, is someone else's concern.
"""

from __future__ import annotations

import re
from typing import Any

from swarmapply.api.messages import show_value

__all__ = [
    "DNS1123_LABEL_MAX",
    "DNS1123_SUBDOMAIN_MAX",
    "LABEL_VALUE_MAX",
    "QUALIFIED_NAME_MAX",
    "dns1123_label_error",
    "dns1123_subdomain_error",
    "label_key_error",
    "label_value_error",
    "natural_key",
]

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63

_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME_RE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")

_LABEL_RULE = (
    "lower-case letters, digits and '-', starting and ending with a letter or digit"
    " (e.g. 'my-job', 'web1')"
)
_SUBDOMAIN_RULE = (
    "lower-case letters, digits, '-' and '.', each dot-separated part starting and ending"
    " with a letter or digit (e.g. 'worker-1', 'node1.example.com')"
)
_QUALIFIED_RULE = (
    "letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
    " (e.g. 'app', 'tier_1', 'my.name')"
)


def _dns_name_error(s: Any, pattern: re.Pattern[str], longest: int, rule: str) -> str | None:
    if not isinstance(s, str):
        return f"expected a name as a string, got {show_value(s)}"
    if not s:
        return f"must not be empty; expected {rule}"
    if len(s) > longest:
        return f"must be at most {longest} characters, got {len(s)}"
    if pattern.fullmatch(s) is None:
        return f"invalid name {show_value(s)}: expected {rule}"
    return None


def dns1123_label_error(s: Any) -> str | None:
    """Checks a DNS-1123 label (at most 63 characters of ``[a-z0-9]([-a-z0-9]*[a-z0-9])?``).

    Args:
        s: The candidate name.

    Returns:
        ``None`` if valid, else a message saying what was expected.
    """
    return _dns_name_error(s, _LABEL_RE, DNS1123_LABEL_MAX, _LABEL_RULE)


def dns1123_subdomain_error(s: Any) -> str | None:
    """Checks a DNS-1123 subdomain (at most 253 characters; dot-separated DNS-1123 labels).

    Args:
        s: The candidate name.

    Returns:
        ``None`` if valid, else a message saying what was expected.
    """
    return _dns_name_error(s, _SUBDOMAIN_RE, DNS1123_SUBDOMAIN_MAX, _SUBDOMAIN_RULE)


def label_key_error(key: Any) -> str | None:
    """Checks a label or annotation key: an optional DNS-1123 subdomain prefix and ``/``, then
    a name of at most 63 characters matching ``([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]``.

    Args:
        key: The candidate key, e.g. ``app`` or ``swarmapply.io/job``.

    Returns:
        ``None`` if valid, else a message saying what was expected.
    """
    if not isinstance(key, str):
        return f"expected a key as a string, got {show_value(key)}"
    shape = "expected an optional DNS subdomain prefix and '/' followed by a name"
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return (
                f"invalid key {show_value(key)}: the prefix before '/' must not be empty; {shape}"
            )
        if "/" in prefix:
            return f"invalid key {show_value(key)}: at most one '/' is allowed; {shape}"
        problem = dns1123_subdomain_error(prefix)
        if problem is not None:
            return (
                f"invalid key {show_value(key)}: prefix {show_value(prefix)} is not a DNS "
                f"subdomain; {shape}"
            )
    if not name:
        return f"invalid key {show_value(key)}: the name part must not be empty; {shape}"
    if len(name) > QUALIFIED_NAME_MAX:
        return (
            f"invalid key {show_value(key)}: the name part must be at most {QUALIFIED_NAME_MAX}"
            f" characters, got {len(name)}"
        )
    if _QUALIFIED_NAME_RE.fullmatch(name) is None:
        return f"invalid key {show_value(key)}: the name part must consist of {_QUALIFIED_RULE}"
    return None


def label_value_error(v: Any) -> str | None:
    """Checks a label value: empty, or at most 63 characters of the qualified-name syntax.

    Args:
        v: The candidate value.

    Returns:
        ``None`` if valid, else a message saying what was expected.
    """
    if not isinstance(v, str):
        return f"expected a label value as a string, got {show_value(v)}"
    if len(v) > LABEL_VALUE_MAX:
        return f"a label value must be at most {LABEL_VALUE_MAX} characters, got {len(v)}"
    if v and _QUALIFIED_NAME_RE.fullmatch(v) is None:
        return f"invalid label value {show_value(v)}: expected empty or {_QUALIFIED_RULE}"
    return None


_DIGITS = re.compile(r"([0-9]+)")


def natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Returns a sort key that orders names naturally (``node-2`` before ``node-10``).

    Args:
        name: An object name.

    Returns:
        A key whose text and number parts alternate at fixed positions (so they always compare
        like with like), with the name itself as the final tie-break (``n02`` vs ``n2``).
    """
    parts = _DIGITS.split(name)
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts)), name
