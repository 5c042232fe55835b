"""Events: what happened to an object and why, recorded once and counted when it repeats.

An Event's name is derived from what it says (the involved object's uid, kind and name, the
reason, message, type and reporting component), so the same occurrence reported again — by a
retrying controller, or by a restarted one — finds the Event already there and raises its
``count`` and ``lastTimestamp`` instead of adding another, as Kubernetes aggregates Events.
Different messages make different Events.

Recording an Event never raises: a store that refuses it is logged, since losing an Event must
not stop a controller. Two writers bumping one Event at once may lose one count (the update is
compare-and-swap, retried a few times, then given up with a log line).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from swarmapply.api.store import AlreadyExists, Conflict, NotFound, Object, Store
from swarmapply.api.store.lifecycle import now_rfc3339

log = logging.getLogger(__name__)

#: Characters of the object's name kept in the Event's name (plus '-' and 10 hex digits).
NAME_PREFIX = 52
ATTEMPTS = 3


def event_object(
    obj: Object, reason: str, message: str, *, component: str, type_: str = "Normal", now: str
) -> Object:
    """The Event about ``obj`` (pure), named after what it says.

    Args:
        obj: The involved object.
        reason: A short CamelCase reason.
        message: What happened, for a person.
        component: The reporting component.
        type_: ``Normal`` or ``Warning``.
        now: The time of the occurrence (RFC 3339).
    """
    meta: dict[str, Any] = obj.get("metadata", {})
    involved = {"kind": str(obj["kind"]), "name": str(meta["name"])}
    if "apiVersion" in obj:
        involved["apiVersion"] = str(obj["apiVersion"])
    if meta.get("uid"):
        involved["uid"] = str(meta["uid"])
    said = "\0".join(
        [involved.get("uid", ""), involved["kind"], involved["name"], reason, message, type_,
         component]
    )  # fmt: skip
    digest = hashlib.sha256(said.encode()).hexdigest()[:10]
    prefix = involved["name"][:NAME_PREFIX].rstrip("-.")
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Event",
        "metadata": {"name": f"{prefix}-{digest}"},
        "involvedObject": involved,
        "type": type_,
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "count": 1,
        "firstTimestamp": now,
        "lastTimestamp": now,
    }


def record_event(
    store: Store,
    obj: Object,
    reason: str,
    message: str,
    *,
    component: str,
    type_: str = "Normal",
) -> Object | None:
    """Record an Event about ``obj``, or count it again if it was recorded before.

    Returns:
        The Event as stored, or None when the store refused it (logged).
    """
    now = now_rfc3339()
    event = event_object(obj, reason, message, component=component, type_=type_, now=now)
    name = event["metadata"]["name"]
    try:
        for _ in range(ATTEMPTS):
            try:
                current = store.get("Event", name)
            except NotFound:
                try:
                    return store.create(event)
                except AlreadyExists:
                    continue  # recorded meanwhile by another writer: count it
            current["count"] = int(current.get("count") or 1) + 1
            current["lastTimestamp"] = now
            try:
                return store.update(current)
            except (Conflict, NotFound):
                continue
        log.warning("%s: Event %s %s: gave up counting after %d attempts", component,
                    reason, name, ATTEMPTS)  # fmt: skip
    except Exception:
        log.exception("%s: could not record Event %s: %s", component, reason, message)
    return None


__all__ = ["event_object", "record_event"]
