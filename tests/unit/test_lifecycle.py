"""The object lifecycle rules both store backends share (pure planners)."""

from __future__ import annotations

from typing import Any

import pytest

from swarmapply.api.store import AlreadyExists, Conflict, InvalidObject, NotFound
from swarmapply.api.store.lifecycle import (
    check_kind_name,
    check_revision,
    generated_name,
    plan_create,
    plan_delete,
    plan_release_owner,
    plan_update,
    plan_update_status,
    stamp,
)

NOW = "2026-01-01T00:00:00Z"


def stored(**extra: Any) -> dict[str, Any]:
    obj = {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Job",
        "metadata": {
            "name": "a",
            "uid": "u",
            "generation": 1,
            "creationTimestamp": NOW,
            "resourceVersion": "5",
        },
        "spec": {"priority": 1},
    }
    obj.update(extra)
    return obj


def test_create_assigns_system_fields_and_drops_deletion_timestamp() -> None:
    change = plan_create(
        None,
        {"kind": "Job", "metadata": {"name": "a", "deletionTimestamp": "x"}, "spec": {}},
        now=NOW,
    )
    meta = change.obj["metadata"]
    assert change.type == "ADDED"
    assert meta["generation"] == 1 and meta["creationTimestamp"] == NOW and meta["uid"]
    assert "deletionTimestamp" not in meta
    assert stamp(change, 7).obj["metadata"]["resourceVersion"] == "7"


def test_create_over_existing_is_already_exists() -> None:
    with pytest.raises(AlreadyExists):
        plan_create(stored(), stored(), now=NOW)


@pytest.mark.parametrize(
    ("kind", "name"), [("job", "a"), ("Job", "A"), ("Job", "a_b"), ("", "a"), ("Job", 3)]
)
def test_bad_keys_are_invalid(kind: Any, name: Any) -> None:
    with pytest.raises(InvalidObject):
        check_kind_name(kind, name)


def test_generated_names_have_a_random_suffix() -> None:
    names = {generated_name("x-") for _ in range(50)}
    assert len(names) > 45 and all(len(n) == 7 for n in names)


def test_update_checks_resource_version() -> None:
    with pytest.raises(Conflict, match="resourceVersion 4"):
        plan_update(
            stored(),
            {**stored(), "metadata": {"name": "a", "resourceVersion": "4"}},
            kind="Job",
            name="a",
        )
    with pytest.raises(NotFound):
        plan_update(None, stored(), kind="Job", name="a")


def test_update_bumps_generation_on_spec_change_only() -> None:
    change = plan_update(stored(), {**stored(), "spec": {"priority": 2}}, kind="Job", name="a")
    assert change is not None and change.obj["metadata"]["generation"] == 2
    relabel = stored()
    relabel["metadata"] = {**relabel["metadata"], "labels": {"x": "y"}}
    change = plan_update(stored(), relabel, kind="Job", name="a")
    assert change is not None and change.obj["metadata"]["generation"] == 1
    assert plan_update(stored(), stored(), kind="Job", name="a") is None


def test_update_removing_last_finalizer_of_terminating_object_removes_it() -> None:
    current = stored()
    current["metadata"] = {**current["metadata"], "finalizers": ["f"], "deletionTimestamp": NOW}
    released = stored()
    released["metadata"] = {**current["metadata"], "finalizers": []}
    change = plan_update(current, released, kind="Job", name="a")
    assert change is not None and change.type == "DELETED" and change.removed


def test_update_status_ignores_everything_but_status() -> None:
    change = plan_update_status(
        stored(),
        {**stored(), "spec": {"priority": 9}, "status": {"phase": "Running"}},
        kind="Job",
        name="a",
    )
    assert change is not None
    assert change.obj["spec"] == {"priority": 1} and change.obj["status"] == {"phase": "Running"}


def test_delete_with_finalizers_marks_then_is_idempotent() -> None:
    current = stored()
    current["metadata"] = {**current["metadata"], "finalizers": ["f"]}
    change = plan_delete(current, kind="Job", name="a", resource_version=None, now=NOW)
    assert change is not None and change.type == "MODIFIED" and not change.removed
    assert plan_delete(change.obj, kind="Job", name="a", resource_version=None, now=NOW) is None


def test_release_owner_deletes_orphans_unless_asked_not_to() -> None:
    current = stored()
    current["metadata"] = {**current["metadata"], "ownerReferences": [{"uid": "o1"}]}
    gone = plan_release_owner(current, "o1", now=NOW)
    assert gone is not None and gone.removed
    kept = plan_release_owner(current, "o1", now=NOW, delete_orphan=False)
    assert kept is not None and not kept.removed
    assert kept.obj["metadata"]["ownerReferences"] == []
    assert plan_release_owner(current, "other", now=NOW) is None
    assert plan_release_owner(None, "o1", now=NOW) is None


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"ownerReferences": [{"uid": 2**64}]}, "ownerReferences"),
        ({"ownerReferences": ["junk"]}, "ownerReferences"),
        ({"ownerReferences": {"uid": "u"}}, "ownerReferences"),
        ({"finalizers": "f"}, "finalizers"),
        ({"finalizers": [1]}, "finalizers"),
        ({"labels": {"a": 1}}, "labels"),
        ({"annotations": ["x"]}, "annotations"),
    ],
)
def test_malformed_metadata_is_invalid(metadata: dict[str, Any], message: str) -> None:
    obj = {"kind": "Job", "metadata": {"name": "a", **metadata}, "spec": {}}
    with pytest.raises(InvalidObject, match=message):
        plan_create(None, obj, now=NOW)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1, 2}, object()])
def test_content_that_is_not_plain_json_is_invalid(value: Any) -> None:
    with pytest.raises(InvalidObject, match="not plain JSON"):
        plan_create(None, {"kind": "Job", "metadata": {"name": "a"}, "spec": {"x": value}}, now=NOW)
    with pytest.raises(InvalidObject, match="not plain JSON"):
        plan_update_status(stored(), {**stored(), "status": {"x": value}}, kind="Job", name="a")


@pytest.mark.parametrize("revision", [-1, "0", 1.5, True, None])
def test_revision_arguments_are_non_negative_integers(revision: Any) -> None:
    with pytest.raises(InvalidObject, match="non-negative integer"):
        check_revision(revision)
    assert check_revision(0) == 0
