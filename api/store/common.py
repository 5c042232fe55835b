"""What every backend does the same way, on top of one primitive: ``_mutate``.

A backend implements ``_mutate(kind, name, planner, cascade)`` — read the current state,
call the planner (from :mod:`swarmapply.api.store.lifecycle`), write its change atomically
under a new revision, cascade removals to dependents — plus ``_load`` and ``_list``. The
public operations (validation, generateName, selectors, sorting) live here once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from swarmapply.api.selectors import (
    Requirement,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from swarmapply.api.store.base import AlreadyExists, InvalidObject, ListResult, NotFound, Object
from swarmapply.api.store.lifecycle import (
    Change,
    check_kind,
    check_kind_name,
    generated_name,
    now_rfc3339,
    object_key,
    plan_create,
    plan_delete,
    plan_update,
    plan_update_status,
)

_S = TypeVar("_S", bound="StoreBase")
Planner = Callable[[Object | None], Change | None]

#: How many random names ``generateName`` tries before giving up.
GENERATE_NAME_ATTEMPTS = 8


class StoreBase:
    """The public store operations, written once against the backend primitives."""

    url: str = ""

    # -- backend primitives -------------------------------------------------------------
    def _mutate(self, kind: str, name: str, planner: Planner, *, cascade: bool = True) -> Object:
        """Apply ``planner`` to the current state atomically; return the resulting state."""
        raise NotImplementedError

    def _load(self, kind: str, name: str) -> Object | None:
        raise NotImplementedError

    def _list(self, kind: str, fields: Sequence[Requirement]) -> tuple[list[Object], int]:
        """Objects of ``kind`` as of one revision (``fields`` may be used to narrow)."""
        raise NotImplementedError

    # -- public operations --------------------------------------------------------------
    def create(self, obj: Object) -> Object:
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise InvalidObject("an object needs a metadata mapping with a name or generateName")
        metadata = obj["metadata"]
        prefix = metadata.get("generateName")
        if metadata.get("name") or not prefix:
            kind, name = object_key(obj)
            return self._create_named(kind, name, obj)
        if not isinstance(prefix, str):
            raise InvalidObject(f"metadata.generateName must be a string, got {prefix!r}")
        for _ in range(GENERATE_NAME_ATTEMPTS):
            candidate = {**obj, "metadata": {**metadata, "name": generated_name(prefix)}}
            kind, name = object_key(candidate)
            try:
                return self._create_named(kind, name, candidate)
            except AlreadyExists:
                continue
        raise AlreadyExists(str(obj.get("kind")), f"{prefix}*")

    def _create_named(self, kind: str, name: str, obj: Object) -> Object:
        now = now_rfc3339()
        return self._mutate(kind, name, lambda current: plan_create(current, obj, now=now))

    def get(self, kind: str, name: str) -> Object:
        check_kind_name(kind, name)
        obj = self._load(kind, name)
        if obj is None:
            raise NotFound(kind, name)
        return obj

    def list(
        self,
        kind: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ListResult:
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector)
        check_kind(kind)
        items, revision = self._list(kind, fields)
        selected = [
            obj
            for obj in items
            if labels_match(labels, obj["metadata"].get("labels")) and fields_match(fields, obj)
        ]
        selected.sort(key=lambda obj: obj["metadata"]["name"])
        return ListResult(items=selected, revision=revision)

    def update(self, obj: Object) -> Object:
        kind, name = object_key(obj)
        return self._mutate(
            kind, name, lambda current: plan_update(current, obj, kind=kind, name=name)
        )

    def update_status(self, obj: Object) -> Object:
        kind, name = object_key(obj)
        return self._mutate(
            kind, name, lambda current: plan_update_status(current, obj, kind=kind, name=name)
        )

    def delete(
        self, kind: str, name: str, *, resource_version: str | None = None, cascade: bool = True
    ) -> Object:
        check_kind_name(kind, name)
        now = now_rfc3339()
        return self._mutate(
            kind,
            name,
            lambda current: plan_delete(
                current, kind=kind, name=name, resource_version=resource_version, now=now
            ),
            cascade=cascade,
        )

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError
