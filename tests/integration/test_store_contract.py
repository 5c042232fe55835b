"""The store contract, run unchanged against every backend (SQLite, and MongoDB protocol)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from swarmapply.api.selectors import InvalidSelector
from swarmapply.api.store import (
    AlreadyExists,
    Conflict,
    Gone,
    InvalidObject,
    NotFound,
    Store,
    WatchEvent,
    open_store,
)


@pytest.fixture
def store_url(store_url: str) -> str:
    """Each backend in turn; on MongoDB, compaction may take what was just written."""
    if store_url.startswith("mongodb:"):
        return f"{store_url}?min_compact_age=0"  # compaction tests compact what they just wrote
    return store_url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """The store as shipped: with the backend's own poll interval."""
    s = open_store(store_url)
    yield s
    s.close()


def job(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": spec or {"priority": 0},
    }


def task(name: str, owner: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Task",
        "metadata": {"name": name},
        "spec": spec,
    }
    if owner is not None:
        obj["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "swarmapply.io/v1",
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
            }
        ]
    return obj


def collect(store: Store, kind: str | None, since: int, count: int, timeout: float = 10.0):
    """The first ``count`` events after ``since`` (fewer if ``timeout`` runs out)."""
    events: list[WatchEvent] = []
    for event in store.watch(kind, since, timeout=timeout):
        events.append(event)
        if len(events) == count:
            break
    return events


# -- create / get -----------------------------------------------------------------------
def test_create_assigns_system_metadata(store: Store) -> None:
    created = store.create(job("a"))
    meta = created["metadata"]
    assert meta["uid"] and meta["generation"] == 1 and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) == store.revision()
    assert store.get("Job", "a") == created


def test_create_twice_is_already_exists(store: Store) -> None:
    store.create(job("a"))
    with pytest.raises(AlreadyExists, match='Job "a" already exists'):
        store.create(job("a"))


def test_generate_name_makes_unique_names(store: Store) -> None:
    obj = job("x")
    obj["metadata"] = {"generateName": "run-"}
    names = {store.create(obj)["metadata"]["name"] for _ in range(5)}
    assert len(names) == 5 and all(n.startswith("run-") and len(n) == 9 for n in names)


@pytest.mark.parametrize("name", ["Bad_Name", "", "-x", "a" * 64, None])
def test_invalid_names_are_rejected_before_any_write(store: Store, name: Any) -> None:
    before = store.revision()
    with pytest.raises(InvalidObject, match=r"DNS-1123|name"):
        store.create({"kind": "Job", "metadata": {"name": name}, "spec": {}})
    assert store.revision() == before


def test_get_missing_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match='Job "nope" not found'):
        store.get("Job", "nope")


def test_user_data_is_never_a_query_operator(store: Store) -> None:
    store.create(job("a"))
    with pytest.raises(InvalidObject):
        store.get("Job", {"$gt": ""})  # type: ignore[arg-type]
    labelled = job("b")
    labelled["metadata"]["labels"] = {"example.com/x": "1"}
    labelled["metadata"]["annotations"] = {"$where": "1", "a.b": "c"}
    labelled["spec"] = {"environment": {"$set": "x", "a.b": "y"}}
    created = store.create(labelled)
    assert store.get("Job", "b") == created
    assert [o["metadata"]["name"] for o in store.list("Job", "example.com/x=1").items] == ["b"]


# -- update / update_status -------------------------------------------------------------
def test_update_is_compare_and_swap(store: Store) -> None:
    created = store.create(job("a", priority=1))
    first = store.update({**created, "spec": {"priority": 2}})
    assert first["metadata"]["generation"] == 2
    with pytest.raises(Conflict, match="resourceVersion"):
        store.update({**created, "spec": {"priority": 3}})
    assert store.get("Job", "a")["spec"] == {"priority": 2}


def test_update_without_resource_version_is_unconditional(store: Store) -> None:
    created = store.create(job("a", priority=1))
    obj = {**created, "metadata": {"name": "a"}, "spec": {"priority": 5}}
    updated = store.update(obj)
    assert updated["spec"] == {"priority": 5}
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]


def test_generation_bumps_only_on_spec_change(store: Store) -> None:
    created = store.create(job("a", priority=1))
    relabelled = store.update(
        {**created, "metadata": {**created["metadata"], "labels": {"team": "x"}}}
    )
    assert relabelled["metadata"]["generation"] == 1
    assert relabelled["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    respecced = store.update({**relabelled, "spec": {"priority": 9}})
    assert respecced["metadata"]["generation"] == 2


def test_noop_update_writes_nothing(store: Store) -> None:
    created = store.create(job("a"))
    before = store.revision()
    assert store.update(created) == created
    assert store.revision() == before


def test_update_keeps_status_and_system_fields(store: Store) -> None:
    created = store.create(job("a"))
    with_status = store.update_status({**created, "status": {"phase": "Running"}})
    tampered = {
        **with_status,
        "metadata": {**with_status["metadata"], "uid": "forged", "generation": 99},
        "status": {"phase": "Failed"},
        "spec": {"priority": 4},
    }
    updated = store.update(tampered)
    assert updated["status"] == {"phase": "Running"}
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["generation"] == 2


def test_update_status_changes_only_status(store: Store) -> None:
    created = store.create(job("a", priority=1))
    updated = store.update_status(
        {**created, "spec": {"priority": 7}, "status": {"phase": "Pending"}}
    )
    assert updated["spec"] == {"priority": 1}
    assert updated["status"] == {"phase": "Pending"}
    assert updated["metadata"]["generation"] == 1
    with pytest.raises(Conflict):
        store.update_status({**created, "status": {"phase": "Failed"}})


def test_update_of_missing_object_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.update(job("ghost"))


# -- delete, finalizers, owner references ----------------------------------------------
def test_delete_removes(store: Store) -> None:
    store.create(job("a"))
    deleted = store.delete("Job", "a")
    assert deleted["metadata"]["deletionTimestamp"]
    with pytest.raises(NotFound):
        store.get("Job", "a")
    with pytest.raises(NotFound):
        store.delete("Job", "a")
    assert store.create(job("a"))["metadata"]["generation"] == 1


def test_delete_with_stale_resource_version_conflicts(store: Store) -> None:
    created = store.create(job("a"))
    store.update({**created, "spec": {"priority": 3}})
    with pytest.raises(Conflict):
        store.delete("Job", "a", resource_version=created["metadata"]["resourceVersion"])


def test_finalizers_hold_deletion_until_removed(store: Store) -> None:
    obj = job("a")
    obj["metadata"]["finalizers"] = ["swarmapply.io/network"]
    created = store.create(obj)
    marked = store.delete("Job", "a")
    assert marked["metadata"]["deletionTimestamp"]
    assert store.get("Job", "a")["metadata"]["deletionTimestamp"]
    assert store.delete("Job", "a") == marked  # deleting again changes nothing
    since = store.revision()
    released = {**marked, "metadata": {**marked["metadata"], "finalizers": []}}
    store.update(released)
    with pytest.raises(NotFound):
        store.get("Job", "a")
    events = collect(store, "Job", since, 1)
    assert [e.type for e in events] == ["DELETED"]
    assert events[0].object["metadata"]["uid"] == created["metadata"]["uid"]


def test_deleting_an_owner_cascades_to_dependents(store: Store) -> None:
    owner = store.create(job("j"))
    for i in range(3):
        store.create(task(f"j-t{i}", owner, job="j"))
    store.create(task("other", None, job="k"))
    store.delete("Job", "j")
    assert [o["metadata"]["name"] for o in store.list("Task").items] == ["other"]


def test_orphaning_delete_keeps_dependents_without_the_reference(store: Store) -> None:
    owner = store.create(job("j"))
    store.create(task("j-t0", owner, job="j"))
    store.delete("Job", "j", cascade=False)
    kept = store.get("Task", "j-t0")
    assert kept["metadata"]["ownerReferences"] == []


def test_dependent_with_another_owner_survives(store: Store) -> None:
    first, second = store.create(job("a")), store.create(job("b"))
    shared = task("shared", first)
    shared["metadata"]["ownerReferences"] += task("x", second)["metadata"]["ownerReferences"]
    store.create(shared)
    store.delete("Job", "a")
    refs = store.get("Task", "shared")["metadata"]["ownerReferences"]
    assert [r["name"] for r in refs] == ["b"]
    store.delete("Job", "b")
    with pytest.raises(NotFound):
        store.get("Task", "shared")


def test_cascade_waits_for_the_owners_finalizers(store: Store) -> None:
    obj = job("j")
    obj["metadata"]["finalizers"] = ["f"]
    owner = store.create(obj)
    store.create(task("j-t0", owner))
    marked = store.delete("Job", "j")
    assert store.get("Task", "j-t0")
    store.update({**marked, "metadata": {**marked["metadata"], "finalizers": []}})
    with pytest.raises(NotFound):
        store.get("Task", "j-t0")


# -- list and selectors -----------------------------------------------------------------
def test_list_label_selectors(store: Store) -> None:
    for name, labels in [
        ("a", {"app": "web", "tier": "fe"}),
        ("b", {"app": "web", "tier": "be"}),
        ("c", {"app": "db"}),
        ("d", {}),
    ]:
        obj = job(name)
        obj["metadata"]["labels"] = labels
        store.create(obj)

    def names(selector: str) -> list[str]:
        return [o["metadata"]["name"] for o in store.list("Job", selector).items]

    assert names("") == ["a", "b", "c", "d"]
    assert names("app=web") == ["a", "b"]
    assert names("app==web,tier!=fe") == ["b"]
    assert names("app!=web") == ["c", "d"]
    assert names("tier in (fe,be)") == ["a", "b"]
    assert names("app notin (web)") == ["c", "d"]
    assert names("tier") == ["a", "b"]
    assert names("!tier") == ["c", "d"]
    with pytest.raises(InvalidSelector, match="cannot parse"):
        store.list("Job", "app=web=x")


def test_list_field_selectors(store: Store) -> None:
    owner = store.create(job("j"))
    for i, node in enumerate(["n1", "n2", "n1"]):
        created = store.create(task(f"j-t{i}", owner, job="j", node=node))
        phase = "Running" if i < 2 else "Pending"
        store.update_status({**created, "status": {"phase": phase, "node": node}})
    store.create(task("k-t0", None, job="k"))

    def names(selector: str) -> list[str]:
        return [o["metadata"]["name"] for o in store.list("Task", field_selector=selector).items]

    assert names("spec.node=n1") == ["j-t0", "j-t2"]
    assert names("status.node=n2,status.phase=Running") == ["j-t1"]
    assert names("status.phase!=Running") == ["j-t2", "k-t0"]
    assert names(f"metadata.ownerReferences.uid={owner['metadata']['uid']}") == [
        "j-t0",
        "j-t1",
        "j-t2",
    ]
    assert names("spec.job=k") == ["k-t0"]
    assert names("metadata.name=j-t1") == ["j-t1"]
    with pytest.raises(InvalidSelector, match="selectable fields"):
        store.list("Task", field_selector="spec.image=x")


def test_list_returns_a_revision_to_watch_from(store: Store) -> None:
    store.create(job("a"))
    listed = store.list("Job")
    assert listed.revision == store.revision()
    store.create(job("b"))
    events = collect(store, "Job", listed.revision, 1)
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [("ADDED", "b")]


# -- watch ------------------------------------------------------------------------------
def test_watch_sees_every_change_in_order(store: Store) -> None:
    start = store.revision()
    a = store.create(job("a"))
    store.create(task("t"))
    a2 = store.update({**a, "spec": {"priority": 1}})
    store.update_status({**a2, "status": {"phase": "Running"}})
    store.delete("Job", "a")
    events = collect(store, "Job", start, 4)
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions) and len(set(revisions)) == 4
    assert all(int(e.object["metadata"]["resourceVersion"]) == e.revision for e in events)
    everything = collect(store, None, start, 5)
    assert [e.object["kind"] for e in everything] == ["Job", "Task", "Job", "Job", "Job"]


def test_watch_resumes_exactly_where_asked(store: Store) -> None:
    start = store.revision()
    for i in range(6):
        store.create(job(f"j{i}"))
    first = collect(store, "Job", start, 3)
    rest = collect(store, "Job", first[-1].revision, 3)
    assert [e.object["metadata"]["name"] for e in first + rest] == [f"j{i}" for i in range(6)]


def test_watch_waits_for_new_changes_and_stops(store: Store) -> None:
    start = store.revision()
    stop = threading.Event()
    seen: list[WatchEvent] = []

    def watch() -> None:
        seen.extend(store.watch("Job", start, stop=stop))

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(0.2)
    store.create(job("late"))
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    watcher.join(timeout=5)
    assert not watcher.is_alive()
    assert [e.object["metadata"]["name"] for e in seen] == ["late"]


def test_watch_from_compacted_revision_is_gone(store: Store) -> None:
    start = store.revision()
    a = store.create(job("a"))
    for p in range(1, 4):
        a = store.update({**a, "spec": {"priority": p}})
    middle = store.revision()
    store.create(job("b"))
    assert store.compact(middle) >= 1
    with pytest.raises(Gone, match="compacted"):
        next(iter(store.watch("Job", start, timeout=1)))
    after = collect(store, "Job", middle, 1)
    assert [e.object["metadata"]["name"] for e in after] == ["b"]
    assert store.get("Job", "a")["spec"] == {"priority": 3}
    assert [o["metadata"]["name"] for o in store.list("Job").items] == ["a", "b"]


# -- concurrency ------------------------------------------------------------------------
def test_concurrent_compare_and_swap_loses_no_update(store: Store) -> None:
    store.create(job("counter", count=0))
    threads, per_thread = 6, 15

    def increment() -> None:
        for _ in range(per_thread):
            while True:
                current = store.get("Job", "counter")
                current["spec"]["count"] += 1
                try:
                    store.update(current)
                    break
                except Conflict:
                    continue

    workers = [threading.Thread(target=increment) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    final = store.get("Job", "counter")
    assert final["spec"]["count"] == threads * per_thread
    assert final["metadata"]["generation"] == 1 + threads * per_thread


WRITER = """
import json, sys
from swarmapply.api.store import open_store
url, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = open_store(url)
revisions = []
for i in range(count):
    obj = store.create({"apiVersion": "swarmapply.io/v1", "kind": "Job",
                        "metadata": {"name": f"{prefix}-{i}"}, "spec": {"n": 0}})
    revisions.append(int(obj["metadata"]["resourceVersion"]))
    obj["spec"]["n"] = 1
    revisions.append(int(store.update(obj)["metadata"]["resourceVersion"]))
print(json.dumps(revisions))
"""


@pytest.mark.slow
def test_writer_processes_and_a_watcher_see_every_revision_once_in_order(
    store: Store, store_url: str
) -> None:
    start = store.revision()
    per_writer = 60
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, store_url, prefix, str(per_writer)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for prefix in ("w1", "w2")
    ]
    events = collect(store, "Job", start, 4 * per_writer, timeout=120)
    written: list[int] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        written += json.loads(out)
    revisions = [e.revision for e in events]
    assert revisions == sorted(written)
    assert len(set(revisions)) == len(revisions) == 4 * per_writer


def test_list_then_watch_reconstructs_state_under_concurrent_writes(store: Store) -> None:
    """An informer's view (list at R, then events after R) equals the final state."""
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            obj = store.create(job(f"c{i}"))
            store.update({**obj, "spec": {"priority": i}})
            if i % 3 == 0:
                store.delete("Job", f"c{i}")
            i += 1

    writer = threading.Thread(target=churn)
    writer.start()
    time.sleep(0.3)
    listed = store.list("Job")
    time.sleep(0.3)
    stop.set()
    writer.join()
    view = {o["metadata"]["name"]: o for o in listed.items}
    for event in store.watch("Job", listed.revision, timeout=1.0):
        if event.type == "DELETED":
            view.pop(event.object["metadata"]["name"], None)
        else:
            view[event.object["metadata"]["name"]] = event.object
    final = {o["metadata"]["name"]: o for o in store.list("Job").items}
    assert view == final


TIMED_WRITER = """
import json, sys, time
from swarmapply.api.store import open_store
url, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = open_store(url)
committed = {}
for i in range(count):
    name = f"{prefix}-{i}"
    store.create({"apiVersion": "swarmapply.io/v1", "kind": "Job",
                  "metadata": {"name": name}, "spec": {}})
    committed[name] = time.time()
    time.sleep(0.01)
print(json.dumps(committed))
"""


@pytest.mark.slow
def test_writes_from_other_processes_reach_a_watcher_promptly(store: Store, store_url: str) -> None:
    """Three processes write at once: none fails, and a watcher sees each write quickly."""
    start = store.revision()
    per_writer = 40
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TIMED_WRITER, store_url, f"p{i}", str(per_writer)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    received: dict[str, float] = {}
    for event in store.watch("Job", start, timeout=120):
        received[event.object["metadata"]["name"]] = time.time()
        if len(received) == 3 * per_writer:
            break
    committed: dict[str, float] = {}
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "locked" not in err
        committed.update(json.loads(out))
    assert set(received) == set(committed)
    delays = sorted(max(0.0, received[name] - committed[name]) for name in committed)
    # "Within a fraction of a second": generous, so a loaded machine does not flake.
    assert delays[-1] < 1.0, f"slowest delivery {delays[-1]:.3f}s"


def test_sqlite_errors_that_retrying_cannot_fix_are_permanent(tmp_path: Any) -> None:
    from swarmapply.api.store import BackendError

    (tmp_path / "dir.db").mkdir()
    with pytest.raises(BackendError, match="unable to open"):
        open_store(f"sqlite:///{tmp_path}/dir.db")
    (tmp_path / "file").write_text("")
    with pytest.raises(BackendError, match="cannot create it"):
        open_store(f"sqlite:///{tmp_path}/file/below/state.db")
    for bad in ("busy_timeout=nan", "busy_timeout=-1", "synchronous=sometimes", "colour=red"):
        with pytest.raises(BackendError):
            open_store(f"sqlite:///{tmp_path}/s.db?{bad}")


def test_store_urls_are_checked(tmp_path: Any) -> None:
    from swarmapply.api.store import BackendError

    for url in (
        "postgres://x/y",
        "sqlite:///",
        "mongodb://h:99999/x",
        "mongodb://h/x?min_compact_age=-1",
    ):
        with pytest.raises(BackendError):
            open_store(url)
