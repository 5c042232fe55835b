"""Three-way merge for apply (pure)."""

from __future__ import annotations

from typing import Any

from swarmapply.api.merge import (
    LAST_APPLIED,
    configuration,
    last_applied,
    three_way_merge,
    with_last_applied,
)


def obj(**fields: Any) -> dict[str, Any]:
    return {"kind": "Job", "metadata": {"name": "a"}, **fields}


def test_new_fields_are_set_and_removed_fields_are_removed() -> None:
    last = obj(spec={"priority": 1, "ttl": 5})
    new = obj(spec={"priority": 2})
    live = obj(spec={"priority": 1, "ttl": 5})
    assert three_way_merge(last, new, live)["spec"] == {"priority": 2}


def test_fields_others_wrote_are_kept() -> None:
    last = obj(spec={"priority": 1})
    new = obj(spec={"priority": 1})
    live = obj(spec={"priority": 1, "extra": "by a controller"}, status={"phase": "Running"})
    live["metadata"]["labels"] = {"owner": "someone"}
    merged = three_way_merge(last, new, live)
    assert merged["spec"]["extra"] == "by a controller"
    assert merged["status"] == {"phase": "Running"}
    assert merged["metadata"]["labels"] == {"owner": "someone"}


def test_a_removed_mapping_goes_whole_and_lists_are_replaced() -> None:
    last = obj(spec={"network": {"name": "n", "subnet": "10.0.0.0/24"}, "tasks": [1, 2]})
    new = obj(spec={"tasks": [3]})
    live = obj(spec={"network": {"name": "n", "subnet": "10.0.0.0/24"}, "tasks": [1, 2]})
    assert three_way_merge(last, new, live)["spec"] == {"tasks": [3]}


def test_without_a_last_applied_configuration_nothing_is_removed() -> None:
    live = obj(spec={"priority": 1, "ttl": 5})
    assert three_way_merge(None, obj(spec={"priority": 2}), live)["spec"] == {
        "priority": 2,
        "ttl": 5,
    }


def test_configuration_drops_status_and_system_metadata_and_round_trips() -> None:
    admitted = obj(spec={"p": 1}, status={"phase": "x"})
    admitted["metadata"].update(uid="u", resourceVersion="3", annotations={LAST_APPLIED: "{}"})
    config = configuration(admitted)
    assert config == obj(spec={"p": 1})
    stored = with_last_applied(config)
    assert last_applied(stored) == config
    assert last_applied(obj()) is None
    broken = obj()
    broken["metadata"]["annotations"] = {LAST_APPLIED: "{not json"}
    assert last_applied(broken) is None
