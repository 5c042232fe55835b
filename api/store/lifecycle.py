"""The rules of an object's life in the store, as pure functions both backends share.

Each ``plan_*`` function takes the current state of one object (or None) and what the caller
asked for, and returns the :class:`Change` to write (or None when nothing would change). The
backends only supply atomicity and revisions: they read the current state, call the planner,
stamp the new revision on the result and write it if nobody else wrote first. Keeping the
rules here means the two backends cannot drift apart on them.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import string
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from swarmapply.api.store.base import (
    AlreadyExists,
    Conflict,
    EventType,
    InvalidObject,
    NotFound,
    Object,
)

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_KIND = re.compile(r"[A-Z][A-Za-z0-9]*")
#: Fields the store assigns; callers cannot change them through update.
_SYSTEM_METADATA = ("uid", "creationTimestamp", "generation", "deletionTimestamp", "name")
_NAME_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class Change:
    """What a write does: the new state of the object and how watchers see it."""

    type: EventType
    obj: Object
    removed: bool = False


def format_rfc3339(moment: datetime) -> str:
    """An aware datetime as an RFC 3339 UTC timestamp, second precision (as Kubernetes)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339() -> str:
    """The current UTC time as an RFC 3339 timestamp (second precision, as Kubernetes)."""
    return format_rfc3339(datetime.now(timezone.utc))


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime; None when absent or unreadable.

    Fractions of a second are kept to the microsecond (nanoseconds, as the Docker Engine
    writes them, are cut).
    """
    if not isinstance(value, str):
        return None
    text = value.strip().upper().replace("Z", "+00:00")
    fraction = re.search(r"\.([0-9]+)", text)
    micros = int(fraction[1][:6].ljust(6, "0")) if fraction else 0
    try:
        when = datetime.fromisoformat(re.sub(r"\.[0-9]+", "", text))
    except ValueError:
        return None
    when = when.replace(microsecond=micros)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def check_kind(kind: Any) -> str:
    """Validate a kind; raise InvalidObject with what was expected."""
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise InvalidObject(f"kind must be a CamelCase word such as 'Job', got {kind!r}")
    return kind


def check_kind_name(kind: Any, name: Any) -> tuple[str, str]:
    """Validate an object key; raise InvalidObject with what was expected."""
    check_kind(kind)
    if not isinstance(name, str) or len(name) > 63 or not _DNS1123_LABEL.fullmatch(name):
        raise InvalidObject(
            f"{kind} name {name!r} is not a DNS-1123 label (at most 63 characters: lowercase "
            "letters, digits and '-', starting and ending with a letter or digit)"
        )
    return kind, name


def object_key(obj: Any) -> tuple[str, str]:
    """The ``(kind, name)`` of an object, validated."""
    if not isinstance(obj, Mapping):
        raise InvalidObject(f"an object must be a mapping, got {type(obj).__name__}")
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        raise InvalidObject("metadata must be a mapping with a name")
    return check_kind_name(obj.get("kind"), metadata.get("name"))


def check_storable(obj: Mapping[str, Any]) -> None:
    """Check what the store relies on in an object: metadata shapes, and plain JSON content.

    Raises:
        InvalidObject: naming the field and what was expected.
    """
    metadata = obj["metadata"]
    for field in ("labels", "annotations"):
        value = metadata.get(field)
        if value is not None and not (
            isinstance(value, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        ):
            raise InvalidObject(f"metadata.{field} must map strings to strings")
    finalizers = metadata.get("finalizers")
    if finalizers is not None and not (
        isinstance(finalizers, list) and all(isinstance(f, str) for f in finalizers)
    ):
        raise InvalidObject("metadata.finalizers must be a list of strings")
    refs = metadata.get("ownerReferences")
    if refs is not None and not (
        isinstance(refs, list)
        and all(isinstance(r, Mapping) and isinstance(r.get("uid"), str) for r in refs)
    ):
        raise InvalidObject(
            "metadata.ownerReferences must be a list of mappings, each with a string uid"
        )
    try:
        json.dumps(obj, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidObject(f"{obj['kind']} {metadata['name']!r} is not plain JSON: {exc}") from exc


def check_revision(revision: Any) -> int:
    """A revision argument: a non-negative integer."""
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise InvalidObject(f"a revision is a non-negative integer, got {revision!r}")
    return revision


def resource_version(obj: Mapping[str, Any]) -> str | None:
    """The caller's precondition, if any."""
    value = (obj.get("metadata") or {}).get("resourceVersion")
    if value in (None, ""):
        return None
    return str(value)


def generated_name(prefix: str) -> str:
    """``prefix`` plus five random lowercase letters and digits (Kubernetes' generateName)."""
    return prefix + "".join(secrets.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5))


def desired_part(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that is neither metadata nor status: what a change of bumps generation."""
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}


def _check_precondition(current: Object, wanted: str | None) -> None:
    actual = current["metadata"]["resourceVersion"]
    if wanted is not None and wanted != actual:
        raise Conflict(current["kind"], current["metadata"]["name"], wanted, actual)


def _removal_if_released(result: Object) -> Change:
    metadata = result["metadata"]
    if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
        return Change("DELETED", result, removed=True)
    return Change("MODIFIED", result)


def plan_create(current: Object | None, obj: Object, *, now: str) -> Change:
    """A new object: system metadata assigned, ``deletionTimestamp`` cleared.

    Raises:
        AlreadyExists: ``current`` is not None.
        InvalidObject: the object has no valid kind or name.
    """
    kind, name = object_key(obj)
    if current is not None:
        raise AlreadyExists(kind, name)
    result = copy.deepcopy(dict(obj))
    metadata = result["metadata"]
    metadata.pop("deletionTimestamp", None)
    metadata["uid"] = str(uuid.uuid4())
    metadata["generation"] = 1
    metadata["creationTimestamp"] = now
    check_storable(result)
    return Change("ADDED", result)


def plan_update(current: Object | None, obj: Object, *, kind: str, name: str) -> Change | None:
    """Replace labels, annotations, finalizers, owner references and the desired part.

    ``status`` and the system fields of metadata are kept from ``current``. Returns None when
    nothing would change.
    """
    if current is None:
        raise NotFound(kind, name)
    _check_precondition(current, resource_version(obj))
    result = copy.deepcopy(dict(obj))
    metadata = result.setdefault("metadata", {})
    for key in _SYSTEM_METADATA:
        if key in current["metadata"]:
            metadata[key] = current["metadata"][key]
        else:
            metadata.pop(key, None)
    metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
    if "status" in current:
        result["status"] = copy.deepcopy(current["status"])
    else:
        result.pop("status", None)
    if desired_part(result) != desired_part(current):
        metadata["generation"] = int(current["metadata"].get("generation", 1)) + 1
    if result == current:
        return None
    check_storable(result)
    return _removal_if_released(result)


def plan_update_status(
    current: Object | None, obj: Object, *, kind: str, name: str
) -> Change | None:
    """Replace only ``status``; returns None when it is unchanged."""
    if current is None:
        raise NotFound(kind, name)
    _check_precondition(current, resource_version(obj))
    result = copy.deepcopy(current)
    if "status" in obj:
        result["status"] = copy.deepcopy(obj["status"])
    else:
        result.pop("status", None)
    if result == current:
        return None
    check_storable(result)
    return Change("MODIFIED", result)


def plan_delete(
    current: Object | None, *, kind: str, name: str, resource_version: str | None, now: str
) -> Change | None:
    """Mark for deletion (finalizers present) or remove. None when already marked."""
    if current is None:
        raise NotFound(kind, name)
    _check_precondition(current, resource_version)
    result = copy.deepcopy(current)
    metadata = result["metadata"]
    if metadata.get("finalizers"):
        if metadata.get("deletionTimestamp"):
            return None
        metadata["deletionTimestamp"] = now
        return Change("MODIFIED", result)
    metadata.setdefault("deletionTimestamp", now)
    return Change("DELETED", result, removed=True)


def plan_release_owner(
    current: Object | None, owner_uid: str, *, now: str, delete_orphan: bool = True
) -> Change | None:
    """The owner with ``owner_uid`` is gone: drop the reference.

    With ``delete_orphan`` an object left with no owner at all is deleted (a cascade);
    without it the object stays, owned by nobody. Returns None when the object is already
    gone or does not reference that owner.
    """
    if current is None:
        return None
    refs = current["metadata"].get("ownerReferences") or []
    remaining = [
        ref for ref in refs if not (isinstance(ref, Mapping) and ref.get("uid") == owner_uid)
    ]
    if len(remaining) == len(refs):
        return None
    if not remaining and delete_orphan:
        kind, name = current["kind"], current["metadata"]["name"]
        return plan_delete(current, kind=kind, name=name, resource_version=None, now=now)
    result = copy.deepcopy(current)
    result["metadata"]["ownerReferences"] = remaining
    return Change("MODIFIED", result)


def stamp(change: Change, revision: int) -> Change:
    """The change with its revision recorded as the object's resourceVersion."""
    change.obj["metadata"]["resourceVersion"] = str(revision)
    return change


def owner_uids(obj: Mapping[str, Any]) -> list[str]:
    """The uids an object names as its owners."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return [ref["uid"] for ref in refs if isinstance(ref, Mapping) and "uid" in ref]
