"""Label and field selectors: parsing (pure) and matching (pure).

Label selectors use the Kubernetes syntax: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``,
``a notin (x,y)``, ``a`` (key exists) and ``!a`` (key absent), joined by commas. Field
selectors support ``=``, ``==`` and ``!=`` on the fields the store indexes
(:data:`SELECTABLE_FIELDS`); any other field is rejected with the list of the supported ones.

A parsed selector is plain data; a backend may use its equality requirements to narrow a
query, but :func:`labels_match` and :func:`fields_match` are the definition of a match.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swarmapply.errors import PermanentError

#: Fields a field selector may name, with how each is read from an object.
SELECTABLE_FIELDS: tuple[str, ...] = (
    "metadata.name",
    "metadata.uid",
    "metadata.ownerReferences.uid",
    "spec.job",
    "spec.node",
    "status.node",
    "status.phase",
    "involvedObject.uid",
)


class InvalidSelector(PermanentError, ValueError):
    """A selector string could not be parsed, or names a field that cannot be selected."""


@dataclass(frozen=True)
class Requirement:
    """One term of a selector: ``key op values``.

    ``op`` is one of ``=``, ``!=``, ``in``, ``notin``, ``exists``, ``!exists``.
    """

    key: str
    op: str
    values: tuple[str, ...] = ()


_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_TERM = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<vals>[^()]*)\)\s*$")
_EQ_TERM = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<val>{_VALUE})\s*$")
_EXISTS_TERM = re.compile(rf"^\s*(?P<neg>!?)\s*(?P<key>{_KEY})\s*$")
_FIELD_VALUE = re.compile(r"^[^,=!()\s]*$")


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise InvalidSelector(f"unbalanced ')' in selector {text!r}")
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise InvalidSelector(f"unbalanced '(' in selector {text!r}")
    terms.append("".join(current))
    return terms


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    """Parse a Kubernetes-style label selector.

    Args:
        text: e.g. ``"app=web,tier!=db,env in (prod,staging),owner,!legacy"``; empty or
            ``None`` selects everything.

    Returns:
        The requirements, all of which must hold.

    Raises:
        InvalidSelector: the text is not a valid selector; the message quotes the bad term.
    """
    if text is None or not text.strip():
        return ()
    requirements: list[Requirement] = []
    for term in _split_terms(text):
        if not term.strip():
            raise InvalidSelector(f"empty term in label selector {text!r}")
        if match := _SET_TERM.match(term):
            values = tuple(v.strip() for v in match["vals"].split(","))
            bad = [v for v in values if not re.fullmatch(_VALUE, v)]
            if bad or values == ("",):
                raise InvalidSelector(
                    f"invalid value list in {term.strip()!r}: expected '(v1,v2,...)' of label "
                    "values (alphanumerics, '-', '_', '.')"
                )
            requirements.append(Requirement(match["key"], match["op"], values))
        elif match := _EQ_TERM.match(term):
            op = "!=" if match["op"] == "!=" else "="
            requirements.append(Requirement(match["key"], op, (match["val"],)))
        elif match := _EXISTS_TERM.match(term):
            op = "!exists" if match["neg"] else "exists"
            requirements.append(Requirement(match["key"], op))
        else:
            raise InvalidSelector(
                f"cannot parse {term.strip()!r} in label selector {text!r}: expected "
                "'key=value', 'key!=value', 'key in (a,b)', 'key notin (a,b)', 'key' or '!key'"
            )
    return tuple(requirements)


def parse_field_selector(text: str | None) -> tuple[Requirement, ...]:
    """Parse a field selector such as ``"status.phase=Running,spec.node!=n1"``.

    Raises:
        InvalidSelector: bad syntax, or a field outside :data:`SELECTABLE_FIELDS`.
    """
    if text is None or not text.strip():
        return ()
    requirements: list[Requirement] = []
    for term in _split_terms(text):
        match = re.fullmatch(r"\s*([A-Za-z.]+)\s*(==|=|!=)\s*(.*?)\s*", term)
        if not match or not _FIELD_VALUE.match(match[3]):
            raise InvalidSelector(
                f"cannot parse {term.strip()!r} in field selector {text!r}: expected "
                "'field=value' or 'field!=value'"
            )
        field, op, value = match[1], match[2], match[3]
        if field not in SELECTABLE_FIELDS:
            raise InvalidSelector(
                f"field {field!r} cannot be selected; selectable fields: "
                + ", ".join(SELECTABLE_FIELDS)
            )
        requirements.append(Requirement(field, "!=" if op == "!=" else "=", (value,)))
    return tuple(requirements)


def labels_match(requirements: Sequence[Requirement], labels: Mapping[str, str] | None) -> bool:
    """Whether a label map satisfies every requirement."""
    labels = labels or {}
    for req in requirements:
        present = req.key in labels
        value = labels.get(req.key)
        if req.op == "=" and value != req.values[0]:
            return False
        if req.op == "!=" and present and value == req.values[0]:
            return False
        if req.op == "in" and value not in req.values:
            return False
        if req.op == "notin" and present and value in req.values:
            return False
        if req.op == "exists" and not present:
            return False
        if req.op == "!exists" and present:
            return False
    return True


def field_values(obj: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The selectable fields of an object; each may have several values (owner uids)."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    involved = obj.get("involvedObject") or {}

    def one(value: Any) -> tuple[str, ...]:
        return (value,) if isinstance(value, str) and value else ()

    owners = tuple(
        ref["uid"]
        for ref in metadata.get("ownerReferences") or ()
        if isinstance(ref, Mapping) and isinstance(ref.get("uid"), str)
    )
    return {
        "metadata.name": one(metadata.get("name")),
        "metadata.uid": one(metadata.get("uid")),
        "metadata.ownerReferences.uid": owners,
        "spec.job": one(spec.get("job")) if isinstance(spec, Mapping) else (),
        "spec.node": one(spec.get("node")) if isinstance(spec, Mapping) else (),
        "status.node": one(status.get("node")) if isinstance(status, Mapping) else (),
        "status.phase": one(status.get("phase")) if isinstance(status, Mapping) else (),
        "involvedObject.uid": one(involved.get("uid")) if isinstance(involved, Mapping) else (),
    }


def fields_match(requirements: Sequence[Requirement], obj: Mapping[str, Any]) -> bool:
    """Whether an object satisfies every field requirement.

    A field that is unset compares equal to the empty string, as in Kubernetes.
    """
    if not requirements:
        return True
    values = field_values(obj)
    for req in requirements:
        have = values[req.key] or ("",)
        if req.op == "=" and req.values[0] not in have:
            return False
        if req.op == "!=" and req.values[0] in have:
            return False
    return True


def equality_terms(requirements: Sequence[Requirement]) -> dict[str, str]:
    """The ``field=value`` requirements with a non-empty value, for a backend to pre-filter."""
    return {req.key: req.values[0] for req in requirements if req.op == "=" and req.values[0]}
