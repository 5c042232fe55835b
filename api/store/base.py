"""The store contract every component reads and writes objects through.

Objects are plain JSON-like dicts in Kubernetes shape (``apiVersion``, ``kind``, ``metadata``,
``spec``, ``status``), addressed by ``(kind, name)``; there are no namespaces. One global
revision, increasing by one with every change, orders all changes; an object's
``metadata.resourceVersion`` is the revision of its last change, as a string.

What a backend guarantees (the contract test suite checks each point on every backend):

* ``update`` and ``update_status`` are compare-and-swap when ``metadata.resourceVersion`` is
  set (:class:`Conflict` otherwise) and unconditional when it is absent, as in Kubernetes.
  ``update`` never changes ``status``; ``update_status`` changes nothing else.
  ``metadata.generation`` grows by one exactly when ``spec`` changes; a write that changes
  nothing is not a change (no new revision, no event).
* ``delete`` of an object with finalizers only sets ``deletionTimestamp``; the object goes
  away when an update removes its last finalizer. When an object goes away, objects that name
  it in ``ownerReferences`` lose that reference and are deleted once they have no owner left.
* ``list`` returns the objects as of one revision, and ``watch(kind, since=that revision)``
  yields every later change exactly once, in revision order. A watch from a revision that
  was compacted away raises :class:`Gone`: the caller lists again.

What it does not guarantee: watches do not filter by selector (callers filter), and a
cascade of deletions is not atomic on backends without transactions: a process killed in the
middle of one leaves dependents whose owner is gone (the ``metadata.ownerReferences.uid``
field selector finds them).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from swarmapply.errors import PermanentError, TemporaryError

Object = dict[str, Any]
_S = TypeVar("_S")
EventType = Literal["ADDED", "MODIFIED", "DELETED"]


class StoreError(Exception):
    """Base class of store errors (mixed into the temporary/permanent split below)."""


class NotFound(StoreError, PermanentError):
    """No object of that kind and name exists."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f'{kind} "{name}" not found')
        self.kind = kind
        self.name = name


class AlreadyExists(StoreError, PermanentError):
    """An object of that kind and name exists already."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f'{kind} "{name}" already exists')
        self.kind = kind
        self.name = name


class Conflict(StoreError, TemporaryError):
    """The object changed since the caller read it: read it again and retry."""

    def __init__(self, kind: str, name: str, expected: str, actual: str) -> None:
        super().__init__(
            f'{kind} "{name}" was modified: the update was based on resourceVersion {expected}, '
            f"the object is now at {actual}; read it again and retry"
        )
        self.kind = kind
        self.name = name
        self.expected = expected
        self.actual = actual


class Gone(StoreError, PermanentError):
    """The watch start revision was compacted away: list again and watch from there."""

    def __init__(self, since: int, compacted: int) -> None:
        super().__init__(
            f"revision {since} has been compacted (history starts after {compacted}); "
            "list again and watch from the revision the list returns"
        )
        self.since = since
        self.compacted = compacted


class InvalidObject(StoreError, PermanentError, ValueError):
    """The object is not something the store can hold (no kind, bad name, changed uid...)."""


class BackendError(StoreError, PermanentError):
    """The backend failed in a way retrying will not fix (corrupt file, bad URL...)."""


class StoreUnavailable(StoreError, TemporaryError):
    """The backend could not be reached or stayed busy; retry later (with backoff)."""


def redact_url(url: str) -> str:
    """A store URL fit for messages and logs: any password is replaced by ``***``."""
    return re.sub(r"(?<=://)([^/@:]*):[^/@]*@", r"\1:***@", url)


@dataclass(frozen=True)
class WatchEvent:
    """One change: the object as it is after the change (for DELETED, as it was removed)."""

    type: EventType
    object: Object
    revision: int


@dataclass(frozen=True)
class ListResult:
    """Objects as of ``revision``; watch from ``revision`` to follow later changes."""

    items: list[Object]
    revision: int = 0


@runtime_checkable
class Store(Protocol):
    """The revisioned object store (see the module docstring for the guarantees)."""

    url: str

    def create(self, obj: Object) -> Object:
        """Create ``obj``; assigns uid, resourceVersion, generation and creationTimestamp.

        ``metadata.generateName`` is used when ``metadata.name`` is absent.

        Raises:
            AlreadyExists: the name is taken.
            InvalidObject: no kind, or no valid name.
        """
        ...

    def get(self, kind: str, name: str) -> Object:
        """Return the object. Raises NotFound."""
        ...

    def list(
        self,
        kind: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ListResult:
        """Objects of ``kind`` matching both selectors, sorted by name, as of one revision."""
        ...

    def update(self, obj: Object) -> Object:
        """Replace everything but ``status`` (CAS when resourceVersion is set)."""
        ...

    def update_status(self, obj: Object) -> Object:
        """Replace only ``status`` (CAS when resourceVersion is set)."""
        ...

    def delete(
        self, kind: str, name: str, *, resource_version: str | None = None, cascade: bool = True
    ) -> Object:
        """Delete, or mark for deletion when finalizers remain; returns the last state.

        With ``cascade=False`` dependents keep existing (their reference is removed).
        """
        ...

    def watch(
        self,
        kind: str | None,
        since: int,
        *,
        stop: threading.Event | None = None,
        timeout: float | None = None,
    ) -> Iterator[WatchEvent]:
        """Changes after revision ``since`` (of one kind, or all with None), in order.

        Blocks waiting for new changes; ends when ``stop`` is set or ``timeout`` seconds have
        passed. Raises Gone when ``since`` was compacted.
        """
        ...

    def revision(self) -> int:
        """The latest revision up to which every change is visible."""
        ...

    def compact(self, revision: int) -> int:
        """Drop change history up to ``revision``; returns how many records were removed."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    def __enter__(self: _S) -> _S: ...

    def __exit__(self, *exc: object) -> None: ...
