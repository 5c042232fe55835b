"""MongoDB backend: revisions that commit out of order are still seen once, in order.

Revisions come from a counter, so a writer can take revision r and record it after another
writer recorded r+1. These tests make that happen on purpose (a writer that pauses between
taking its revision and recording it, one that never records it at all) and check that
watchers and lists neither miss nor reorder anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from swarmapply.api.store import WatchEvent
from swarmapply.api.store.mongodb import MongoStore

pytestmark = pytest.mark.mongodb


class PausingWriter(MongoStore):
    """A store whose next write pauses after taking its revision, before recording it."""

    def __init__(self, url: str, pause: float, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.pause = pause
        self.armed = False
        self.allocated = threading.Event()
        self.revisions: list[int] = []

    def _allocate(self) -> int:
        revision = super()._allocate()
        self.revisions.append(revision)
        if self.armed:
            self.armed = False
            self.allocated.set()
            time.sleep(self.pause)
        return revision


def job(name: str) -> dict[str, Any]:
    return {"apiVersion": "swarmapply.io/v1", "kind": "Job", "metadata": {"name": name}}


@pytest.fixture
def url(mongodb_store_url: str) -> str:
    return mongodb_store_url


def _events(store: MongoStore, since: int, count: int, timeout: float = 15) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    for event in store.watch("Job", since, timeout=timeout):
        out.append(event)
        if len(out) == count:
            break
    return out


@pytest.fixture
def stores(url: str) -> Iterator[tuple[PausingWriter, MongoStore]]:
    slow = PausingWriter(url, pause=1.0, gap_timeout=5.0)
    fast = MongoStore(url, gap_timeout=5.0)
    yield slow, fast
    slow.close()
    fast.close()


def _create_in_background(store: MongoStore, name: str) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(store.create(job(name))))
    thread.start()
    return thread, result


def test_a_lower_revision_committed_late_is_delivered_first(
    stores: tuple[PausingWriter, MongoStore],
) -> None:
    slow, fast = stores
    start = fast.revision()
    slow.armed = True
    thread, _ = _create_in_background(slow, "early")
    assert slow.allocated.wait(5)
    fast.create(job("late"))  # takes the next revision and records it first
    listed = fast.list("Job")  # while the lower revision is still missing
    assert listed.revision == start
    assert listed.items == []
    thread.join()
    events = _events(fast, start, 2)
    assert [e.object["metadata"]["name"] for e in events] == ["early", "late"]
    assert [e.revision for e in events] == [start + 1, start + 2]
    assert _events(fast, listed.revision, 2) == events


def test_a_revision_whose_writer_died_is_filled_and_skipped(url: str) -> None:
    store = MongoStore(url, gap_timeout=0.3)
    try:
        start = store.revision()
        lost = store._allocate()  # a writer that took a revision and died
        after = store.create(job("after"))
        assert int(after["metadata"]["resourceVersion"]) == lost + 1
        events = _events(store, start, 1)
        assert [(e.revision, e.object["metadata"]["name"]) for e in events] == [(lost + 1, "after")]
        assert store.revision() == lost + 1
        assert [o["metadata"]["name"] for o in store.list("Job").items] == ["after"]
    finally:
        store.close()


def test_a_writer_slower_than_the_gap_timeout_retries_under_a_new_revision(url: str) -> None:
    slow = PausingWriter(url, pause=1.0, gap_timeout=0.2)
    fast = MongoStore(url, gap_timeout=0.2)
    try:
        start = fast.revision()
        slow.armed = True
        thread, result = _create_in_background(slow, "slow")
        assert slow.allocated.wait(5)
        fast.create(job("quick"))
        first = _events(fast, start, 1)  # fills the slow writer's revision meanwhile
        assert [e.object["metadata"]["name"] for e in first] == ["quick"]
        thread.join()
        created = result[0]
        assert int(created["metadata"]["resourceVersion"]) > first[0].revision
        assert len(slow.revisions) == 2  # gave up the filled revision, took a new one
        events = _events(fast, start, 2)
        assert [e.object["metadata"]["name"] for e in events] == ["quick", "slow"]
        assert fast.get("Job", "slow") == created
    finally:
        slow.close()
        fast.close()


def test_a_write_recorded_but_not_applied_is_rolled_forward(url: str) -> None:
    """A writer that died after recording its change but before updating the view."""

    class DiesBeforeApplying(MongoStore):
        def _cache(self, record: dict[str, Any]) -> dict[str, Any]:
            if record["name"] == "half":
                return {}
            return super()._cache(record)

    crashing = DiesBeforeApplying(url)
    store = MongoStore(url)
    try:
        crashing.create(job("half"))
        assert [o["metadata"]["name"] for o in store.list("Job").items] == ["half"]
        assert store.get("Job", "half")["metadata"]["generation"] == 1
    finally:
        crashing.close()
        store.close()


def test_a_regressed_cache_is_corrected_by_readers(url: str) -> None:
    """Two late cache writes may land in the wrong order where updates are not atomic."""
    import pymongo

    store = MongoStore(url)
    raw: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url)
    try:
        first = store.create(
            {**job("flip"), "spec": {"node": "n1"}, "apiVersion": "swarmapply.io/v1"}
        )
        stale = raw.get_default_database()["objects"].find_one({"_id": "Job/flip"})
        second = store.update({**first, "spec": {"node": "n2"}})
        assert stale is not None
        raw.get_default_database()["objects"].replace_one({"_id": "Job/flip"}, stale)
        assert store.get("Job", "flip") == second
        raw.get_default_database()["objects"].replace_one({"_id": "Job/flip"}, stale)
        assert store.list("Job", field_selector="spec.node=n1").items == []
        assert store.list("Job", field_selector="spec.node=n2").items == [second]
        raw.get_default_database()["objects"].replace_one({"_id": "Job/flip"}, stale)
        third = store.update({**second, "spec": {"node": "n3"}})
        assert int(third["metadata"]["resourceVersion"]) > int(
            second["metadata"]["resourceVersion"]
        )
        assert store.get("Job", "flip")["metadata"]["generation"] == 3
    finally:
        raw.close()
        store.close()
