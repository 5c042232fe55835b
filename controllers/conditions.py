"""Status conditions, Kubernetes style: one entry per type, stable transition times (pure).

``lastTransitionTime`` changes only when a condition's ``status`` flips, so writing the same
observation again leaves the object unchanged and controllers can compare before writing.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any


def find_condition(status: Mapping[str, Any] | None, type_: str) -> dict[str, Any] | None:
    """The condition of ``type_`` in ``status.conditions``, or None."""
    for condition in (status or {}).get("conditions") or []:
        if condition.get("type") == type_:
            return dict(condition)
    return None


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    type_: str,
    status: str,
    reason: str,
    message: str,
    *,
    now: str,
) -> list[dict[str, Any]]:
    """A copy of ``conditions`` with ``type_`` set (appended when new).

    Args:
        conditions: The current list (not modified).
        type_: The condition type, e.g. ``Scheduled``.
        status: ``"True"``, ``"False"`` or ``"Unknown"``.
        reason: A CamelCase reason.
        message: What a person should know.
        now: An RFC 3339 time, used when the status flips or the condition is new.
    """
    result = [dict(copy.deepcopy(c)) for c in conditions or []]
    for condition in result:
        if condition.get("type") == type_:
            if condition.get("status") != status:
                condition["lastTransitionTime"] = now
            condition.update(status=status, reason=reason, message=message)
            return result
    result.append(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
        }
    )
    return result


__all__ = ["find_condition", "set_condition"]
