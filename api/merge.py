"""Three-way merge for apply: what the user last applied, what they apply now, what is live.

A field set in the new configuration is set; a field that was in the last-applied
configuration but is gone from the new one is removed; every other live field (written by a
controller, or by someone else) is left alone. Mappings merge key by key; lists and scalars are
replaced whole (no merge keys). ``status`` and the metadata the store assigns are never part of
a configuration, so apply never touches them. Pure functions: no I/O.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

#: The annotation holding the configuration apply last wrote (JSON).
LAST_APPLIED = "swarmapply.io/last-applied-configuration"
#: Metadata the store assigns; a configuration that carries it does not own it.
_SYSTEM_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
)


def configuration(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an admitted object that apply owns: no status, no system metadata."""
    result = {k: copy.deepcopy(v) for k, v in obj.items() if k != "status"}
    metadata = result.get("metadata", {})
    for key in _SYSTEM_METADATA:
        metadata.pop(key, None)
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
        if not annotations:
            del metadata["annotations"]
    return result


def with_last_applied(config: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration, carrying itself (canonical JSON) in the last-applied annotation."""
    result = copy.deepcopy(dict(config))
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    result.setdefault("metadata", {}).setdefault("annotations", {})[LAST_APPLIED] = text
    return result


def last_applied(live: Mapping[str, Any]) -> dict[str, Any] | None:
    """The configuration last applied to a live object, if apply made or last changed it."""
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None  # someone edited the annotation: treat the object as never applied
    return value if isinstance(value, dict) else None


def three_way_merge(
    last: Mapping[str, Any] | None, new: Mapping[str, Any], live: Mapping[str, Any]
) -> dict[str, Any]:
    """The live object after applying ``new``, given the ``last`` applied configuration."""
    result = copy.deepcopy(dict(live))
    _merge(result, last or {}, new)
    return result


def _merge(target: dict[str, Any], last: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    for key in last:
        if key not in new:
            target.pop(key, None)
    for key, value in new.items():
        current = target.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            previous = last.get(key)
            _merge(current, previous if isinstance(previous, Mapping) else {}, value)
        else:
            target[key] = copy.deepcopy(value)
