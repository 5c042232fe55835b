"""MongoDB backend: recovering from writers that die or stall, and compaction racing readers.

Each test injects one failure the design must survive (by subclassing the store, or by
writing to its collections directly, as a racing server could) and checks the contract still
holds: nothing recorded is invisible, nothing is delivered twice or skipped silently.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest

from swarmapply.api.store import Conflict, Gone, NotFound, open_store
from swarmapply.api.store.mongodb import MongoStore

pytestmark = pytest.mark.mongodb


def job(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "swarmapply.io/v1", "kind": "Job", "metadata": {"name": name},
            "spec": spec}  # fmt: skip


@pytest.fixture
def url(mongodb_store_url: str) -> str:
    return mongodb_store_url


@pytest.fixture
def raw(url: str) -> Iterator[pymongo.database.Database[dict[str, Any]]]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url)
    yield client.get_default_database()
    client.close()


class DiesBeforeCaching(MongoStore):
    """Records its changes, then dies before updating the cache (for names in ``doomed``)."""

    doomed: tuple[str, ...] = ("half",)

    def _cache(self, record: dict[str, Any]) -> dict[str, Any]:
        if record["name"] in self.doomed:
            return {}
        return super()._cache(record)


def test_a_recorded_but_uncached_create_is_visible_to_every_operation(url: str) -> None:
    DiesBeforeCaching(url).create(job("half", n=1))
    store = MongoStore(url)
    assert store.get("Job", "half")["spec"] == {"n": 1}
    updated = store.update({**store.get("Job", "half"), "spec": {"n": 2}})
    assert updated["metadata"]["generation"] == 2
    store.delete("Job", "half")
    with pytest.raises(NotFound):
        store.get("Job", "half")


def test_a_cascade_reaches_a_dependent_not_yet_cached(url: str) -> None:
    store = MongoStore(url)
    owner = store.create(job("j"))
    task = {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Task",
        "metadata": {
            "name": "half",
            "ownerReferences": [{"kind": "Job", "name": "j", "uid": owner["metadata"]["uid"]}],
        },
        "spec": {},
    }
    DiesBeforeCaching(url).create(task)
    store.delete("Job", "j")
    with pytest.raises(NotFound):
        store.get("Task", "half")


def test_a_write_failing_after_taking_a_revision_leaves_no_hole(url: str) -> None:
    class FailsToLink(MongoStore):
        def _link(self, record: dict[str, Any]) -> None:
            raise RuntimeError("the process died here")

    with pytest.raises(RuntimeError):
        FailsToLink(url, gap_timeout=60).create(job("x"))
    store = MongoStore(url, gap_timeout=60)  # no waiting for the gap timeout: filled at once
    store.create(job("y"))
    assert store.revision() == 2
    assert [o["metadata"]["name"] for o in store.list("Job").items] == ["y"]


def test_a_stale_link_to_an_older_change_is_ignored(url: str, raw: Any) -> None:
    """A counter that went backwards may leave a link from the newest state to an old one."""
    store = MongoStore(url)
    first = store.create(job("loop", n=1))
    second = store.update({**first, "spec": {"n": 2}})
    head = int(second["metadata"]["resourceVersion"])
    raw["links"].replace_one({"_id": f"Job/loop#{head}"}, {"rev": 1}, upsert=True)
    assert store.get("Job", "loop") == second
    third = store.update({**second, "spec": {"n": 3}})
    assert store.get("Job", "loop") == third


def test_a_watcher_behind_a_compaction_gets_gone_even_with_an_expired_gap_timer(
    url: str,
) -> None:
    store = MongoStore(url, gap_timeout=0.2, min_compact_age=0)
    a = store.create(job("a"))
    watch = store.watch("Job", 0, timeout=5)
    assert next(watch).revision == 1  # nothing later is read ahead yet
    a = store.update({**a, "spec": {"n": 1}})
    store.update({**a, "spec": {"n": 2}})
    store.create(job("b"))
    store._gaps[2] = time.monotonic() - 10  # this process once saw revision 2 missing
    assert store.compact(3) >= 2
    with pytest.raises(Gone):
        next(watch)


def test_compaction_leaves_recent_history_alone(url: str) -> None:
    store = open_store(url)  # default min_compact_age: 60 seconds
    a = store.create(job("a"))
    store.update({**a, "spec": {"n": 1}})
    assert store.compact(store.revision()) == 0
    assert [e.revision for e in store.watch("Job", 0, timeout=0.5)] == [1, 2]


def test_compaction_removes_history_once_it_is_old_enough(url: str) -> None:
    store = MongoStore(url, min_compact_age=0.5)
    a = store.create(job("a"))
    store.update({**a, "spec": {"n": 1}})
    time.sleep(0.6)
    b = store.create(job("b"))  # too young to compact
    assert store.compact(store.revision()) == 1  # revision 1, superseded by 2
    assert [e.revision for e in store.watch("Job", 2, timeout=0.5)] == [3]
    with pytest.raises(Conflict):  # the guard of a stale write survives compaction
        store.update({**a, "spec": {"n": 9}})
    assert store.get("Job", "b") == b


def test_an_established_watch_delivers_what_it_read_ahead_across_a_compaction(url: str) -> None:
    store = MongoStore(url, min_compact_age=0)
    a = store.create(job("a"))
    a = store.update({**a, "spec": {"n": 1}})
    store.update({**a, "spec": {"n": 2}})
    watch = store.watch("Job", 0, timeout=2)
    assert next(watch).revision == 1  # revisions 2 and 3 came in the same read
    assert store.compact(3) >= 1
    assert [event.revision for event in watch] == [2, 3]  # history seen once is not lost
