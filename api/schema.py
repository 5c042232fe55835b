"""The JSON Schemas of the v1 kinds: loading, validating objects, defaults and field docs.

The schemas in the ``schemas`` package are the single source of truth for the shape of every
object, both as users write it and as the store holds it. They are read once (from package
data) and compiled into one draft 2020-12 validator per kind. :func:`validate` reports every
violation with its field path and a message meant for people; :func:`with_defaults` fills the
schema defaults; :func:`field_doc` and :func:`describe_field` serve ``explain``.

Only the schema is checked here: rules the schema cannot express (name syntax, quantities that
must parse, unique task names...) are admission's job.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from swarmapply.api.kinds import API_VERSION, KINDS, UnknownKindError, kind_info
from swarmapply.api.messages import show_value
from swarmapply.errors import PermanentError

__all__ = [
    "FieldDoc",
    "Path",
    "UnknownFieldError",
    "describe_field",
    "field_doc",
    "format_path",
    "schema_for",
    "show_value",
    "validate",
    "with_defaults",
]

#: A field path: keys and list indexes from the object's root, e.g. ``("spec", "tasks", 1)``.
Path = tuple[str | int, ...]

_SCHEMA_PACKAGE = "swarmapply.api.schemas"
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_BIG = 2**31  # bounds above this are not worth mentioning in messages


class UnknownFieldError(PermanentError, LookupError):
    """A field path that the kind's schema does not define."""


@dataclass(frozen=True)
class FieldDoc:
    """The documentation of one field, for ``explain``.

    Attributes:
        path: The dotted path asked for (``spec.tasks.cores``); ``""`` for the object itself.
        type: The field's type in short form: ``string``, ``integer``, ``[]object``,
            ``integer | string``...
        description: The schema's description of the field.
        required: Whether the enclosing object requires the field.
        default: The default as JSON text, or ``None`` when there is none.
        enum: The allowed values, if the field is an enumeration.
        fields: The fields of an object (or of an array's items), one level deep.
    """

    path: str
    type: str
    description: str
    required: bool = False
    default: str | None = None
    enum: tuple[str, ...] = ()
    fields: tuple[FieldDoc, ...] = ()


def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True  # the type keyword reports non-strings
    if _RFC3339.fullmatch(value) is None:
        return False
    try:
        datetime.fromisoformat(value[:19])
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1)
def _load() -> tuple[dict[str, dict[str, Any]], Registry[Any]]:
    """Reads every schema file once; returns them by file name, and the registry of them."""
    documents: dict[str, dict[str, Any]] = {}
    for entry in resources.files(_SCHEMA_PACKAGE).iterdir():
        if entry.name.endswith(".json"):
            documents[entry.name] = json.loads(entry.read_text(encoding="utf-8"))
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc, default_specification=DRAFT202012))
        for doc in documents.values()
    )
    return documents, registry.crawl()


@cache
def _validator(kind: str) -> Any:
    documents, registry = _load()
    checker = FormatChecker(formats=())
    checker.checks("date-time")(_is_rfc3339)
    schema = documents[kind_info(kind).schema_file]
    return Draft202012Validator(schema, registry=registry, format_checker=checker)


def schema_for(kind: str) -> dict[str, Any]:
    """Returns (a copy of) the JSON Schema of a kind.

    Args:
        kind: The kind, or any word :func:`swarmapply.api.kinds.resolve_kind` accepts.

    Returns:
        The schema document; ``$ref`` s into ``common.json`` are left as they are.

    Raises:
        UnknownKindError: ``kind`` names no kind.
    """
    return copy.deepcopy(_load()[0][kind_info(kind).schema_file])


def format_path(path: Iterable[str | int]) -> str:
    """Renders a field path as people read it: ``spec.tasks[1].cores``.

    Keys that are not plain words are quoted: ``metadata.labels["app.kubernetes.io/name"]``.

    Args:
        path: Keys and list indexes from the object's root.

    Returns:
        The rendered path; ``""`` for the root.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def validate(obj: Any) -> list[tuple[Path, str]]:
    """Validates an object against its kind's schema, collecting every violation.

    Args:
        obj: A v1 object (a mapping with ``apiVersion``, ``kind``, ``metadata``...).

    Returns:
        ``(path, message)`` pairs sorted by path; empty when the object is valid. An object
        whose kind is missing or unknown gets one error at ``kind`` (and one at ``apiVersion``
        if that is wrong too), since there is no schema to check the rest against.
    """
    if not isinstance(obj, dict):
        return [
            ((), f"expected a mapping with apiVersion, kind and metadata, got {show_value(obj)}")
        ]
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        problems: list[tuple[Path, str]] = []
        if obj.get("apiVersion") != API_VERSION:
            problems.append(
                (
                    ("apiVersion",),
                    f"expected {json.dumps(API_VERSION)}, got {show_value(obj.get('apiVersion'))}",
                )
            )
        known = ", ".join(KINDS)
        if kind is None:
            problems.append((("kind",), f"required field is missing; expected one of {known}"))
        else:
            hint = difflib.get_close_matches(str(kind).capitalize(), list(KINDS), n=1)
            guess = f" (did you mean {hint[0]}?)" if hint else ""
            problems.append(
                (("kind",), f"unknown kind {show_value(kind)}{guess}; expected one of {known}")
            )
        return problems
    found: dict[tuple[Path, str], None] = {}
    for error in _validator(kind).iter_errors(obj):
        for item in _messages(error):
            found[item] = None
    return sorted(found, key=lambda item: (_path_key(item[0]), item[1]))


def _path_key(path: Path) -> tuple[tuple[int, int, str], ...]:
    return tuple((1, part, "") if isinstance(part, int) else (0, 0, part) for part in path)


def _messages(error: ValidationError) -> list[tuple[Path, str]]:
    """Turns one jsonschema error into ``(path, message)`` pairs meant for people."""
    path: Path = tuple(error.absolute_path)
    validator = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    instance = error.instance
    if "propertyNames" in error.schema_path:
        wanted = schema.get("description") or _expected(schema)
        return [((*path, str(instance)), f"invalid key {show_value(instance)}: expected {wanted}")]
    if validator == "required":
        present = instance if isinstance(instance, dict) else {}
        return [
            ((*path, name), "required field is missing")
            for name in error.validator_value
            if name not in present
        ]
    if validator == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        present = instance if isinstance(instance, dict) else {}
        return [
            ((*path, str(key)), _unknown_field(str(key), known))
            for key in present
            if key not in known
        ]
    if validator in ("anyOf", "oneOf"):
        return _choice_messages(error, path, schema)
    if validator == "minItems":
        count = error.validator_value
        return [
            (
                path,
                f"expected at least {count} item{'s' if count != 1 else ''}, got {len(instance)}",
            )
        ]
    if validator == "maxLength":
        return [(path, f"must be at most {error.validator_value} characters, got {len(instance)}")]
    if validator == "uniqueItems":
        return [(path, "expected unique items, got duplicates")]
    if validator == "minLength" and error.validator_value == 1:
        return [(path, "must not be empty")]
    if validator in (
        "type",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "pattern",
        "format",
        "enum",
        "const",
        "minLength",
    ):
        return [(path, f"expected {_expected(schema)}, got {show_value(instance)}")]
    return [(path, error.message if len(error.message) <= 200 else error.message[:197] + "...")]


def _choice_messages(
    error: ValidationError, path: Path, schema: dict[str, Any]
) -> list[tuple[Path, str]]:
    branches = [b for b in error.validator_value if isinstance(b, dict)]
    if branches and all(set(b) == {"required"} and len(b["required"]) == 1 for b in branches):
        names = [b["required"][0] for b in branches]
        present = [n for n in names if isinstance(error.instance, dict) and n in error.instance]
        if present:
            return [(path, f"set only one of {', '.join(names)}; got {', '.join(present)}")]
        others = " or ".join(names[1:])
        if error.validator == "oneOf":
            return [
                (
                    (*path, names[0]),
                    f"required field is missing (set exactly one of {names[0]}, {others})",
                )
            ]
        return [((*path, names[0]), f"required field is missing (or set {others})")]
    deepest = [c for c in error.context or () if c.relative_path]
    if deepest:  # the value has a branch's type but fails inside it: say where
        chosen = best_match(deepest)
        if chosen is not None:
            return _messages(chosen)
    return [(path, f"expected {_expected(schema)}, got {show_value(error.instance)}")]


def _unknown_field(key: str, known: list[str]) -> str:
    message = "unknown field"
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    if known:
        message += f"; known fields: {', '.join(known)}"
    return message


def _expected(schema: dict[str, Any], brief: bool = False) -> str:
    """Says in words what a (resolved) schema accepts, e.g. ``an integer >= 1``.

    ``brief`` leaves out examples and patterns (used for the branches of a choice).
    """
    schema = _merged(schema, None)[0] if "$ref" in schema else schema
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    if "anyOf" in schema or "oneOf" in schema:
        branches = schema.get("anyOf", schema.get("oneOf", []))
        text = " or ".join(_expected(b, brief=True) for b in branches if isinstance(b, dict))
        examples = schema.get("examples")
        if examples and not brief:
            shown = [e if isinstance(e, str) and " " not in e else json.dumps(e) for e in examples]
            listed = ", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1 else shown[0]
            text += " such as " + listed
        return text
    kind = schema.get("type")
    if kind == "integer" or kind == "number":
        noun = "an integer" if kind == "integer" else "a number"
        lo, hi = schema.get("minimum"), schema.get("maximum")
        above = schema.get("exclusiveMinimum")
        if above is not None:
            return f"{noun} > {above}"
        if lo is not None and hi is not None and hi < _BIG:
            return f"{noun} between {lo} and {hi}"
        if lo is not None:
            return f"{noun} >= {lo}"
        if hi is not None and hi < _BIG:
            return f"{noun} <= {hi}"
        return noun
    if kind == "string":
        if schema.get("format") == "date-time":
            return "an RFC 3339 timestamp like 2024-05-01T12:00:00Z"
        text = "a non-empty string" if schema.get("minLength") == 1 else "a string"
        examples = [e for e in schema.get("examples", []) if isinstance(e, str)]
        if brief:
            return text
        if examples:
            text += " like " + " or ".join(json.dumps(e) for e in examples)
        elif "pattern" in schema:
            text += f" matching {schema['pattern']}"
        return text
    if kind == "boolean":
        return "true or false"
    if kind == "object":
        return "a mapping"
    if kind == "array":
        items = schema.get("items")
        if isinstance(items, dict) and items.get("type") == "string":
            return "a list of strings"
        return "a list"
    return "a valid value"


def _merged(schema: dict[str, Any], resolver: Any) -> tuple[dict[str, Any], Any]:
    """Follows ``$ref`` s; keywords next to a ``$ref`` (description, default) win."""
    if resolver is None:
        resolver = _load()[1].resolver(base_uri=_load()[0]["common.json"]["$id"])
    merged: dict[str, Any] = {}
    while "$ref" in schema:
        for key, value in schema.items():
            if key != "$ref":
                merged.setdefault(key, value)
        resolved = resolver.lookup(schema["$ref"])
        schema, resolver = resolved.contents, resolved.resolver
    for key, value in schema.items():
        merged.setdefault(key, value)
    return merged, resolver


def _root(kind: str) -> tuple[dict[str, Any], Any]:
    documents, registry = _load()
    schema = documents[kind_info(kind).schema_file]
    return schema, registry.resolver(base_uri=schema["$id"])


def with_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    """Returns a copy of an object with the schema's defaults filled in where fields are absent.

    Only fields inside mappings that exist are filled (a missing ``spec.network`` stays
    missing); values of the wrong type are left for :func:`validate` to report.

    Args:
        obj: A v1 object of a known kind.

    Returns:
        A deep copy with defaults applied.

    Raises:
        UnknownKindError: The object's kind is unknown.
    """
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise UnknownKindError(str(kind))
    result = copy.deepcopy(obj)
    schema, resolver = _root(kind)
    _fill(result, schema, resolver)
    return result


def _fill(value: Any, schema: dict[str, Any], resolver: Any) -> None:
    schema, resolver = _merged(schema, resolver)
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            sub_schema, sub_resolver = _merged(sub, resolver)
            if name not in value and "default" in sub_schema:
                value[name] = copy.deepcopy(sub_schema["default"])
            elif name in value:
                _fill(value[name], sub_schema, sub_resolver)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _fill(item, schema["items"], resolver)


def _type_name(schema: dict[str, Any], resolver: Any) -> str:
    schema, resolver = _merged(schema, resolver)
    if "type" not in schema and "properties" in schema:
        return "object"
    if "type" not in schema and ("anyOf" in schema or "oneOf" in schema):
        # Branches that only add constraints (say, which fields are required) have no type.
        names = [_type_name(b, resolver) for b in schema.get("anyOf", schema.get("oneOf", []))]
        typed = list(dict.fromkeys(name for name in names if name != "any"))
        return " | ".join(typed) or "any"
    kind = schema.get("type", "any")
    if kind == "array":
        return "[]" + _type_name(schema.get("items", {}), resolver)
    if (
        kind == "object"
        and "properties" not in schema
        and isinstance(schema.get("additionalProperties"), dict)
    ):
        return "map[string]" + _type_name(schema["additionalProperties"], resolver)
    return str(kind)


def _doc(path: str, schema: dict[str, Any], resolver: Any, required: bool, depth: int) -> FieldDoc:
    merged, resolver = _merged(schema, resolver)
    inner, inner_resolver = merged, resolver
    while inner.get("type") == "array" and isinstance(inner.get("items"), dict):
        inner, inner_resolver = _merged(inner["items"], inner_resolver)
    children: tuple[FieldDoc, ...] = ()
    if depth > 0:
        needed = set(inner.get("required", ()))
        children = tuple(
            _doc(name, sub, inner_resolver, name in needed, depth - 1)
            for name, sub in inner.get("properties", {}).items()
        )
    return FieldDoc(
        path=path,
        type=_type_name(merged, resolver),
        description=str(merged.get("description", "")),
        required=required,
        default=json.dumps(merged["default"]) if "default" in merged else None,
        enum=tuple(str(v) for v in merged.get("enum", ())),
        fields=children,
    )


def field_doc(kind: str, path: str = "") -> FieldDoc:
    """Documents one field of a kind and its direct sub-fields, for ``explain``.

    Args:
        kind: The kind, or any word :func:`swarmapply.api.kinds.resolve_kind` accepts.
        path: A dotted field path such as ``spec.tasks.cores``; list indexes
            (``spec.tasks[0].cores``) are accepted and ignored. ``""`` is the object itself.

    Returns:
        The field's :class:`FieldDoc`, with ``fields`` filled one level deep.

    Raises:
        UnknownKindError: ``kind`` names no kind.
        UnknownFieldError: The schema has no such field; the message lists the known ones.
    """
    name = kind_info(kind).kind
    schema, resolver = _root(name)
    cleaned = re.sub(r"\[[^\]]*\]", "", path)
    parts = cleaned.split(".") if cleaned else []
    if any(not part for part in parts):
        raise UnknownFieldError(f"{name} field path {path!r} has an empty part (two dots?)")
    required = True
    walked: list[str] = []
    for part in parts:
        schema, resolver = _merged(schema, resolver)
        while schema.get("type") == "array" and isinstance(schema.get("items"), dict):
            schema, resolver = _merged(schema["items"], resolver)
        properties = schema.get("properties", {})
        if part not in properties:
            where = ".".join(walked) or name
            if not properties:
                raise UnknownFieldError(
                    f"{name} has no field {path!r}: {where} is "
                    f"{_type_name(schema, resolver)} and has no fields"
                )
            prefix = f"{name} has no field {path!r}: {where}" if walked else name
            raise UnknownFieldError(
                f"{prefix} has no field {part!r}; its fields: {', '.join(properties)}"
            )
        required = part in schema.get("required", ())
        schema = properties[part]
        walked.append(part)
    return _doc(".".join(walked), schema, resolver, required, 1)


def describe_field(kind: str, path: str) -> str:
    """Returns the schema's description of a field, e.g. of ``spec.tasks.cores``.

    Args:
        kind: The kind, or any word :func:`swarmapply.api.kinds.resolve_kind` accepts.
        path: A dotted field path; list indexes are ignored; ``""`` is the object itself.

    Returns:
        The description text.

    Raises:
        UnknownKindError: ``kind`` names no kind.
        UnknownFieldError: The schema has no such field.
    """
    return field_doc(kind, path).description
