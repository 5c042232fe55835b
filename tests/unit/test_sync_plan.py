"""The decisions of ``swarmapply sync``: ownership, prune, the guard, drift, debouncing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from watchdog.events import (
    DirModifiedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)

from swarmapply.api.admission import AdmittedObject
from swarmapply.api.selectors import parse_label_selector
from swarmapply.cli.sync_plan import (
    FILE_ANNOTATION,
    SOURCE_LABEL,
    Desired,
    file_of,
    foreign_owner,
    marked,
    outcome,
    owner_of,
    plan_pass,
    source_id,
)
from swarmapply.cli.sync_watch import Debounce, relevant

SOURCE = "dir-0123456789abcdef"


def job(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "swarmapply.io/v1", "kind": "Job", "metadata": metadata,
            "spec": {"tasks": [{"name": "a", "image": "busybox", "cores": 1}]}}  # fmt: skip


def desired(file: str, name: str, labels: dict[str, str] | None = None) -> Desired:
    obj = job(name, labels)
    return Desired(file, marked(AdmittedObject(file, 0, obj, None, obj), SOURCE, file))


def owned(name: str, file: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return desired(file, name, labels).item.obj


def names(objs: Any) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objs)


def test_marking_labels_the_object_and_its_config_and_keeps_the_files_own_labels() -> None:
    item = desired("jobs/a.yaml", "a", {"team": "ml"}).item
    for obj in (item.obj, item.config):
        assert obj["metadata"]["labels"] == {"team": "ml", SOURCE_LABEL: SOURCE}
        assert file_of(obj) == "jobs/a.yaml" and owner_of(obj) == SOURCE
        assert obj["metadata"]["annotations"] == {FILE_ANNOTATION: "jobs/a.yaml"}


def test_the_source_id_is_stable_through_links_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    os.symlink(tmp_path / "repo", tmp_path / "link")
    ids = {source_id(str(tmp_path / "repo")), source_id(str(tmp_path / "link"))}
    assert len(ids) == 1
    [value] = ids
    assert value.startswith("dir-") and len(value) <= 63
    assert source_id(str(tmp_path)) != value


def test_objects_of_valid_files_are_applied_and_those_gone_are_pruned() -> None:
    plan = plan_pass(
        [desired("a.yaml", "a"), desired("b.yaml", "b")],
        [],
        [owned("a", "a.yaml"), owned("old", "old.yaml")],
        prune=True,
        force_prune=True,
    )
    assert [d.key for d in plan.apply] == [("Job", "a"), ("Job", "b")]
    assert names(plan.prune) == ["old"] and plan.guard is None and not plan.problems


def test_without_prune_nothing_is_deleted() -> None:
    plan = plan_pass([desired("a.yaml", "a")], [], [owned("a", "a.yaml"), owned("b", "b.yaml")])
    assert plan.prune == () and plan.guard is None


def test_a_failed_file_keeps_what_it_made_before_and_other_files_still_sync() -> None:
    plan = plan_pass(
        [desired("good.yaml", "g")],
        ["bad.yaml"],
        [owned("g", "good.yaml"), owned("b1", "bad.yaml"), owned("b2", "bad.yaml")],
        prune=True,
        force_prune=True,
    )
    assert names(plan.kept) == ["b1", "b2"] and plan.prune == ()
    assert [d.key for d in plan.apply] == [("Job", "g")]


def test_a_document_removed_from_a_valid_file_is_pruned() -> None:
    plan = plan_pass(
        [desired("jobs.yaml", "a"), desired("jobs.yaml", "b")],
        [],
        [owned("a", "jobs.yaml"), owned("b", "jobs.yaml"), owned("c", "jobs.yaml")],
        prune=True,
    )
    assert names(plan.prune) == ["c"] and plan.guard is None


def test_an_object_moved_to_another_file_is_applied_not_pruned() -> None:
    plan = plan_pass([desired("new.yaml", "a")], ["old.yaml"], [owned("a", "old.yaml")],
                     prune=True)  # fmt: skip
    assert [d.file for d in plan.apply] == ["new.yaml"] and plan.prune == () and plan.kept == ()


def test_the_mass_deletion_guard_refuses_more_than_half_unless_forced() -> None:
    live = [owned(n, f"{n}.yaml") for n in "abcd"]
    two = plan_pass([desired("a.yaml", "a"), desired("b.yaml", "b")], [], live, prune=True)
    assert names(two.prune) == ["c", "d"] and two.guard is None  # exactly half: allowed
    three = plan_pass([desired("a.yaml", "a")], [], live, prune=True)
    assert three.prune == () and three.guard is not None
    assert "would prune 3 of the 4 objects" in three.guard and "--force-prune" in three.guard
    assert [d.key for d in three.apply] == [("Job", "a")]  # what the files say still applies
    forced = plan_pass([desired("a.yaml", "a")], [], live, prune=True, force_prune=True)
    assert names(forced.prune) == ["b", "c", "d"]


def test_an_object_defined_in_two_files_is_applied_from_neither_nor_pruned() -> None:
    plan = plan_pass(
        [desired("x.yaml", "dup"), desired("y.yaml", "dup"), desired("z.yaml", "z")],
        [],
        [owned("dup", "x.yaml")],
        prune=True,
    )
    assert [d.key for d in plan.apply] == [("Job", "z")] and plan.prune == ()
    assert [f for f, _ in plan.problems] == ["x.yaml", "y.yaml"]
    assert "also defined in y.yaml" in plan.problems[0][1]


def test_the_selector_limits_what_is_applied_and_pruned() -> None:
    selector = parse_label_selector("team=ml")
    plan = plan_pass(
        [desired("a.yaml", "a", {"team": "ml"}), desired("b.yaml", "b", {"team": "web"})],
        [],
        [owned("c", "c.yaml", {"team": "ml"}), owned("d", "d.yaml", {"team": "web"}),
         owned("a", "a.yaml", {"team": "ml"})],
        selector=selector,
        prune=True,
    )  # fmt: skip
    assert [d.key for d in plan.apply] == [("Job", "a")]
    assert names(plan.prune) == ["c"]


def test_ownership_other_sources_never_unowned_only_when_adopting() -> None:
    assert foreign_owner(None, SOURCE, adopt=False) is None
    assert foreign_owner(owned("a", "a.yaml"), SOURCE, adopt=False) is None
    other = job("a", {SOURCE_LABEL: "dir-ffffffffffffffff"})
    assert "belongs to sync source dir-ffffffffffffffff" in str(foreign_owner(other, SOURCE, True))
    assert "--adopt" in str(foreign_owner(job("a"), SOURCE, adopt=False))
    assert foreign_owner(job("a"), SOURCE, adopt=True) is None


@pytest.mark.parametrize(
    ("live", "want", "last", "known", "expected"),
    [
        (None, {"x": 1}, None, False, "created"),
        (None, {"x": 1}, None, True, "recreated"),
        ({"x": 1}, {"x": 1}, {"c": 1}, True, "unchanged"),
        ({"x": 2}, {"x": 1}, {"c": 1}, True, "repaired"),  # the file is as last applied
        ({"x": 2}, {"x": 1}, {"c": 0}, True, "configured"),  # the file changed
        ({"x": 2}, {"x": 1}, None, False, "configured"),  # adopted: never applied by us
    ],
)
def test_outcome_tells_an_edit_from_a_repair(
    live: Any, want: Any, last: Any, known: bool, expected: str
) -> None:
    assert outcome(live, want, last, {"c": 1}, known) == expected


def test_debounce_waits_for_quiet_but_never_longer_than_the_longest_delay() -> None:
    debounce = Debounce(quiet=0.3, longest=2.0)
    assert debounce.due_at() is None
    debounce.note(10.0)
    assert debounce.due_at() == pytest.approx(10.3)
    for step in range(1, 50):  # an event every 0.1 s for 5 s
        debounce.note(10.0 + step * 0.1)
    assert debounce.due_at() == pytest.approx(12.0)  # first + longest, not last + quiet
    assert debounce.take() == 50 and debounce.due_at() is None
    debounce.note(20.0)
    assert debounce.due_at() == pytest.approx(20.3)


def test_only_changes_to_manifests_or_directories_count() -> None:
    assert relevant(FileCreatedEvent("/d/a.yaml"))
    assert relevant(FileModifiedEvent("/d/a.json"))
    assert relevant(FileMovedEvent("/d/.a.yaml.swp", "/d/a.yaml"))  # an editor's rename
    assert not relevant(FileModifiedEvent("/d/.a.yaml.swp"))
    assert not relevant(FileModifiedEvent("/d/notes.txt"))
    assert not relevant(FileOpenedEvent("/d/a.yaml"))  # a pass reading the file
    assert not relevant(FileClosedNoWriteEvent("/d/a.yaml"))
    assert not relevant(DirModifiedEvent("/d/sub"))
