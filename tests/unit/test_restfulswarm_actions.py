"""RESTfulSwarm requests to act (migration, update, checkpoint): recognition, conversion with
every error path, admission routing, and the pure parts of the commands that carry them out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swarmapply.api.admission import AdmissionError, AdmittedRequest, admit, admit_requests
from swarmapply.api.restfulswarm import (
    CheckpointRequest,
    MigrationRequest,
    UpdateRequest,
    convert_request,
    document_kind,
    node_of,
)
from swarmapply.cli.migrate import derived_name, generate_prefix, migration_progress
from swarmapply.cli.update import Resize, ResizeError, ResizeResult, resize_done, resized_entry

MI = 2**20
MIGRATION = {"job": "job1", "container": "t1", "from": "host1@10.0.0.1", "to": "host2@10.0.0.2"}
UPDATE = {
    "job": "job1",
    "node": "host1",
    "container_name": "t1",
    "cpuset_cpus": "1,2",
    "mem_limit": "20m",
}
CHECKPOINT = {"node": "host1@10.0.0.1", "containers": ["t1", "job1-t2"]}


def errors(doc: Any) -> list[tuple[str, str]]:
    """The conversion's errors as (dotted path, message)."""
    result = convert_request(doc)
    assert not (result.errors and result.requests)
    return [(".".join(str(p) for p in path), message) for path, message in result.errors]


# ------------------------------------------------------------------------ recognition


@pytest.mark.parametrize(
    ("doc", "kind"),
    [
        (MIGRATION, "migration"),
        ({"job": "j", "container": "c"}, "migration"),
        (UPDATE, "update"),
        ({"job": "j", "container_name": "c"}, "update"),
        (CHECKPOINT, "checkpoint"),
        ({"job_name": "j", "job_info": {}}, "job"),
        ({**MIGRATION, "apiVersion": "swarmapply.io/v1"}, None),
        ({**CHECKPOINT, "kind": "Checkpoint"}, None),
        ({"containers": []}, None),
        ([MIGRATION], None),
        ("job", None),
    ],
)
def test_document_kind(doc: Any, kind: str | None) -> None:
    assert document_kind(doc) == kind


def test_node_of_takes_the_part_before_the_address() -> None:
    assert node_of("host2@10.0.0.2") == "host2"
    assert node_of("host2") == "host2"


# --------------------------------------------------------------------------- migration


def test_migration_converts() -> None:
    result = convert_request({**MIGRATION, "info": {"image": "x"}})
    assert (result.kind, result.errors) == ("migration", [])
    assert result.requests == [MigrationRequest("job1", "t1", "host2", "host1")]
    without_from = convert_request({"job": "job1", "container": "t1", "to": "h2"})
    assert without_from.requests == [MigrationRequest("job1", "t1", "h2", None)]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"extra": 1}, [("extra", "unknown field of a RESTfulSwarm migration; known fields: "
                                  "job, container, from, to, info")]),
        ({"job": None}, [("job", "required: a RESTfulSwarm migration needs job")]),
        ({"job": ""}, [("job", "required: a RESTfulSwarm migration needs job")]),
        ({"job": 3}, [("job", "expected a string, got 3")]),
        ({"container": "T_1"}, [("container", "invalid name")]),
        ({"to": None}, [("to", "required: a RESTfulSwarm migration needs to")]),
        ({"to": "Host_2@10.0.0.2"}, [("to", 'the node name in "Host_2@10.0.0.2"')]),
        ({"from": "@10.0.0.1"}, [("from", "must not be empty")]),
        ({"info": "x"}, [("info", 'expected the task\'s details as a mapping, got "x"')]),
        ({"from": "host2"}, [("to", "the task would stay on node 'host2'")]),
    ],
)  # fmt: skip
def test_migration_errors(change: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    found = errors({**MIGRATION, **change})
    assert [path for path, _ in found] == [path for path, _ in expected]
    for (_, message), (_, fragment) in zip(found, expected, strict=True):
        assert fragment in message


# ------------------------------------------------------------------------------ update


def test_update_converts_to_canonical_values() -> None:
    result = convert_request({**UPDATE, "cpuset_cpus": "2,1,3", "node": "host1@10.0.0.1"})
    assert result.requests == [UpdateRequest("job1", "t1", "host1", "1-3", 20 * MI)]
    only_memory = convert_request({"job": "job1", "container_name": "t1", "mem_limit": "1g"})
    assert only_memory.requests == [UpdateRequest("job1", "t1", None, None, 2**30)]
    only_cores = convert_request({**UPDATE, "mem_limit": "", "node": ""})
    assert only_cores.requests == [UpdateRequest("job1", "t1", None, "1-2", None)]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"cpu": 1}, [("cpu", "unknown field of a RESTfulSwarm update")]),
        ({"container_name": None}, [("container_name", "needs container_name")]),
        ({"job": ["j"]}, [("job", "expected a string")]),
        ({"node": "Node 1"}, [("node", "invalid name")]),
        ({"cpuset_cpus": "a-b"}, [("cpuset_cpus", "")]),
        ({"cpuset_cpus": 3}, [("cpuset_cpus", "expected a string, got 3")]),
        ({"mem_limit": "lots"}, [("mem_limit", "")]),
        ({"cpuset_cpus": "", "mem_limit": None}, [("", "needs cpuset_cpus, mem_limit or both")]),
    ],
)
def test_update_errors(change: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    found = errors({**UPDATE, **change})
    assert [path for path, _ in found] == [path for path, _ in expected]
    for (_, message), (_, fragment) in zip(found, expected, strict=True):
        assert fragment in message


# -------------------------------------------------------------------------- checkpoint


def test_checkpoint_gives_one_request_per_container() -> None:
    result = convert_request(CHECKPOINT)
    assert result.requests == [
        CheckpointRequest("host1", "t1", 0),
        CheckpointRequest("host1", "job1-t2", 1),
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"node": None}, [("node", "a RESTfulSwarm checkpoint needs node")]),
        ({"containers": "t1"}, [("containers", "expected a non-empty list")]),
        ({"containers": []}, [("containers", "expected a non-empty list")]),
        ({"containers": ["t1", 7]}, [("containers.1", "expected a container name, got 7")]),
        ({"containers": ["t1", " "]}, [("containers.1", "expected a container name")]),
        ({"containers": ["T1"]}, [("containers.0", "invalid name")]),
        ({"containers": ["t1", "t1"]}, [("containers.1", "listed twice (first at "
                                          "containers[0])")]),
        ({"when": 1}, [("when", "unknown field of a RESTfulSwarm checkpoint")]),
    ],
)  # fmt: skip
def test_checkpoint_errors(change: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    found = errors({**CHECKPOINT, **change})
    assert [path for path, _ in found] == [path for path, _ in expected]
    for (_, message), (_, fragment) in zip(found, expected, strict=True):
        assert fragment in message


def test_convert_request_refuses_other_documents() -> None:
    result = convert_request({"job_name": "x", "job_info": {}})
    assert result.kind == "unknown" and result.requests == []
    assert "expected a RESTfulSwarm migration, update or checkpoint" in result.errors[0][1]


# --------------------------------------------------------------------------- admission


def test_admit_reports_requests_as_errors() -> None:
    with pytest.raises(AdmissionError) as raised:
        admit([("m.json", json.dumps([MIGRATION]))])
    assert [str(e) for e in raised.value.errors] == [
        "m.json: document 1: [0]: a RESTfulSwarm migration request acts on running jobs;"
        " give it to swarmapply apply -f"
    ]


def test_admit_requests_keeps_input_order_and_positions() -> None:
    job = {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Job",
        "metadata": {"name": "web"},
        "spec": {"tasks": [{"name": "a", "image": "busybox", "memory": "64m"}]},
    }
    text = json.dumps([MIGRATION, job, UPDATE, CHECKPOINT])
    items = admit_requests([("all.json", text)])
    kinds = [item.kind if isinstance(item, AdmittedRequest) else "object" for item in items]
    assert kinds == ["migration", "object", "update", "checkpoint", "checkpoint"]
    first = items[0]
    assert isinstance(first, AdmittedRequest) and first.prefix == (0,)
    assert str(first.error(("from",), "wrong")) == "all.json: document 1: [0].from: wrong"
    last = items[-1]
    assert isinstance(last, AdmittedRequest)
    assert str(last.error(("containers", 1), "x")) == "all.json: document 1: [3].containers[1]: x"


def test_admit_requests_reports_every_bad_request() -> None:
    text = json.dumps([{**MIGRATION, "to": ""}, {**UPDATE, "mem_limit": "x", "cpuset_cpus": ""}])
    with pytest.raises(AdmissionError) as raised:
        admit_requests([("r.json", text)])
    paths = [error.path for error in raised.value.errors]
    assert paths == ["[0].to", "[1].mem_limit"]


# ---------------------------------------------------------------------- resize (pure)


ENTRY = {"name": "t1", "image": "busybox", "cores": 1, "memory": 64 * MI}


def test_resize_cores_and_memory() -> None:
    new, changes = resized_entry(ENTRY, Resize(cores=2, memory=128 * MI), "n1")
    assert (new["cores"], new["memory"], "cpuset" in new) == (2, 128 * MI, False)
    assert changes == ["cores 1 -> 2", "memory 64Mi -> 128Mi"]
    assert ENTRY["cores"] == 1  # the input is not changed


def test_resize_cpuset_pins_to_the_bound_node_and_sets_cores() -> None:
    new, changes = resized_entry(ENTRY, Resize(cpuset="2-3"), "n1")
    assert (new["node"], new["cpuset"], new["cores"]) == ("n1", "2-3", 2)
    assert changes == ["cores 1 -> 2", "cpuset - -> 2-3"]
    pinned = {**ENTRY, "node": "n2", "cpuset": "0", "cores": 1}
    again, changes = resized_entry(pinned, Resize(cpuset="0"), "n2")
    assert again == pinned and changes == []


def test_resize_errors() -> None:
    with pytest.raises(ResizeError) as raised:
        resized_entry(ENTRY, Resize(cpuset="0-1"), None)
    assert raised.value.field == "cpuset" and "not bound to a node yet" in str(raised.value)
    pinned = {**ENTRY, "node": "n1", "cpuset": "0-1", "cores": 2}
    with pytest.raises(ResizeError) as raised:
        resized_entry(pinned, Resize(cores=3), "n1")
    assert raised.value.field == "cores"
    assert "give a cpuset of 3 cores instead" in str(raised.value)
    with pytest.raises(ResizeError) as raised:
        resized_entry(ENTRY, Resize(cores=3, cpuset="0-1"), "n1")
    assert raised.value.field == "cores"
    assert resized_entry(pinned, Resize(cores=2), "n1")[1] == []


def test_resize_done() -> None:
    result = ResizeResult("job1", "job1-t1", ["cores 1 -> 2"], cores=2, memory=128 * MI)
    task: dict[str, Any] = {"status": {"cpuset": "0", "memory": 64 * MI}}
    assert resize_done(result, task) == (False, None)
    task["status"] = {"cpuset": "0,3", "memory": 128 * MI}
    assert resize_done(result, task) == (True, None)
    pinned = ResizeResult("job1", "job1-t1", ["x"], cores=2, cpuset="1-2", memory=None)
    assert resize_done(pinned, task) == (False, None)
    refused = {"type": "Resized", "status": "False", "reason": "DoesNotFit", "message": "m"}
    task["status"] = {"cpuset": "0", "conditions": [refused]}
    assert resize_done(result, task) == (True, "DoesNotFit: m")
    stale = ResizeResult("job1", "job1-t1", ["x"], cores=2, resized_before=refused)
    assert resize_done(stale, task) == (False, None)


# ------------------------------------------------------------------ names and progress


def test_names() -> None:
    assert generate_prefix("web-server") == "web-server-"
    assert len(generate_prefix("a" * 80)) <= 58
    name = derived_name("job1-t1", "job1", "t1", "h1", "h2")
    assert name.startswith("job1-t1-") and len(name) == len("job1-t1-") + 8
    assert name == derived_name("job1-t1", "job1", "t1", "h1", "h2")
    assert name != derived_name("job1-t1", "job1", "t1", "h2", "h1")
    assert len(derived_name("x" * 80, "a")) == 63


def test_migration_progress() -> None:
    migration: dict[str, Any] = {"kind": "Migration", "metadata": {"name": "m"}}
    assert migration_progress(migration) == "migration.swarmapply.io/m Pending"
    migration["status"] = {
        "phase": "Failed",
        "mode": "cold",
        "reason": "StartRefused",
        "message": "no image",
    }
    assert migration_progress(migration) == (
        "migration.swarmapply.io/m Failed (cold; StartRefused: no image)"
    )


def test_the_example_requests_admit() -> None:
    folder = Path(__file__).resolve().parents[2] / "manifests" / "restfulswarm" / "requests"
    names = ("migration.req", "group-migration.req", "update.req", "checkpoint.req")
    sources = [(name, (folder / name).read_text()) for name in names]
    kinds = [item.kind for item in admit_requests(sources) if isinstance(item, AdmittedRequest)]
    assert kinds == ["migration", "migration", "migration", "update", "checkpoint", "checkpoint"]
