"""Manifest text to documents: YAML and JSON parsing, list expansion, JSON-likeness.

:func:`parse_text` reads multi-document YAML (safe loading; timestamps stay strings; duplicate
keys are errors) or JSON (one or more values), skips empty documents and expands top-level
lists and ``kind: List`` objects into their items, remembering where each item sits.
:func:`json_like` checks that a parsed value is plain JSON data (string keys, finite numbers, no
binary or other YAML-only types, bounded depth and size, no alias cycles) and turns whole
floats into integers. Problems are returned, never raised. Nothing here knows about kinds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from swarmapply.api.schema import Path, show_value

__all__ = ["MAX_DEPTH", "MAX_VALUES", "Document", "Problem", "json_like", "parse_text"]

#: How deeply values may nest in a document.
MAX_DEPTH = 40
#: How many values (counting each use of a YAML alias) a document may hold.
MAX_VALUES = 200_000

#: A problem found in a document: where (a field path) and what is wrong.
Problem = tuple[Path, str]


@dataclass(frozen=True)
class Document:
    """One object of the input.

    Attributes:
        index: The 0-based index of the YAML/JSON document it came from.
        prefix: Where the object sits inside that document (``("items", 2)`` in a List).
        value: The parsed value.
    """

    index: int
    prefix: Path
    value: Any


class _Loader(yaml.SafeLoader):
    """Safe YAML that keeps timestamps as strings and rejects duplicate keys."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                    key_node, yaml.ScalarNode
                ):
                    continue
                key = self.construct_object(key_node)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"found duplicate key {show_value(key)}", key_node.start_mark
                    )
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_error(exc: Exception) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context and exc.context_mark is not None:
            start = exc.context_mark
            what += f" ({exc.context} at line {start.line + 1}, column {start.column + 1})"
        if mark is not None:
            return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
        return f"invalid YAML: {what}"
    if isinstance(exc, RecursionError):
        return "invalid YAML: nested too deeply"
    return f"invalid YAML: {exc}"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {show_value(key)}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(text: str) -> tuple[list[Any], str | None]:
    """Parses one or more whitespace-separated JSON values; returns them and any error."""
    decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    values: list[Any] = []
    position = 0
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position >= len(text):
            return values, None
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            return values, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            return values, f"invalid JSON: {reason}"
        values.append(value)


def _parse_yaml(text: str) -> tuple[list[Any], str | None]:
    values: list[Any] = []
    try:
        for value in yaml.load_all(text, Loader=_Loader):
            values.append(value)
    except Exception as exc:  # PyYAML raises many types for bad input; all mean "invalid"
        return values, _yaml_error(exc)
    return values, None


def _expand(
    value: Any, document: int, prefix: Path, out: list[Document], errors: list[Problem]
) -> None:
    """Expands top-level lists and ``kind: List`` objects into their items."""
    if len(prefix) > 4:
        errors.append((prefix, "lists nested too deeply"))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _expand(item, document, (*prefix, i), out, errors)
    elif isinstance(value, dict) and value.get("kind") == "List":
        for key in value:
            if key not in ("apiVersion", "kind", "metadata", "items"):
                errors.append(((*prefix, str(key)), "unknown field; a List has only items"))
        items = value.get("items")
        if not isinstance(items, list):
            errors.append(
                ((*prefix, "items"), f"expected a list of objects, got {show_value(items)}")
            )
            return
        for i, item in enumerate(items):
            _expand(item, document, (*prefix, "items", i), out, errors)
    else:
        out.append(Document(document, prefix, value))


def parse_text(text: Any, source: str) -> tuple[list[Document], list[tuple[int, Path, str]]]:
    """Parses manifest text into documents.

    JSON is used when ``source`` ends in ``.json``, or when the text starts with ``{`` or
    ``[`` and is valid JSON (flow-style YAML starts like that too); YAML otherwise.

    Args:
        text: The manifest text.
        source: The source's name (only its extension matters).

    Returns:
        The documents, and the problems as ``(document index, path, message)``; a syntax
        error carries its line and column in the message and ends the source.
    """
    if not isinstance(text, str):
        return [], [(-1, (), f"expected text, got {type(text).__name__}")]
    text = text.removeprefix("\ufeff")
    stripped = text.lstrip(" \t\r\n")
    error: str | None
    if source.lower().endswith(".json"):
        values, error = _parse_json(text)
    elif stripped.startswith(("{", "[")):
        values, error = _parse_json(text)
        if error is not None:  # flow-style YAML also starts like this
            yaml_values, yaml_error = _parse_yaml(text)
            if yaml_error is None:
                values, error = yaml_values, None
    else:
        values, error = _parse_yaml(text)
    docs: list[Document] = []
    problems: list[tuple[int, Path, str]] = []
    for index, value in enumerate(values):
        if value is None:
            continue
        expand_errors: list[Problem] = []
        _expand(value, index, (), docs, expand_errors)
        problems += [(index, path, message) for path, message in expand_errors]
    if error is not None:
        problems.append((len(values), (), error))
    return docs, problems


class _Sanitizer:
    """Rejects what is not JSON-like (non-string keys, NaN, binary...) and turns whole floats
    into integers (no v1 field holds a fraction), bounding depth and size."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.values = 0
        self.stack: set[int] = set()

    def clean(self, value: Any, path: Path) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            if self.values == MAX_VALUES + 1:
                self.problems.append((path, f"document too large (more than {MAX_VALUES} values)"))
            return None
        if len(path) > MAX_DEPTH:
            self.problems.append((path, f"nested too deeply (more than {MAX_DEPTH} levels)"))
            return None
        if isinstance(value, (dict, list)):
            if id(value) in self.stack:
                self.problems.append((path, "a YAML alias refers to its own parent"))
                return None
            self.stack.add(id(value))
            try:
                if isinstance(value, list):
                    return [self.clean(item, (*path, i)) for i, item in enumerate(value)]
                result: dict[str, Any] = {}
                for key, item in value.items():
                    if not isinstance(key, str):
                        self.problems.append(
                            (
                                (*path, str(key)),
                                f"keys must be strings, got {show_value(key)} (quote it)",
                            )
                        )
                        continue
                    result[key] = self.clean(item, (*path, key))
                return result
            finally:
                self.stack.discard(id(value))
        if value is None or isinstance(value, (str, bool, int)):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                self.problems.append((path, f"expected a finite number, got {value}"))
                return None
            return int(value) if value.is_integer() else value
        self.problems.append(
            (path, f"unsupported value of type {type(value).__name__} (use plain YAML/JSON values)")
        )
        return None


def json_like(value: Any) -> tuple[Any, list[Problem]]:
    """Checks that a parsed value is plain JSON data; returns a cleaned copy and the problems.

    Offending parts are reported at their path and replaced by ``None`` in the copy (or left
    out, for non-string keys); whole floats become integers (no v1 field holds a fraction).

    Args:
        value: A parsed document.

    Returns:
        The cleaned copy and the problems found.
    """
    sanitizer = _Sanitizer()
    cleaned = sanitizer.clean(value, ())
    return cleaned, sanitizer.problems
