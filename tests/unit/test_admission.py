"""Admission: text in, valid normalised objects out, or every problem named precisely."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from swarmapply.api.admission import (
    AdmissionError,
    AdmittedObject,
    FieldError,
    admit,
    admit_paths,
    parse_documents,
    read_sources,
    validate_object,
)
from swarmapply.errors import PermanentError

JOB = """\
apiVersion: swarmapply.io/v1
kind: Job
metadata:
  name: {name}
spec:
  tasks:
  - name: a
    image: swarmapply-test/busybox:1
    command: sleep 30
    memory: 64m
"""

NODE = """\
apiVersion: swarmapply.io/v1
kind: Node
metadata: {{name: {name}}}
spec: {{capacity: {{cores: 4, memory: 8Gi}}}}
"""


def errors_of(*sources: tuple[str, str]) -> list[str]:
    with pytest.raises(AdmissionError) as info:
        admit(list(sources))
    return [str(error) for error in info.value.errors]


def only(text: str, source: str = "a.yaml") -> dict[str, Any]:
    [admitted] = admit([(source, text)])
    return admitted.obj


def test_field_error_rendering() -> None:
    error = FieldError(
        "jobs/a.yaml", 0, "spec.tasks[1].cores", 'expected an integer >= 1, got "two"'
    )
    assert (
        str(error)
        == 'jobs/a.yaml: document 1: spec.tasks[1].cores: expected an integer >= 1, got "two"'
    )
    assert str(FieldError("a.yaml", 2, "", "boom")) == "a.yaml: document 3: boom"
    assert str(FieldError("gone.yaml", -1, "", "no such file")) == "gone.yaml: no such file"


def test_admission_error_lists_every_error_one_per_line() -> None:
    errors = [FieldError("a", 0, "x", "one"), FieldError("b", 1, "", "two")]
    exc = AdmissionError(errors)
    assert isinstance(exc, PermanentError)
    assert str(exc) == "a: document 1: x: one\nb: document 2: two"
    assert exc.errors == errors


def test_the_brief_example_message() -> None:
    text = JOB.format(name="a") + "  - name: b\n    image: x\n    memory: 8m\n    cores: two\n"
    assert errors_of(("jobs/a.yaml", text)) == [
        'jobs/a.yaml: document 1: spec.tasks[1].cores: expected an integer >= 1, got "two"'
    ]


def test_multi_document_yaml_with_empty_documents() -> None:
    text = (
        "---\n"
        + JOB.format(name="one")
        + "---\n---\n# only a comment\n---\n"
        + NODE.format(name="n1")
    )
    admitted = admit([("many.yaml", text)])
    assert [(a.source, a.document, a.obj["kind"]) for a in admitted] == [
        ("many.yaml", 0, "Job"),
        ("many.yaml", 3, "Node"),
    ]
    assert all(a.converted_from is None for a in admitted)


def test_defaults_and_normalisation() -> None:
    obj = only(
        JOB.format(name="web")
        + """\
  - name: pinned
    image: x
    memory: 1.5g
    node: sim-1
    cpuset: "6,0-3"
    command: ["a"]
    ports: [{containerPort: 80}]
    volumes: [{source: /data, target: /data}]
"""
    )
    spec = obj["spec"]
    assert spec["network"] == {"name": "web", "driver": "overlay"}
    assert spec["priority"] == 0
    assert spec["restartPolicy"] == "Never"
    first, pinned = spec["tasks"]
    assert first["command"] == ["sleep", "30"]
    assert first["memory"] == 64 * 1024 * 1024
    assert first["cores"] == 1
    assert pinned["memory"] == 3 * 1024**3 // 2
    assert pinned["cpuset"] == "0-3,6"
    assert pinned["cores"] == 5
    assert pinned["ports"] == [{"containerPort": 80, "protocol": "tcp"}]
    assert pinned["volumes"] == [{"source": "/data", "target": "/data", "readOnly": False}]
    assert "ttlSecondsAfterFinished" not in spec


def test_shell_like_command_splitting_and_empty_commands() -> None:
    text = JOB.format(name="c").replace("sleep 30", "\"sh -c 'echo hello world'\"")
    assert only(text)["spec"]["tasks"][0]["command"] == ["sh", "-c", "echo hello world"]
    assert "command" not in only(JOB.format(name="c").replace("sleep 30", '""'))["spec"]["tasks"][0]


def test_network_name_is_kept_and_not_defaulted_without_a_name() -> None:
    text = JOB.format(name="x") + "  network: {name: shared, subnet: 10.9.0.0/16}\n"
    assert only(text)["spec"]["network"] == {
        "name": "shared",
        "subnet": "10.9.0.0/16",
        "driver": "overlay",
    }
    generated = JOB.format(name="x").replace("  name: x", "  generateName: batch-")
    assert only(generated)["spec"]["network"] == {"driver": "overlay"}


def test_every_problem_in_every_document_of_every_source() -> None:
    bad_job = """\
apiVersion: swarmapply.io/v1
kind: Job
metadata: {name: Bad_Name, labels: {"a$": x}, annotations: {"-x": y}}
spec:
  tasks:
  - {name: a, image: x, memory: 0}
  - {name: a, image: x, memory: 8m, cpuset: "3-1", node: n}
  - {name: B, image: x, memory: 8m, cpuset: "0-1"}
  - {name: c, image: x, memory: 8m, node: n, cpuset: "0-1", cores: 3}
  priority: high
  restartPolicy: Sometimes
  ttlSecondsAfterFinished: -1
"""
    assert errors_of(
        ("one.yaml", bad_job + "---\n" + NODE.format(name="n1")), ("two.yaml", "kind: Widget\n")
    ) == [
        'one.yaml: document 1: metadata.annotations["-x"]: invalid key "-x": the name part must'
        " consist of letters, digits, '-', '_' and '.', starting and ending with a letter or"
        " digit (e.g. 'app', 'tier_1', 'my.name')",
        'one.yaml: document 1: metadata.labels["a$"]: invalid key "a$": the name part must'
        " consist of letters, digits, '-', '_' and '.', starting and ending with a letter or"
        " digit (e.g. 'app', 'tier_1', 'my.name')",
        'one.yaml: document 1: metadata.name: invalid name "Bad_Name": expected lower-case'
        " letters, digits and '-', starting and ending with a letter or digit"
        " (e.g. 'my-job', 'web1')",
        "one.yaml: document 1: spec.priority: expected an integer between -2147483648 and"
        ' 2147483647, got "high"',
        "one.yaml: document 1: spec.restartPolicy: expected one of Never, OnFailure, Always,"
        ' got "Sometimes"',
        "one.yaml: document 1: spec.tasks[0].memory: expected a memory quantity such as 512Mi,"
        " 10m, 1.5g or 1073741824 (bytes), got 0 (memory must be at least 1 byte)",
        'one.yaml: document 1: spec.tasks[1].cpuset: expected a cpuset such as "0-3,6" or "2",'
        ' got "3-1" (range 3-1 is descending; write 1-3)',
        'one.yaml: document 1: spec.tasks[1].name: task name "a" is already used by'
        " spec.tasks[0].name",
        "one.yaml: document 1: spec.tasks[2].cpuset: a cpuset pin needs a node: set node as"
        " well (or drop cpuset)",
        'one.yaml: document 1: spec.tasks[2].name: invalid name "B": expected lower-case'
        " letters, digits and '-', starting and ending with a letter or digit"
        " (e.g. 'my-job', 'web1')",
        "one.yaml: document 1: spec.tasks[3].cores: must equal the number of cores in cpuset"
        " '0-1' (2), got 3",
        "one.yaml: document 1: spec.ttlSecondsAfterFinished: expected an integer >= 0, got -1",
        'two.yaml: document 1: apiVersion: expected "swarmapply.io/v1", got null',
        'two.yaml: document 1: kind: unknown kind "Widget"; expected one of Job, Task, Node,'
        " Migration, Checkpoint, Event, Lease, ClusterPolicy",
    ]


def test_nothing_is_admitted_when_one_document_is_bad() -> None:
    with pytest.raises(AdmissionError) as info:
        admit(
            [
                ("good.yaml", JOB.format(name="good")),
                ("bad.yaml", JOB.format(name="bad") + "  oops: 1\n"),
            ]
        )
    assert [str(e) for e in info.value.errors] == [
        "bad.yaml: document 1: spec.oops: unknown field; known fields: backoffLimit, network,"
        " placement, priority, restartPolicy, simulation, tasks, ttlSecondsAfterFinished"
    ]


def test_the_same_kind_and_name_twice_is_an_error() -> None:
    errors = errors_of(
        ("a.yaml", JOB.format(name="web") + "---\n" + NODE.format(name="web")),
        ("b.yaml", JOB.format(name="web")),
        (
            "c.json",
            json.dumps(
                {"job_name": "web", "job_info": {"tasks": {"t": {"image": "i", "mem_limit": "8m"}}}}
            ),
        ),
    )
    twice = "Job 'web' is defined more than once (first in a.yaml document 1)"
    assert errors == [
        f"b.yaml: document 1: metadata.name: {twice}",
        f"c.json: document 1: job_name: {twice}",
    ]


def test_duplicates_are_found_even_in_invalid_documents() -> None:
    errors = errors_of(
        ("a.yaml", JOB.format(name="x") + "---\n" + JOB.format(name="x") + "  bad: 1\n")
    )
    assert errors == [
        "a.yaml: document 2: metadata.name: Job 'x' is defined more than once"
        " (first in a.yaml document 1)",
        "a.yaml: document 2: spec.bad: unknown field; known fields: backoffLimit, network,"
        " placement, priority, restartPolicy, simulation, tasks, ttlSecondsAfterFinished",
    ]


def test_list_expansion() -> None:
    items = [json.loads(json.dumps(only(JOB.format(name=n)))) for n in ("l1", "l2")]
    listed = {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}
    admitted = admit(
        [
            ("list.json", json.dumps(listed)),
            ("top.yaml", "- " + json.dumps(only(NODE.format(name="n9")))),
        ]
    )
    assert [(a.source, a.document, a.obj["metadata"]["name"]) for a in admitted] == [
        ("list.json", 0, "l1"),
        ("list.json", 0, "l2"),
        ("top.yaml", 0, "n9"),
    ]
    items[1]["spec"]["tasks"][0]["cores"] = 0
    listed["items"] = [*items, 5]
    listed["extra"] = True
    assert errors_of(("list.json", json.dumps(listed))) == [
        "list.json: document 1: extra: unknown field; a List has only items",
        "list.json: document 1: items[1].spec.tasks[0].cores: expected an integer >= 1, got 0",
        "list.json: document 1: items[2]: expected an object with apiVersion and kind, got 5",
    ]
    assert errors_of(("l.yaml", "kind: List\nitems: 3\n")) == [
        "l.yaml: document 1: items: expected a list of objects, got 3"
    ]
    assert admit([("empty.yaml", "kind: List\nitems: []\n---\n[]\n")]) == []


@pytest.mark.parametrize(
    ("source", "text", "message"),
    [
        (
            "a.yaml",
            "a: [1, 2\n",
            "a.yaml: document 1: invalid YAML at line 2, column 1: expected ',' or ']'",
        ),
        (
            "a.yaml",
            NODE.format(name="n") + "---\nb: {\n",
            "a.yaml: document 2: invalid YAML at line 7, column 1",
        ),
        (
            "a.yaml",
            "a: 1\na: 2\n",
            'a.yaml: document 1: invalid YAML at line 2, column 1: found duplicate key "a"',
        ),
        ("a.yaml", "\tkind: Job\n", "a.yaml: document 1: invalid YAML at line 1, column 1"),
        ("a.json", '{"a": 1,}', "a.json: document 1: invalid JSON at line 1, column 9"),
        ("a.json", '{"a": 1, "a": 2}', 'a.json: document 1: invalid JSON: duplicate key "a"'),
        ("a.json", '{"a": NaN}', "a.json: document 1: invalid JSON: NaN is not valid JSON"),
        ("stdin", '[{"a": \n  1}', "stdin: document 1: invalid JSON at line 2, column 5"),
        ("a.json", "", None),
    ],
)
def test_syntax_errors_have_positions(source: str, text: str, message: str | None) -> None:
    if message is None:
        assert admit([(source, text)]) == []
        return
    [error] = errors_of((source, text))
    assert error.startswith(message), error


def test_flow_yaml_that_looks_like_json_is_still_yaml() -> None:
    text = "{apiVersion: swarmapply.io/v1, kind: Node, metadata: {name: n}}"
    assert only(text)["metadata"]["name"] == "n"


def test_json_streams_and_byte_order_marks() -> None:
    text = (
        "\ufeff"
        + json.dumps(only(NODE.format(name="j1")))
        + "\n"
        + json.dumps(only(NODE.format(name="j2")))
    )
    assert [a.document for a in admit([("s.json", text)])] == [0, 1]


def test_yaml_oddities_become_field_errors() -> None:
    text = """\
apiVersion: swarmapply.io/v1
kind: Node
metadata:
  name: odd
  creationTimestamp: 2024-05-01T12:00:00Z
  labels: {1: x, ok: .nan, b: !!binary aGVsbG8=}
spec: {capacity: {cores: 2.0, memory: 1000.0}}
"""
    assert errors_of(("odd.yaml", text)) == [
        'odd.yaml: document 1: metadata.labels["1"]: keys must be strings, got 1 (quote it)',
        "odd.yaml: document 1: metadata.labels.b: unsupported value of type bytes"
        " (use plain YAML/JSON values)",
        "odd.yaml: document 1: metadata.labels.ok: expected a finite number, got nan",
    ]
    fixed = text.replace("  labels: {1: x, ok: .nan, b: !!binary aGVsbG8=}\n", "")
    obj = only(fixed)
    assert obj["metadata"]["creationTimestamp"] == "2024-05-01T12:00:00Z"
    assert obj["spec"]["capacity"] == {"cores": 2, "memory": 1000}


def test_recursive_and_exploding_yaml() -> None:
    assert errors_of(("r.yaml", "&a {kind: *a}\n")) == [
        'r.yaml: document 1: apiVersion: expected "swarmapply.io/v1", got null',
        "r.yaml: document 1: kind: a YAML alias refers to its own parent",
    ]
    [error] = errors_of(("r.yaml", "&a [*a]\n"))
    assert "nested too deeply" in error
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefgh":
        laughs += f"{level}: &{level} [" + ", ".join(["*" + chr(ord(level) - 1)] * 10) + "]\n"
    errors = errors_of(("laughs.yaml", laughs))
    assert any("document too large" in e for e in errors)
    deep = "a: " + "[" * 60 + "]" * 60 + "\n"
    errors = errors_of(("deep.yaml", deep))
    assert any("nested too deeply" in e for e in errors)
    very_deep = "[" * 5000 + "]" * 5000
    errors = errors_of(("deep.json", very_deep))
    assert errors and all("deep.json: document 1" in e for e in errors)


def test_other_kinds_admit_with_their_rules() -> None:
    migration = (
        "apiVersion: swarmapply.io/v1\nkind: Migration\nmetadata: {name: m}\nspec: {task: web-a}\n"
    )
    assert only(migration)["spec"] == {"task": "web-a", "mode": "auto"}
    both = migration.replace("{task: web-a}", "{task: web-a, job: web, toNode: Node_1}")
    assert errors_of(("m.yaml", both)) == [
        "m.yaml: document 1: spec: set only one of task, job; got task, job",
        'm.yaml: document 1: spec.toNode: invalid name "Node_1": expected lower-case letters,'
        " digits and '-', starting and ending with a letter or digit (e.g. 'my-job', 'web1')",
    ]
    checkpoint = (
        "apiVersion: swarmapply.io/v1\nkind: Checkpoint\nmetadata: {name: c}\nspec: {task: t}\n"
    )
    assert only(checkpoint)["spec"] == {"task": "t", "leaveRunning": True}
    task = (
        "apiVersion: swarmapply.io/v1\nkind: Task\nmetadata: {name: web-a}\n"
        "spec: {job: web, image: x, cores: 1, memory: 1Gi, command: echo hi}\n"
    )
    assert only(task)["spec"] == {
        "job": "web",
        "image": "x",
        "cores": 1,
        "memory": 1 << 30,
        "command": ["echo", "hi"],
        "priority": 0,
        "restartPolicy": "Never",
    }
    event = (
        "apiVersion: swarmapply.io/v1\nkind: Event\nmetadata: {generateName: web-}\n"
        "involvedObject: {kind: Job, name: web}\ntype: Normal\nreason: Created\n"
    )
    assert only(event)["reason"] == "Created"
    bad_prefix = event.replace("generateName: web-", "generateName: Web_")
    assert len(errors_of(("e.yaml", bad_prefix))) == 1


def test_port_and_volume_conflicts() -> None:
    text = JOB.format(name="p") + (
        "    ports: [{containerPort: 80}, {containerPort: 80, protocol: udp},"
        " {containerPort: 81, hostPort: 9000}, {containerPort: 82, hostPort: 9000}]\n"
        "    volumes: [{source: /a, target: /data}, {source: vol-1, target: /data/},"
        " {source: ../rel, target: /x}]\n"
    )
    assert errors_of(("p.yaml", text)) == [
        "p.yaml: document 1: spec.tasks[0].ports[3].hostPort: hostPort 9000/tcp is already"
        " used by spec.tasks[0].ports[2]",
        "p.yaml: document 1: spec.tasks[0].volumes[1].target: /data/ is already mounted by"
        " spec.tasks[0].volumes[0]",
        "p.yaml: document 1: spec.tasks[0].volumes[2].source: expected an absolute host path or"
        " a volume name (letters, digits, '_', '.', '-'), got \"../rel\"",
    ]


def test_admitted_objects_are_plain_data() -> None:
    [admitted] = admit([("a.yaml", JOB.format(name="x"))])
    assert isinstance(admitted, AdmittedObject)
    assert json.loads(json.dumps(admitted.obj)) == admitted.obj


def test_parse_documents() -> None:
    assert parse_documents("a: 1\n---\n---\n- b\n- c\n", "x.yaml") == [{"a": 1}, "b", "c"]
    assert parse_documents('{"when": "2024-05-01T12:00:00Z"}', "x") == [
        {"when": "2024-05-01T12:00:00Z"}
    ]
    assert parse_documents("when: 2024-05-01\n", "x.yaml") == [{"when": "2024-05-01"}]
    with pytest.raises(AdmissionError) as info:
        parse_documents("a: [", "x.yaml")
    assert "line 2, column 1" in str(info.value) or "line 1" in str(info.value)


def test_non_text_sources_are_errors() -> None:
    with pytest.raises(AdmissionError) as info:
        admit([("weird", b"kind: Job")])  # type: ignore[list-item]
    assert str(info.value) == "weird: expected text, got bytes"


def test_validate_object_for_stored_objects() -> None:
    obj = only(JOB.format(name="s"))
    assert validate_object(obj) == []
    obj["spec"]["tasks"][0]["cores"] = 0
    assert [str(e) for e in validate_object(obj)] == [
        "jobs/s: spec.tasks[0].cores: expected an integer >= 1, got 0"
    ]
    assert [str(e) for e in validate_object(5)] == [
        "<object>: expected a mapping with apiVersion, kind and metadata, got 5"
    ]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_read_sources_from_a_directory(tmp_path: Path) -> None:
    _write(tmp_path / "b.yaml", NODE.format(name="b"))
    _write(tmp_path / "a.yml", NODE.format(name="a"))
    _write(tmp_path / "c.json", json.dumps(only(NODE.format(name="c"))))
    _write(tmp_path / "README.md", "# not a manifest")
    _write(tmp_path / ".hidden.yaml", "junk: [")
    _write(tmp_path / ".#a.yaml", "junk: [")
    _write(tmp_path / "a.yaml~", "junk: [")
    _write(tmp_path / "a.yaml.swp", "junk: [")
    _write(tmp_path / ".a.yaml.swp", "junk: [")
    _write(tmp_path / "sub" / "d.yaml", NODE.format(name="d"))
    _write(tmp_path / ".git" / "e.yaml", "junk: [")
    names = [
        os.path.relpath(name, tmp_path)
        for name, _ in read_sources([str(tmp_path)], False, io.StringIO())
    ]
    assert names == ["a.yml", "b.yaml", "c.json"]
    names = [
        os.path.relpath(name, tmp_path)
        for name, _ in read_sources([str(tmp_path)], True, io.StringIO())
    ]
    assert names == ["a.yml", "b.yaml", "c.json", os.path.join("sub", "d.yaml")]
    admitted = admit_paths([str(tmp_path)], True, io.StringIO())
    assert [a.obj["metadata"]["name"] for a in admitted] == ["a", "b", "c", "d"]


def test_read_sources_files_stdin_and_missing_paths(tmp_path: Path) -> None:
    _write(tmp_path / "job.txt", JOB.format(name="t"))
    stdin = io.StringIO(NODE.format(name="from-stdin"))
    sources = read_sources([str(tmp_path / "job.txt"), "-"], False, stdin)
    assert [name for name, _ in sources] == [str(tmp_path / "job.txt"), "<stdin>"]
    missing = str(tmp_path / "nope.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(AdmissionError) as info:
        read_sources(
            [missing, str(tmp_path / "latin1.yaml"), str(tmp_path / "job.txt")],
            False,
            io.StringIO(),
        )
    assert [str(e) for e in info.value.errors] == [
        f"{missing}: no such file or directory",
        f"{tmp_path / 'latin1.yaml'}: not UTF-8 text (invalid continuation byte at byte 9)",
    ]


def test_admit_paths_reports_unreadable_paths_with_the_rest(tmp_path: Path) -> None:
    _write(tmp_path / "bad.yaml", JOB.format(name="x") + "  nope: 1\n")
    missing = str(tmp_path / "missing")
    with pytest.raises(AdmissionError) as info:
        admit_paths([missing, str(tmp_path)], False, io.StringIO())
    lines = [str(e) for e in info.value.errors]
    assert lines[0] == f"{missing}: no such file or directory"
    assert lines[1].startswith(f"{tmp_path / 'bad.yaml'}: document 1: spec.nope: unknown field")
    with pytest.raises(AdmissionError):
        admit_paths([missing], False, io.StringIO())


def test_task_memory_below_dockers_minimum_is_refused_with_the_reason() -> None:
    text = JOB.format(name="a").replace("memory: 64m", "memory: 5m")
    assert "memory: 5m" in text
    with pytest.raises(AdmissionError) as caught:
        admit([("small.yaml", text)])
    assert [str(e) for e in caught.value.errors] == [
        "small.yaml: document 1: spec.tasks[0].memory: expected at least 6Mi "
        "(Docker's smallest memory limit), got 5Mi"
    ]


def test_the_same_path_twice_is_read_once(tmp_path: Path) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB.format(name="a"))
    admitted = admit_paths([str(manifest), str(manifest)], recursive=False, stdin=io.StringIO())
    assert [item.obj["metadata"]["name"] for item in admitted] == ["a"]


def test_an_exclusive_minimum_is_said_in_words() -> None:
    text = JOB.format(name="sim") + "  simulation: {duration: 0}\n"
    assert errors_of(("j.yaml", text)) == [
        "j.yaml: document 1: spec.simulation.duration: expected a number > 0, got 0"
    ]
