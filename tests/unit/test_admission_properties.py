"""Properties of admission: any input yields admitted objects or one AdmissionError (never any
other exception, never an internal error), and admitting admitted output changes nothing."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmapply.api.admission import AdmissionError, AdmittedObject, admit, parse_documents
from swarmapply.api.schema import validate

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["Job", "Node", "List", "swarmapply.io/v1", "512Mi", "0-3", "", "a"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.one_of(
                st.text(max_size=10),
                st.sampled_from(["apiVersion", "kind", "metadata", "spec", "tasks", "name"]),
            ),
            inner,
            max_size=6,
        ),
    ),
    max_leaves=30,
)
yaml_tokens = st.sampled_from(
    [
        "a",
        "1",
        "-",
        ": ",
        ":",
        "\n",
        "  ",
        "\t",
        "---\n",
        "...\n",
        "[",
        "]",
        "{",
        "}",
        ",",
        "&x ",
        "*x",
        "!!binary ",
        "!!set ",
        "!!timestamp ",
        "!!python/object ",
        "<<: ",
        "? ",
        "|",
        ">",
        "'",
        '"',
        "#",
        "%YAML 1.1\n",
        "kind: Job\n",
        "apiVersion: swarmapply.io/v1\n",
        "kind: List\n",
        "items:\n",
        "metadata: {name: x}\n",
        "job_name: j\n",
        "job_info:\n",
        ".nan",
        ".inf",
        "2024-01-01",
        "~",
        "null",
        "yes",
        "0x1F",
        "1e3",
        "\ufeff",
        "é",
        "\x00",
    ]
)
yaml_text = st.one_of(st.text(max_size=200), st.lists(yaml_tokens, max_size=40).map("".join))


def _manifest_objects() -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for path in sorted(MANIFESTS.rglob("*")):
        if path.suffix in (".yaml", ".yml", ".json"):
            for doc in parse_documents(path.read_text(encoding="utf-8"), path.name):
                found.append((path.name, doc))
    return found


MANIFEST_OBJECTS = _manifest_objects()


def _dumps(value: Any, as_json: bool) -> str:
    if as_json:
        return json.dumps(value, allow_nan=True)
    return yaml.safe_dump_all([value], sort_keys=False)


def check_admit(sources: list[tuple[str, str]]) -> list[AdmittedObject] | None:
    """Admits; returns the objects, or None after checking the error is well formed."""
    try:
        admitted = admit(sources)
    except AdmissionError as exc:
        assert exc.errors
        names = {name for name, _ in sources}
        for error in exc.errors:
            assert error.source in names
            assert error.document >= -1
            assert error.message
            assert "internal error" not in error.message, str(error)
        assert str(exc)
        return None
    for item in admitted:
        assert validate(item.obj) == [], item.obj
    return admitted


def assert_idempotent(admitted: list[AdmittedObject]) -> None:
    for item in admitted:
        for as_json in (True, False):
            again = admit([(f"again.{'json' if as_json else 'yaml'}", _dumps(item.obj, as_json))])
            assert [a.obj for a in again] == [item.obj]
            assert again[0].converted_from is None


@SETTINGS
@given(json_values, st.booleans())
def test_random_values_never_raise_anything_else(value: Any, as_json: bool) -> None:
    check_admit([("random.json" if as_json else "random.yaml", _dumps(value, as_json))])


@SETTINGS
@given(yaml_text)
def test_random_text_never_raises_anything_else(text: str) -> None:
    check_admit([("random.yaml", text), ("random.json", text), ("random", text)])


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*prefix, i))
    return found


def _mutate(doc: Any, data: st.DataObject) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(doc)
        path = data.draw(st.sampled_from(paths))
        op = data.draw(st.sampled_from(["delete", "replace", "retype", "add"]))
        if not path:
            doc = data.draw(json_values) if op == "replace" else doc
            continue
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        if op == "delete":
            del parent[last]
        elif op == "replace":
            parent[last] = data.draw(json_values)
        elif op == "retype":
            current = parent[last]
            parent[last] = data.draw(
                st.sampled_from([str(current), [current], {"v": current}, None, 1, True, 1.5])
            )
        elif isinstance(parent[last], dict):
            parent[last][data.draw(st.text(max_size=8))] = data.draw(json_values)
        elif isinstance(parent[last], list):
            parent[last].append(data.draw(json_values))
    return doc


@SETTINGS
@given(st.sampled_from(MANIFEST_OBJECTS), st.data(), st.booleans())
def test_mutated_manifests_never_raise_anything_else(
    manifest: tuple[str, Any], data: st.DataObject, as_json: bool
) -> None:
    name, doc = manifest
    mutated = _mutate(doc, data)
    admitted = check_admit([(name + (".json" if as_json else ".yaml"), _dumps(mutated, as_json))])
    if admitted:
        assert_idempotent(admitted)


def test_example_manifests_are_idempotent() -> None:
    for name, doc in MANIFEST_OBJECTS:
        admitted = admit([(name, json.dumps(doc))])
        assert_idempotent(admitted)


task_names = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
memories = st.one_of(  # valid task memories: at least Docker's 6 MiB minimum
    st.integers(min_value=6 * 2**20, max_value=2**40),
    st.builds(
        lambda n, unit: f"{n}{unit}",
        st.integers(min_value=6, max_value=4096),
        st.sampled_from(["m", "M", "mb", "Mi", "MiB", "g", "Gi"]),
    ),
    st.builds(
        lambda n, unit: f"{n}{unit}",
        st.integers(min_value=6144, max_value=10**6),
        st.sampled_from(["k", "kb", "Ki"]),
    ),
)


@st.composite
def valid_jobs(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(task_names, min_size=1, max_size=4, unique=True))
    tasks = []
    for name in names:
        task: dict[str, Any] = {
            "name": name,
            "image": "swarmapply-test/busybox:1",
            "memory": draw(memories),
        }
        if draw(st.booleans()):
            task["command"] = draw(
                st.one_of(
                    st.lists(st.text(max_size=8), max_size=3),
                    st.sampled_from(["sleep 30", "sh -c 'echo hi; sleep 1'", ""]),
                )
            )
        if draw(st.booleans()):
            cores = draw(st.sets(st.integers(min_value=0, max_value=63), min_size=1, max_size=8))
            task["node"] = "sim-1"
            task["cpuset"] = ",".join(str(c) for c in sorted(cores, reverse=True))
        elif draw(st.booleans()):
            task["cores"] = draw(st.integers(min_value=1, max_value=64))
        if draw(st.booleans()):
            task["environment"] = draw(
                st.dictionaries(st.from_regex(r"[A-Z_]{1,6}", fullmatch=True), st.text(max_size=5))
            )
        tasks.append(task)
    spec: dict[str, Any] = {"tasks": tasks}
    if draw(st.booleans()):
        spec["restartPolicy"] = draw(st.sampled_from(["Never", "OnFailure", "Always"]))
    if draw(st.booleans()):
        spec["network"] = {"subnet": "10.20.0.0/16"}
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Job",
        "metadata": {"name": draw(task_names)},
        "spec": spec,
    }


@SETTINGS
@given(valid_jobs(), st.booleans())
def test_valid_jobs_admit_and_are_idempotent(job: dict[str, Any], as_json: bool) -> None:
    [admitted] = admit([("job.json" if as_json else "job.yaml", _dumps(job, as_json))])
    assert validate(admitted.obj) == []
    tasks = admitted.obj["spec"]["tasks"]
    assert all(isinstance(t["memory"], int) and isinstance(t["cores"], int) for t in tasks)
    assert_idempotent([admitted])
