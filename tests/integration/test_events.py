"""Events are recorded once per occurrence and counted when the same thing happens again."""

from __future__ import annotations

import threading
from typing import Any

from swarmapply.api.admission import validate_object
from swarmapply.api.store import Store
from swarmapply.controllers.events import event_object, record_event


def job(store: Store, name: str = "web") -> dict[str, Any]:
    return store.create(
        {
            "apiVersion": "swarmapply.io/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {"tasks": [{"name": "a", "image": "busybox", "memory": 8 << 20}]},
        }
    )


def test_the_same_event_is_counted_not_repeated(store: Store) -> None:
    web = job(store)
    first = record_event(store, web, "FailedScheduling", "0/1 nodes", component="scheduler")
    again = record_event(store, web, "FailedScheduling", "0/1 nodes", component="scheduler")
    assert first is not None and again is not None
    assert again["metadata"]["name"] == first["metadata"]["name"]
    assert again["count"] == 2
    assert again["firstTimestamp"] == first["firstTimestamp"]
    other = record_event(store, web, "FailedScheduling", "0/2 nodes", component="scheduler")
    assert other is not None and other["metadata"]["name"] != first["metadata"]["name"]
    events = store.list("Event", field_selector=f"involvedObject.uid={web['metadata']['uid']}")
    assert sorted(e["count"] for e in events.items) == [1, 2]


def test_concurrent_writers_lose_no_event(store: Store) -> None:
    web = job(store)
    barrier = threading.Barrier(4)

    def report() -> None:
        barrier.wait()
        record_event(store, web, "Created", "Created tasks web-a", component="job-controller")

    threads = [threading.Thread(target=report) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    [event] = store.list("Event").items
    assert 1 <= event["count"] <= 4  # counts may be lost in a race, the Event never is


def test_a_recreated_object_gets_its_own_events(store: Store) -> None:
    old = job(store)
    record_event(store, old, "Created", "Created tasks web-a", component="job-controller")
    store.delete("Job", "web")
    new = job(store)
    record_event(store, new, "Created", "Created tasks web-a", component="job-controller")
    assert len(store.list("Event").items) == 2


def test_event_names_are_valid_for_long_object_names() -> None:
    name = "x" * 63
    obj = {"apiVersion": "swarmapply.io/v1", "kind": "Job", "metadata": {"name": name, "uid": "u"}}
    event = event_object(obj, "Created", "m", component="c", now="2026-01-01T00:00:00Z")
    assert len(event["metadata"]["name"]) <= 63
    assert validate_object(event) == []
