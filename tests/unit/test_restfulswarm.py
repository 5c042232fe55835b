"""RESTfulSwarm job documents: conversion to v1 Jobs, and errors reported at the original fields."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from swarmapply.api.admission import AdmissionError, admit
from swarmapply.api.restfulswarm import (
    STATUS_ANNOTATION,
    TASKS_ANNOTATION,
    PathMap,
    RestfulSwarmError,
    convert,
    is_restfulswarm,
    to_job,
)


def task(name: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "container_name": name,
        "node": "",
        "image": "swarmapply-test/busybox:1",
        "detach": True,
        "command": "sleep 30",
        "req_cores": 2,
        "cpuset_cpus": "",
        "mem_limit": "10m",
        "ports": {},
        "volumes": {},
        "environment": {},
        "status": "Ready",
    }
    base.update(fields)
    return base


def document(*tasks: dict[str, Any], **top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "job_name": "job1",
        "job_info": {
            "network": {"name": "RESTfulSwarmNetwork", "driver": "", "subnet": ""},
            "tasks": {t["container_name"]: t for t in tasks},
        },
        "status": "Ready",
        "start_time": 0,
        "end_time": 0,
    }
    doc.update(top)
    return doc


def admit_doc(doc: Any) -> list[str]:
    """Admits one document; returns the error lines (empty when admitted)."""
    try:
        admit([("job1.json", json.dumps(doc))])
    except AdmissionError as exc:
        return [f"{e.path}: {e.message}" for e in exc.errors]
    return []


def test_detection() -> None:
    assert is_restfulswarm(document(task("a")))
    assert not is_restfulswarm({"job_name": "x"})
    assert not is_restfulswarm({"job_name": "x", "job_info": {}, "apiVersion": "v1"})
    assert not is_restfulswarm([])


def test_conversion_of_a_typical_job() -> None:
    doc = document(
        task("container1"),
        task(
            "container2",
            node="worker-1",
            cpuset_cpus="2,0-1",
            req_cores=3,
            mem_limit=536870912,
            command="",
            ports={"8080/tcp": 80, "9000/udp": None, "7000": "7001"},
            volumes={"/srv/data": {"bind": "/data", "mode": "ro"}, "cache": {"bind": "/cache"}},
            environment=["A=1", "B=x=y"],
            status="Deployed",
            deadline=7,
        ),
    )
    job, paths = to_job(doc)
    assert job["apiVersion"] == "swarmapply.io/v1"
    assert job["kind"] == "Job"
    assert job["metadata"]["name"] == "job1"
    annotations = job["metadata"]["annotations"]
    assert annotations[STATUS_ANNOTATION] == "Ready"
    assert json.loads(annotations[TASKS_ANNOTATION]) == {
        "container1": {"status": "Ready"},
        "container2": {"deadline": 7, "status": "Deployed"},
    }
    assert job["spec"]["network"] == {"name": "RESTfulSwarmNetwork"}
    first, second = job["spec"]["tasks"]
    assert first == {
        "name": "container1",
        "image": "swarmapply-test/busybox:1",
        "command": "sleep 30",
        "cores": 2,
        "memory": "10m",
    }
    assert second["node"] == "worker-1"
    assert second["cpuset"] == "2,0-1"
    assert "command" not in second
    assert second["ports"] == [
        {"containerPort": 8080, "protocol": "tcp", "hostPort": 80},
        {"containerPort": 9000, "protocol": "udp"},
        {"containerPort": 7000, "protocol": "tcp", "hostPort": 7001},
    ]
    assert second["volumes"] == [
        {"source": "/srv/data", "target": "/data", "readOnly": True},
        {"source": "cache", "target": "/cache", "readOnly": False},
    ]
    assert second["environment"] == {"A": "1", "B": "x=y"}
    assert paths.translate(("spec", "tasks", 1, "cores")) == (
        "job_info",
        "tasks",
        "container2",
        "req_cores",
    )
    assert paths.translate(("spec", "tasks", 1, "ports", 2, "hostPort")) == (
        "job_info",
        "tasks",
        "container2",
        "ports",
        "7000",
    )
    assert paths.translate(("spec", "network", "subnet")) == ("job_info", "network", "subnet")
    assert paths.translate(("apiVersion",)) == ()


def test_admitted_conversion_is_normalised() -> None:
    [admitted] = admit([("job1.json", json.dumps(document(task("a1"), task("a2"))))])
    assert admitted.converted_from == "restfulswarm"
    spec = admitted.obj["spec"]
    assert spec["network"] == {"name": "RESTfulSwarmNetwork", "driver": "overlay"}
    assert [t["memory"] for t in spec["tasks"]] == [10 * 1024 * 1024] * 2
    assert [t["command"] for t in spec["tasks"]] == [["sleep", "30"]] * 2
    assert spec["restartPolicy"] == "Never"


def test_list_volumes_environment_dict_and_old_cpu_count() -> None:
    old = task("a", volumes=["/h:/c:ro", "v:/d"], environment={"N": 5, "F": True})
    del old["req_cores"]
    old["cpu_count"] = 4
    job, _ = to_job(document(old))
    converted = job["spec"]["tasks"][0]
    assert converted["cores"] == 4
    assert converted["volumes"] == [
        {"source": "/h", "target": "/c", "readOnly": True},
        {"source": "v", "target": "/d", "readOnly": False},
    ]
    assert converted["environment"] == {"N": "5", "F": "True"}


def test_empty_optional_fields_are_dropped() -> None:
    sparse = task("a", ports=None, volumes=None, environment=None, node=None, cpuset_cpus=None)
    job, _ = to_job(document(sparse, status="", start_time=0))
    assert "annotations" not in job["metadata"] or STATUS_ANNOTATION not in job["metadata"].get(
        "annotations", {}
    )
    assert set(job["spec"]["tasks"][0]) == {"name", "image", "command", "cores", "memory"}


def test_observed_times_are_kept_in_annotations() -> None:
    job, _ = to_job(document(task("a"), start_time=1700000000.5, end_time=1700000100))
    annotations = job["metadata"]["annotations"]
    assert annotations["restfulswarm.swarmapply.io/start-time"] == "1700000000.5"
    assert annotations["restfulswarm.swarmapply.io/end-time"] == "1700000100"


def test_errors_after_conversion_point_at_original_fields() -> None:
    bad = document(
        task("container1", req_cores="two"),
        task("container2", mem_limit="lots", node="Bad_Node", cpuset_cpus="0-3", req_cores=2),
        task("container3", cpuset_cpus="1", req_cores=1),
        task("container4", ports={"80/tcp": 99999}, image=""),
        job_name="Job_1",
    )
    bad["job_info"]["network"]["subnet"] = "10.0.0.1/24"
    name_rule = (
        "expected lower-case letters, digits and '-', starting and ending with a letter or digit"
        " (e.g. 'my-job', 'web1')"
    )
    assert admit_doc(bad) == [
        "job_info.network.subnet: expected a subnet in CIDR form such as 10.10.0.0/24,"
        ' got "10.0.0.1/24" (10.0.0.1/24 has host bits set)',
        'job_info.tasks.container1.req_cores: expected an integer >= 1, got "two"',
        "job_info.tasks.container2.mem_limit: expected a memory quantity such as 512Mi, 10m,"
        ' 1.5g or 1073741824 (bytes), got "lots"',
        f'job_info.tasks.container2.node: invalid name "Bad_Node": {name_rule}',
        "job_info.tasks.container2.req_cores: must equal the number of cores in cpuset"
        " '0-3' (4), got 2",
        "job_info.tasks.container3.cpuset_cpus: a cpuset pin needs a node: set node as well"
        " (or drop cpuset)",
        "job_info.tasks.container4.image: required field is missing",
        'job_info.tasks.container4.ports["80/tcp"]: expected an integer between 1 and 65535,'
        " got 99999",
        f'job_name: invalid name "Job_1": {name_rule}',
    ]


def test_task_keys_must_be_valid_task_names() -> None:
    errors = admit_doc(document(task("job1_task1")))
    assert errors == [
        'job_info.tasks.job1_task1: invalid name "job1_task1": expected lower-case letters,'
        " digits and '-', starting and ending with a letter or digit (e.g. 'my-job', 'web1')"
    ]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(job_info=[]), ["job_info: expected a mapping with network and tasks"]),
        (lambda d: d["job_info"].update(tasks=[]), ["job_info.tasks: expected a mapping"]),
        (lambda d: d["job_info"].update(tasks={}), ["job_info.tasks: expected at least 1 item"]),
        (lambda d: d["job_info"].update(network="n"), ["job_info.network: expected a mapping"]),
        (lambda d: d["job_info"]["tasks"].update(b=5), ["job_info.tasks.b: expected a task"]),
        (lambda d: d.update(extra=1), ["extra: unknown RESTfulSwarm field"]),
        (lambda d: d.update(status=5), ["status: expected the job's status as a string"]),
        (lambda d: d.update(start_time=[]), ["start_time: expected a time"]),
        (lambda d: d.update(job_name=None), ["job_name: expected a non-empty string, got null"]),
        (lambda d: d["job_info"].update(other=1), ["job_info.other: unknown RESTfulSwarm field"]),
        (lambda d: d["job_info"]["network"].update(x=1), ["job_info.network.x: unknown"]),
        (lambda d: T(d).update(cpus=1), ["job_info.tasks.a.cpus: unknown RESTfulSwarm field"]),
        (lambda d: T(d).update(container_name="b"), ["job_info.tasks.a.container_name: must be"]),
        (lambda d: T(d).update(cpu_count=3), ["job_info.tasks.a.cpu_count: differs"]),
        (lambda d: T(d).pop("mem_limit"), ["job_info.tasks.a.mem_limit: required field"]),
        (lambda d: T(d).pop("image"), ["job_info.tasks.a.image: required field is missing"]),
        (lambda d: T(d).update(ports=[80]), ["job_info.tasks.a.ports: expected a mapping like"]),
        (lambda d: T(d).update(ports={"http": 80}), ["a.ports.http: expected a container port"]),
        (
            lambda d: T(d).update(ports={"80": ["0.0.0.0", 80]}),
            ["binding to a host IP is not supported"],
        ),
        (lambda d: T(d).update(ports={"80": True}), ['a.ports["80"]: expected a host port']),
        (lambda d: T(d).update(volumes="x"), ["job_info.tasks.a.volumes: expected a mapping"]),
        (lambda d: T(d).update(volumes={"/h": "/c"}), ['a.volumes["/h"]: expected {"bind"']),
        (lambda d: T(d).update(volumes={"/h": {"bind": "/c", "mode": "z"}}), ["expected mode"]),
        (lambda d: T(d).update(volumes={"/h": {"mode": "ro"}}), ['["/h"]: required field']),
        (
            lambda d: T(d).update(volumes={"/h": {"bind": "c"}}),
            ['["/h"]: expected a non-empty string like "/data", got "c"'],
        ),
        (lambda d: T(d).update(volumes={"./h": {"bind": "/c"}}), ['["./h"]: expected an abs']),
        (lambda d: T(d).update(volumes=["/h"]), ['a.volumes[0]: expected "/host/path:']),
        (lambda d: T(d).update(volumes=[1]), ['a.volumes[0]: expected "/host/path:']),
        (lambda d: T(d).update(environment="A=1"), ["a.environment: expected a mapping or"]),
        (lambda d: T(d).update(environment=[1]), ['a.environment[0]: expected "NAME=value"']),
        (lambda d: T(d).update(environment=["A=1", "A=2"]), ["environment[1]: variable"]),
        (lambda d: T(d).update(environment={"A": None}), ["environment.A: expected the var"]),
        (lambda d: T(d).update(environment={"A": {}}), ["environment.A: expected the var"]),
        (lambda d: T(d).update(environment={"": "x"}), ['environment[""]: invalid key']),
        (lambda d: T(d).update(command=5), ["job_info.tasks.a.command: expected a string or"]),
        (lambda d: T(d).update(command=["a", 1]), ["job_info.tasks.a.command[1]: expected a"]),
    ],
)
def test_malformed_documents_give_field_errors(mutate: Any, expected: list[str]) -> None:
    doc = document(task("a"))
    mutate(doc)
    errors = admit_doc(doc)
    assert len(errors) == len(expected), errors
    for line, start in zip(errors, expected, strict=True):
        assert start in line, (line, start)


def T(doc: dict[str, Any]) -> dict[str, Any]:
    """The first task of a document, for mutation in the table above."""
    first: dict[str, Any] = next(iter(doc["job_info"]["tasks"].values()))
    return first


def test_convert_never_raises_and_to_job_raises_one_structured_error() -> None:
    for junk in (None, 1, "x", [], {"job_name": 1, "job_info": 2}):
        result = convert(copy.deepcopy(junk))
        assert isinstance(result.paths, PathMap)
    with pytest.raises(RestfulSwarmError) as info:
        to_job({"job_name": "j", "job_info": {"tasks": {"a": 1}}})
    assert info.value.errors == [
        (("job_info", "tasks", "a"), "expected a task as a mapping, got 1")
    ]
    assert "job_info.tasks.a: expected a task as a mapping" in str(info.value)
