"""The JSON Schemas: documented everywhere, consistent with the kind registry, and accepting the
example manifests and a valid object of every kind, as users write it and as the store holds it."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path as FilePath
from typing import Any

import pytest

from swarmapply.api.admission import admit_paths
from swarmapply.api.kinds import API_VERSION, KINDS, UnknownKindError, name_error, resolve_kind
from swarmapply.api.schema import (
    UnknownFieldError,
    describe_field,
    field_doc,
    format_path,
    schema_for,
    validate,
    with_defaults,
)

MANIFESTS = FilePath(__file__).resolve().parents[2] / "manifests"
SCHEMA_FILES = sorted(
    entry.name
    for entry in resources.files("swarmapply.api.schemas").iterdir()
    if entry.name.endswith(".json")
)
TS = "2024-05-01T12:00:00Z"


def _load(name: str) -> dict[str, Any]:
    text = resources.files("swarmapply.api.schemas").joinpath(name).read_text(encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


def _properties(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Yields (path, schema) of every property defined anywhere in a schema document."""
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            yield f"{where}.properties.{name}", sub
        for key, value in node.items():
            yield from _properties(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _properties(value, f"{where}[{i}]")


def test_schema_files_are_the_expected_set() -> None:
    expected = {info.schema_file for info in KINDS.values()} | {"common.json"}
    assert set(SCHEMA_FILES) == expected


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_every_property_has_a_description(name: str) -> None:
    doc = _load(name)
    missing = [
        path
        for path, sub in _properties(doc, name)
        if not (isinstance(sub, dict) and isinstance(sub.get("description"), str))
        or not sub["description"].strip()
    ]
    assert missing == []
    assert list(_properties(doc, name)), "the walker found no properties at all"


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_ids_and_dialect(name: str) -> None:
    doc = _load(name)
    assert doc["$id"] == f"https://swarmapply.io/schemas/v1/{name}"
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc.get("description")


@pytest.mark.parametrize("kind", list(KINDS))
def test_kind_schema_shape(kind: str) -> None:
    schema = schema_for(kind)
    properties = schema["properties"]
    assert properties["apiVersion"]["const"] == API_VERSION
    assert properties["kind"]["const"] == kind
    assert properties["metadata"]["$ref"] == "common.json#/$defs/ObjectMeta"
    assert schema["additionalProperties"] is False
    info = KINDS[kind]
    assert ("spec" in properties) == info.has_spec
    assert ("status" in properties) == info.has_status
    if info.has_spec:
        assert properties["spec"]["additionalProperties"] is False
    if info.has_status:
        status = properties["status"]["properties"]
        assert "observedGeneration" in status
        assert "conditions" in status


def _meta(name: str, **extra: Any) -> dict[str, Any]:
    stored = {
        "name": name,
        "uid": "9b2f4a0e-3c1d-4f7e-8a65-0d2b1c3e4f50",
        "resourceVersion": "42",
        "generation": 3,
        "creationTimestamp": TS,
        "labels": {"app.kubernetes.io/name": "demo", "tier": ""},
        "annotations": {"note": "anything at all: $weird.chars"},
        "finalizers": ["swarmapply.io/cleanup"],
    }
    stored.update(extra)
    return stored


CONDITIONS = [
    {
        "type": "Ready",
        "status": "True",
        "reason": "Running",
        "message": "all good",
        "lastTransitionTime": TS,
    }
]

STORED: dict[str, dict[str, Any]] = {
    "Job": {
        "spec": {
            "tasks": [
                {
                    "name": "a",
                    "image": "swarmapply-test/busybox:1",
                    "command": ["sleep", "30"],
                    "cores": 2,
                    "memory": 67108864,
                    "node": "sim-1",
                    "cpuset": "0-1",
                    "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "tcp"}],
                    "volumes": [{"source": "/data", "target": "/data", "readOnly": True}],
                    "environment": {"A": "1"},
                    "securityContext": {
                        "privileged": False,
                        "capabilities": {"add": ["NET_ADMIN", "cap_sys_ptrace"]},
                        "hostNetwork": False,
                        "hostPID": False,
                    },
                }
            ],
            "network": {"name": "demo", "driver": "overlay", "subnet": "10.1.0.0/24"},
            "priority": 5,
            "restartPolicy": "OnFailure",
            "ttlSecondsAfterFinished": 60,
        },
        "status": {
            "phase": "Running",
            "tasksTotal": 1,
            "tasksReady": 1,
            "tasksSucceeded": 0,
            "tasksFailed": 0,
            "startTime": TS,
            "observedGeneration": 3,
            "conditions": CONDITIONS,
        },
    },
    "Task": {
        "metadata_extra": {
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "Job",
                    "name": "demo",
                    "uid": "u-1",
                    "controller": True,
                }
            ]
        },
        "spec": {
            "job": "demo",
            "image": "swarmapply-test/busybox:1",
            "command": ["sleep", "30"],
            "cores": 2,
            "memory": 67108864,
            "network": "demo",
            "priority": 0,
            "restartPolicy": "Never",
        },
        "status": {
            "phase": "Succeeded",
            "node": "sim-1",
            "cpuset": "2-3",
            "migration": {
                "name": "move-demo-a",
                "step": "Restore",
                "node": "sim-1",
                "checkpoint": "/var/lib/swarmapply/checkpoints/move-demo-a",
                "checkpointBytes": 4096,
                "started": True,
                "transferred": True,
                "done": True,
            },
            "memory": 67108864,
            "containerID": "abc123",
            "exitCode": 0,
            "startTime": TS,
            "finishTime": TS,
            "restarts": 0,
            "observedGeneration": 1,
            "conditions": CONDITIONS,
        },
    },
    "Node": {
        "spec": {"unschedulable": True, "capacity": {"cores": 8, "memory": 17179869184}},
        "status": {
            "capacity": {"cores": 8, "memory": 17179869184, "coreIds": [0, 1, 2, 3, 4, 5, 6, 7]},
            "allocated": {"cores": 0, "memory": 0, "cpuset": ""},
            "address": "10.0.0.5",
            "engineVersion": "24.0.7",
            "swarmNodeID": "x1y2z3",
            "role": "worker",
            "heartbeatTime": TS,
            "driver": "sim",
            "conditions": CONDITIONS,
        },
    },
    "Migration": {
        "spec": {"task": "demo-a", "toNode": "sim-2", "mode": "live"},
        "status": {
            "phase": "Transferring",
            "sourceNode": "sim-1",
            "targetNode": "sim-2",
            "sourceCpuset": "0-1",
            "targetCpuset": "4-5",
            "mode": "live",
            "tasks": [
                {
                    "task": "demo-a",
                    "sourceNode": "sim-1",
                    "sourceCpuset": "0-1",
                    "targetNode": "sim-2",
                    "targetCpuset": "4-5",
                    "memory": 67108864,
                }
            ],
            "timings": {"reserve": 0.01, "checkpoint": 0.5},
            "startTime": TS,
        },
    },
    "Checkpoint": {
        "spec": {"task": "demo-a", "leaveRunning": True},
        "status": {
            "phase": "Succeeded",
            "node": "sim-1",
            "path": "/var/lib/swarmapply/checkpoints/demo-a",
            "sizeBytes": 1024,
            "createdTime": TS,
        },
    },
    "Event": {
        "top": {
            "involvedObject": {"kind": "Job", "name": "demo", "uid": "u-1"},
            "type": "Warning",
            "reason": "FailedScheduling",
            "message": "0/2 nodes have 4 free cores",
            "source": {"component": "scheduler", "host": "manager-1"},
            "count": 3,
            "firstTimestamp": TS,
            "lastTimestamp": "2024-05-01T12:05:00.123+02:00",
        }
    },
    "ClusterPolicy": {
        "spec": {
            "allowPrivileged": True,
            "allowedCapabilities": ["NET_ADMIN", "ALL"],
            "allowHostNetwork": False,
            "allowHostPID": True,
            "allowedHostPaths": [{"path": "/etc/localtime", "readOnly": True}, {"path": "/dev"}],
        }
    },
    "Lease": {
        "spec": {
            "holderIdentity": "scheduler-1",
            "leaseDurationSeconds": 15,
            "acquireTime": TS,
            "renewTime": TS,
            "leaseTransitions": 2,
        }
    },
}


def stored_object(kind: str) -> dict[str, Any]:
    """A fully populated object of a kind, as the store would hold it."""
    parts = copy.deepcopy(STORED[kind])
    obj: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": _meta("demo", **parts.pop("metadata_extra", {})),
    }
    obj.update(parts.pop("top", {}))
    obj.update(parts)
    return obj


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_stored_object_of_each_kind_validates(kind: str) -> None:
    assert validate(stored_object(kind)) == []


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_minimal_user_object_of_each_kind_validates(kind: str) -> None:
    obj = stored_object(kind)
    obj["metadata"] = {"name": "demo"}
    obj.pop("status", None)
    assert validate(obj) == []


@pytest.mark.parametrize("kind", [k for k, info in KINDS.items() if info.has_spec])
def test_unknown_spec_fields_are_rejected(kind: str) -> None:
    obj = stored_object(kind)
    obj["spec"]["typo"] = 1
    [(path, message)] = validate(obj)
    assert path == ("spec", "typo")
    assert message.startswith("unknown field; known fields: ")


def test_messages_name_the_field_and_the_expectation() -> None:
    obj = stored_object("Job")
    obj["spec"]["tasks"][0]["cores"] = "two"
    obj["spec"]["tasks"][0]["ports"][0]["protocol"] = "http"
    obj["spec"]["restartPolicy"] = "never"
    obj["metadata"]["labels"]["n"] = 1
    obj["status"]["startTime"] = "yesterday"
    obj["status"]["conditions"][0]["status"] = "yes"
    del obj["spec"]["tasks"][0]["image"]
    found = {format_path(path): message for path, message in validate(obj)}
    assert found == {
        "metadata.labels.n": "expected a string, got 1",
        "spec.restartPolicy": 'expected one of Never, OnFailure, Always, got "never"',
        "spec.tasks[0].cores": 'expected an integer >= 1, got "two"',
        "spec.tasks[0].image": "required field is missing",
        "spec.tasks[0].ports[0].protocol": 'expected one of tcp, udp, sctp, got "http"',
        "status.conditions[0].status": 'expected one of True, False, Unknown, got "yes"',
        "status.startTime": (
            'expected an RFC 3339 timestamp like 2024-05-01T12:00:00Z, got "yesterday"'
        ),
    }


def test_exactly_one_of_task_or_job_in_a_migration() -> None:
    obj = stored_object("Migration")
    obj["spec"]["job"] = "demo"
    assert validate(obj) == [(("spec",), "set only one of task, job; got task, job")]
    del obj["spec"]["job"], obj["spec"]["task"]
    [(path, message)] = validate(obj)
    assert path == ("spec", "task")
    assert "exactly one of task, job" in message


def test_a_name_or_generate_name_is_required() -> None:
    obj = stored_object("Event")
    obj["metadata"] = {"generateName": "demo."}
    assert validate(obj) == []
    obj["metadata"] = {}
    assert validate(obj) == [
        (("metadata", "name"), "required field is missing (or set generateName)")
    ]


def test_memory_quantity_and_command_choices() -> None:
    obj = stored_object("Job")
    task = obj["spec"]["tasks"][0]
    task["memory"], task["command"] = "512Mi", "sleep 30"
    assert validate(obj) == []
    task["memory"], task["command"] = [], ["sleep", 30]
    found = dict(validate(obj))
    assert found[("spec", "tasks", 0, "command", 1)] == "expected a string, got 30"
    assert found[("spec", "tasks", 0, "memory")].startswith(
        "expected an integer >= 1 or a string such as 512Mi"
    )


def test_validate_without_a_known_kind() -> None:
    assert validate([]) == [((), "expected a mapping with apiVersion, kind and metadata, got []")]
    found = dict(validate({"apiVersion": API_VERSION, "kind": "job"}))
    assert "did you mean Job?" in found[("kind",)]
    assert ("kind",) in dict(validate({"apiVersion": API_VERSION}))


def test_defaults_come_from_the_schema() -> None:
    obj = {
        "apiVersion": API_VERSION,
        "kind": "Job",
        "metadata": {"name": "a"},
        "spec": {
            "tasks": [{"name": "t", "ports": [{"containerPort": 1}], "volumes": [{}]}],
            "network": {},
        },
    }
    result = with_defaults(obj)
    assert obj["spec"]["network"] == {}  # the input is not changed
    spec = result["spec"]
    assert spec["priority"] == 0
    assert spec["restartPolicy"] == "Never"
    assert spec["network"] == {"driver": "overlay"}
    assert spec["tasks"][0]["cores"] == 1
    assert spec["tasks"][0]["ports"][0]["protocol"] == "tcp"
    assert spec["tasks"][0]["volumes"][0]["readOnly"] is False


def test_describe_field_and_field_doc() -> None:
    assert "CPU cores" in describe_field("Job", "spec.tasks.cores")
    assert describe_field("jobs", "spec.tasks[0].cores") == describe_field(
        "job", "spec.tasks.cores"
    )
    assert describe_field("no", "status.allocated.cpuset")
    doc = field_doc("Job", "spec.tasks")
    assert doc.type == "[]object"
    assert doc.required
    names = {field.path: field for field in doc.fields}
    assert names["cores"].default == "1"
    assert names["memory"].type == "integer | string"
    assert names["command"].type == "string | []string"
    assert names["name"].required and not names["node"].required
    assert field_doc("Job", "spec.restartPolicy").enum == ("Never", "OnFailure", "Always")
    assert field_doc("Job", "metadata.labels").type == "map[string]string"
    root = field_doc("Node")
    assert root.description and {f.path for f in root.fields} >= {"spec", "status", "metadata"}
    with pytest.raises(UnknownFieldError, match="its fields: name, image"):
        field_doc("Job", "spec.tasks.nope")
    with pytest.raises(UnknownKindError):
        describe_field("widgets", "spec")


@pytest.mark.parametrize(
    ("word", "kind"),
    [
        ("job", "Job"),
        ("Jobs", "Job"),
        ("JOB", "Job"),
        ("no", "Node"),
        ("nodes", "Node"),
        ("ev", "Event"),
        ("mig", "Migration"),
        ("cp", "Checkpoint"),
        ("checkpoints", "Checkpoint"),
        ("lease", "Lease"),
        ("cpol", "ClusterPolicy"),
        ("ClusterPolicies", "ClusterPolicy"),
        ("tasks", "Task"),
    ],
)
def test_resolve_kind(word: str, kind: str) -> None:
    assert resolve_kind(word) == kind


def test_resolve_kind_lists_the_known_kinds() -> None:
    with pytest.raises(UnknownKindError) as info:
        resolve_kind("pods")
    assert "jobs (job)" in str(info.value) and "nodes (node, no)" in str(info.value)
    assert info.value.word == "pods"


def test_object_names_follow_the_store_rule() -> None:
    assert name_error("Node", "sim-1") is None
    assert name_error("Job", "a" * 64) is not None
    assert name_error("Task", "Job_1") is not None


@pytest.mark.parametrize(
    "path",
    sorted(
        str(p.relative_to(MANIFESTS))
        for p in MANIFESTS.rglob("*")
        if p.suffix in (".yaml", ".yml", ".json")
    ),
)
def test_every_example_manifest_admits(path: str) -> None:
    admitted = admit_paths([str(MANIFESTS / path)], recursive=False, stdin=io.StringIO())
    assert admitted
    for item in admitted:
        assert validate(item.obj) == []


def test_the_example_directory_admits_as_a_whole() -> None:
    admitted = admit_paths([str(MANIFESTS)], recursive=True, stdin=io.StringIO())
    kinds = sorted((a.obj["kind"], a.obj["metadata"]["name"]) for a in admitted)
    assert kinds == [
        ("Job", "etl"),
        ("Job", "hello"),
        ("Job", "hello-world"),
        ("Job", "job1"),
        ("Job", "pinned"),
        ("Job", "probe"),
        ("Job", "report"),
        ("Job", "stress-docker"),
        ("Job", "stress-sim"),
        ("Job", "talk"),
        ("Job", "talk-restfulswarm"),
        ("Job", "train"),
        ("Job", "web"),
        ("Node", "rack-1"),
        ("Node", "rack-2"),
        ("Node", "sim-1"),
        ("Node", "sim-2"),
    ]
