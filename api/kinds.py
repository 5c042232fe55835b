"""The registry of object kinds: names users type for them and where their schemas live.

Resolving a word (``jobs``, ``no``, ``Job``) to a kind is case-insensitive. The registry is
static; it says nothing about which objects exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from swarmapply.api import names
from swarmapply.errors import PermanentError

__all__ = [
    "API_VERSION",
    "KINDS",
    "KindInfo",
    "UnknownKindError",
    "kind_info",
    "name_error",
    "resolve_kind",
]

API_VERSION = "swarmapply.io/v1"

NameRule = Literal["label", "subdomain"]


@dataclass(frozen=True)
class KindInfo:
    """What the registry knows about one kind.

    Attributes:
        kind: The kind as written in objects (``Job``).
        singular: The lower-case singular (``job``).
        plural: The lower-case plural (``jobs``).
        short_names: Abbreviations accepted on the command line (``no`` for nodes).
        schema_file: The schema's file name inside the schemas package.
        name_rule: The syntax of metadata.name: ``label`` (DNS-1123 label, at most 63
            characters, what the store accepts; every kind uses it today) or ``subdomain``
            (DNS-1123 subdomain, dots allowed, at most 253 characters).
        has_spec: Whether objects of the kind have a ``spec``.
        has_status: Whether objects of the kind have a ``status``.
    """

    kind: str
    singular: str
    plural: str
    short_names: tuple[str, ...]
    schema_file: str
    name_rule: NameRule
    has_spec: bool = True
    has_status: bool = True


def _info(
    kind: str,
    plural: str,
    short: tuple[str, ...],
    rule: NameRule,
    has_spec: bool = True,
    has_status: bool = True,
) -> KindInfo:
    singular = kind.lower()
    return KindInfo(kind, singular, plural, short, f"{singular}.json", rule, has_spec, has_status)


#: Every kind, by its ``kind`` string, in the order commands list them.
KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        _info("Job", "jobs", (), "label"),
        _info("Task", "tasks", (), "label"),
        _info("Node", "nodes", ("no",), "label"),
        _info("Migration", "migrations", ("mig",), "label"),
        _info("Checkpoint", "checkpoints", ("cp",), "label"),
        _info("Event", "events", ("ev",), "label", has_spec=False, has_status=False),
        _info("Lease", "leases", (), "label", has_status=False),
        _info("ClusterPolicy", "clusterpolicies", ("cpol",), "label", has_status=False),
    )
}

_WORDS: dict[str, str] = {}
for _k in KINDS.values():
    for _word in (_k.kind, _k.singular, _k.plural, *_k.short_names):
        _WORDS[_word.lower()] = _k.kind


class UnknownKindError(PermanentError, LookupError):
    """A word that names no kind; the message lists the known kinds."""

    def __init__(self, word: str) -> None:
        self.word = word
        known = ", ".join(
            f"{k.plural} ({', '.join((k.singular, *k.short_names))})" for k in KINDS.values()
        )
        super().__init__(f"unknown kind {word!r}; known kinds: {known}")


def resolve_kind(word: str) -> str:
    """Resolves a kind name as a user may type it to the kind.

    Args:
        word: A singular, plural or short name, or the kind itself, in any case
            (``job``, ``Jobs``, ``no``, ``Migration``).

    Returns:
        The kind as written in objects, e.g. ``Job``.

    Raises:
        UnknownKindError: The word names no kind.
    """
    kind = _WORDS.get(word.strip().lower()) if isinstance(word, str) else None
    if kind is None:
        raise UnknownKindError(str(word))
    return kind


def kind_info(kind: str) -> KindInfo:
    """Returns the registry entry of a kind.

    Args:
        kind: The kind as written in objects (``Job``), or any word :func:`resolve_kind` accepts.

    Returns:
        The kind's :class:`KindInfo`.

    Raises:
        UnknownKindError: The word names no kind.
    """
    info = KINDS.get(kind)
    return info if info is not None else KINDS[resolve_kind(kind)]


def name_error(kind: str, name: object) -> str | None:
    """Checks an object name against its kind's rule (see :attr:`KindInfo.name_rule`).

    Args:
        kind: The kind (``Job``).
        name: The candidate ``metadata.name``.

    Returns:
        ``None`` if valid, else a message saying what was expected.

    Raises:
        UnknownKindError: ``kind`` names no kind.
    """
    if kind_info(kind).name_rule == "label":
        return names.dns1123_label_error(name)
    return names.dns1123_subdomain_error(name)
