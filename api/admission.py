"""Admission: turning manifest text into valid, normalised v1 objects, or saying exactly why not.

:func:`admit` parses every document of every source (multi-document YAML, JSON, lists and
``kind: List``), converts RESTfulSwarm job documents, applies defaults, and checks each object
against its schema and the semantic rules. It reports every problem of the whole input at once
as one :class:`AdmissionError` (each :class:`FieldError` naming source, document and field
path) and returns nothing unless all of it is valid, so callers write all or nothing. It never
raises anything else, whatever the input.

RESTfulSwarm requests to act (migration, update and checkpoint documents, see
:mod:`swarmapply.api.restfulswarm`) are checked field by field too; :func:`admit_requests`
and :func:`admit_paths_requests` return them, in input order among the objects, as
:class:`AdmittedRequest` values for the caller to resolve against the store. :func:`admit`
and :func:`admit_paths` report them as errors: they are not objects.

Only :func:`read_sources` and the ``admit_paths`` functions do I/O (reading files and stdin).
Admission knows nothing about the store: whether an object already exists is the caller's concern.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from swarmapply.api import restfulswarm
from swarmapply.api.documents import Document, Problem, json_like, parse_text
from swarmapply.api.kinds import KINDS, kind_info
from swarmapply.api.normalize import normalize
from swarmapply.api.schema import Path, format_path, show_value, validate
from swarmapply.errors import PermanentError

__all__ = [
    "AdmissionError",
    "AdmittedObject",
    "AdmittedRequest",
    "FieldError",
    "admit",
    "admit_paths",
    "admit_paths_requests",
    "admit_requests",
    "is_manifest_name",
    "manifest_files",
    "parse_documents",
    "read_sources",
    "validate_object",
]

_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class FieldError:
    """One problem in the input.

    Attributes:
        source: Where the text came from (a file path, ``<stdin>``, ``jobs/web``...).
        document: The 0-based index of the document in the source; -1 when the problem is
            with the source as a whole (unreadable file) or no document applies.
        path: The field path (``spec.tasks[1].cores``); ``""`` for the whole document.
        message: What is wrong and what was expected.
    """

    source: str
    document: int
    path: str
    message: str

    def __str__(self) -> str:
        parts = [self.source]
        if self.document >= 0:
            parts.append(f"document {self.document + 1}")
        if self.path:
            parts.append(self.path)
        return ": ".join([*parts, self.message])


class AdmissionError(PermanentError):
    """The input is invalid; ``errors`` lists every problem found, in input order."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__(self.errors)

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)


@dataclass(frozen=True)
class AdmittedObject:
    """A valid, normalised v1 object and where it came from.

    Attributes:
        source: The source's name.
        document: The 0-based index of the document in the source.
        obj: The object, ready to be written (defaults filled in).
        converted_from: ``"restfulswarm"`` if converted from a RESTfulSwarm job, else ``None``.
        config: What the document itself sets, in canonical form but without defaults: the
            configuration apply owns (a default is not the user's to impose on a live object).
    """

    source: str
    document: int
    obj: dict[str, Any]
    converted_from: str | None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AdmittedRequest:
    """A RESTfulSwarm request to act, checked but not yet resolved against the store.

    Attributes:
        source: The source's name.
        document: The 0-based index of the document in the source.
        prefix: Where the request sits in that document (``(2,)`` in a group migration).
        kind: ``migration``, ``update`` or ``checkpoint``.
        request: The request.
    """

    source: str
    document: int
    prefix: Path
    kind: str
    request: restfulswarm.Request

    def error(self, field: Path, message: str) -> FieldError:
        """A problem found when resolving the request, at one of its document's fields."""
        return FieldError(self.source, self.document, format_path(self.prefix + field), message)


# ---------------------------------------------------------------------------------- parsing


def _parse(text: Any, source: str) -> tuple[list[Document], list[FieldError]]:
    docs, problems = parse_text(text, source)
    return docs, [FieldError(source, i, format_path(p), m) for i, p, m in problems]


def parse_documents(text: str, source: str) -> list[Any]:
    """Parses manifest text into its documents.

    YAML (safe loading; timestamps stay strings; duplicate keys are errors), with several
    documents separated by ``---``; JSON (one or more values) when the source ends in
    ``.json`` or the text starts with ``{`` or ``[``. Empty documents are skipped; a top-level
    list, and a ``kind: List`` object's ``items``, expand into several documents.

    Args:
        text: The manifest text.
        source: The source's name, for messages and to recognise ``.json``.

    Returns:
        The parsed documents, in order.

    Raises:
        AdmissionError: The text is not valid YAML/JSON (line and column in the message).
    """
    docs, errors = _parse(text, source)
    if errors:
        raise AdmissionError(errors)
    return [doc.value for doc in docs]


# ------------------------------------------------------------------------------- checking


def _below(path: Path, roots: Iterable[Path]) -> bool:
    return any(path[: len(root)] == root for root in roots)


@dataclass
class _Checked:
    obj: dict[str, Any] | None = None  # set only when the document is valid
    config: dict[str, Any] | None = None  # the same, without defaults
    origin: str | None = None
    key: tuple[str, str] | None = None  # the (kind, name) it defines, if it names one
    name_path: Path = ("metadata", "name")  # where that name is, in the original document
    problems: list[Problem] | None = None
    request_kind: str | None = None  # a RESTfulSwarm request: migration, update, checkpoint
    requests: list[restfulswarm.Request] = field(default_factory=list)


def _check(doc: Document) -> _Checked:
    """Checks one document; problems have paths relative to the document."""
    result = _Checked(problems=[])
    value, problems = json_like(doc.value)
    reported: list[Path] = [p for p, _ in problems]
    paths = restfulswarm.PathMap({(): ((), True)})
    request_kind = restfulswarm.document_kind(value)
    if request_kind in ("migration", "update", "checkpoint") and not problems:
        request = restfulswarm.convert_request(value)
        result.request_kind = request_kind
        result.requests = request.requests
        result.problems = _prefixed(doc, request.errors)
        return result
    if restfulswarm.is_restfulswarm(value):
        conversion = restfulswarm.convert(value)
        problems += conversion.errors
        reported += [p for p, _ in conversion.errors]
        value, paths, result.origin = conversion.job, conversion.paths, "restfulswarm"
    result.name_path = doc.prefix + paths.translate(("metadata", "name"))
    if not isinstance(value, dict):
        if not problems:
            problems.append(
                ((), f"expected an object with apiVersion and kind, got {show_value(value)}")
            )
        result.problems = _prefixed(doc, problems)
        return result
    kind, metadata = value.get("kind"), value.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if isinstance(kind, str) and kind in KINDS and isinstance(name, str) and name:
        result.key = (kind, name)
    if not isinstance(kind, str) or kind not in KINDS:
        found = [(paths.translate(p), m) for p, m in validate(value)]
        problems += [(p, m) for p, m in found if not _below(p, reported)]
        result.problems = _prefixed(doc, problems)
        return result
    obj, semantic = normalize(value)
    semantic_paths = [p for p, _ in semantic]
    schema_problems = [(p, m) for p, m in validate(obj) if not _below(p, semantic_paths)]
    for path, message in semantic + schema_problems:
        original = paths.translate(path)
        if not _below(original, reported):
            problems.append((original, message))
    result.problems = _prefixed(doc, problems)
    if not problems:
        result.obj = obj
        result.config = normalize(value, defaults=False)[0]
    return result


def _path_key(path: Path) -> tuple[tuple[int, int, str], ...]:
    return tuple((1, part, "") if isinstance(part, int) else (0, 0, part) for part in path)


def _prefixed(doc: Document, problems: list[Problem]) -> list[Problem]:
    unique = dict.fromkeys((doc.prefix + path, message) for path, message in problems)
    return list(unique)


def admit(sources: Iterable[tuple[str, str]]) -> list[AdmittedObject]:
    """Parses, converts, defaults and validates every document of every source.

    Args:
        sources: ``(name, text)`` pairs, e.g. from :func:`read_sources`.

    Returns:
        The admitted objects in input order, only if everything is valid.

    Raises:
        AdmissionError: Anything is invalid; it lists every problem of the whole input,
            including the same kind and name defined twice and RESTfulSwarm requests to act
            (migration, update, checkpoint), which are not objects.
    """
    return [item for item in _admit(sources, False) if isinstance(item, AdmittedObject)]


def admit_requests(
    sources: Iterable[tuple[str, str]],
) -> list[AdmittedObject | AdmittedRequest]:
    """As :func:`admit`, also accepting RESTfulSwarm requests to act.

    Args:
        sources: ``(name, text)`` pairs, e.g. from :func:`read_sources`.

    Returns:
        The admitted objects and requests in input order, only if everything is valid.

    Raises:
        AdmissionError: Anything is invalid; every problem of the whole input is listed.
    """
    return _admit(sources, True)


def _admit(
    sources: Iterable[tuple[str, str]], accept_requests: bool
) -> list[AdmittedObject | AdmittedRequest]:
    errors: list[FieldError] = []
    admitted: list[AdmittedObject | AdmittedRequest] = []
    first_seen: dict[tuple[str, str], str] = {}
    for source, text in sources:
        source = str(source)
        docs, parse_errors = _parse(text, source)
        source_errors = list(parse_errors)
        for doc in docs:
            try:
                checked = _check(doc)
            except Exception as exc:  # a bug must not escape as anything but an input error
                message = f"internal error while checking this document: {exc!r}"
                checked = _Checked(problems=[(doc.prefix, message)])
            problems = list(checked.problems or ())
            if checked.request_kind is not None and not accept_requests and not problems:
                problems.append(
                    (
                        doc.prefix,
                        f"a RESTfulSwarm {checked.request_kind} request acts on running jobs;"
                        " give it to swarmapply apply -f",
                    )
                )
            elif checked.request_kind is not None and not problems:
                admitted += [
                    AdmittedRequest(source, doc.index, doc.prefix, checked.request_kind, request)
                    for request in checked.requests
                ]
            if checked.key is not None and checked.key in first_seen:
                kind, name = checked.key
                problems.append(
                    (
                        checked.name_path,
                        f"{kind} {name!r} is defined more than once"
                        f" (first in {first_seen[checked.key]})",
                    )
                )
                checked.obj = None
            elif checked.key is not None:
                where = f"{source} document {doc.index + 1}"
                if doc.prefix:
                    where += f" at {format_path(doc.prefix)}"
                first_seen[checked.key] = where
            problems.sort(key=lambda item: _path_key(item[0]))
            source_errors += [FieldError(source, doc.index, format_path(p), m) for p, m in problems]
            if checked.obj is not None:
                admitted.append(
                    AdmittedObject(
                        source, doc.index, checked.obj, checked.origin, checked.config or {}
                    )
                )
        errors += sorted(source_errors, key=lambda error: error.document)
    if errors:
        raise AdmissionError(errors)
    return admitted


def validate_object(obj: Any) -> list[FieldError]:
    """Checks an object (e.g. one read back from the store) against its schema only.

    Args:
        obj: A v1 object.

    Returns:
        The problems found (empty when valid); ``source`` is ``<plural>/<name>`` (or
        ``<object>``) and ``document`` is -1.
    """
    source = "<object>"
    if isinstance(obj, dict) and str(obj.get("kind")) in KINDS:
        metadata = obj.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if isinstance(name, str):
            source = f"{kind_info(str(obj['kind'])).plural}/{name}"
    return [FieldError(source, -1, format_path(p), m) for p, m in validate(obj)]


# ------------------------------------------------------------------------------------ I/O


def _is_manifest_name(name: str) -> bool:
    if name.startswith((".", "#")) or name.endswith(("~", ".swp", ".swo", ".tmp", ".bak")):
        return False
    return name.lower().endswith(_MANIFEST_SUFFIXES)


def _directory_files(directory: str, recursive: bool) -> list[str]:
    entries = sorted(os.scandir(directory), key=lambda e: e.name)
    # A dangling link named like a manifest is listed too, so reading it reports the problem.
    files = [
        e.path
        for e in entries
        if (e.is_file() or (e.is_symlink() and not e.is_dir())) and _is_manifest_name(e.name)
    ]
    if recursive:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                files += _directory_files(entry.path, recursive)
    return files


def manifest_files(directory: str, recursive: bool = True) -> list[str]:
    """The manifest files a directory holds, as apply and sync read them.

    Its ``*.yaml``, ``*.yml`` and ``*.json`` files in name order, skipping hidden files and
    editor leftovers (``.#x``, ``x~``, ``*.swp``...); ``recursive`` descends into non-hidden
    subdirectories (symbolic links to directories are not followed).

    Raises:
        OSError: The directory cannot be listed.
    """
    return _directory_files(directory, recursive)


def is_manifest_name(name: str) -> bool:
    """Whether a file of this base name is a manifest a directory read would include."""
    return _is_manifest_name(name)


def _read_all(
    paths: Sequence[str], recursive: bool, stdin: TextIO
) -> tuple[list[tuple[str, str]], list[FieldError]]:
    sources: list[tuple[str, str]] = []
    errors: list[FieldError] = []
    for path in paths:
        if path == "-":
            try:
                sources.append(("<stdin>", stdin.read()))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                errors.append(FieldError("<stdin>", -1, "", f"cannot read standard input: {exc}"))
            continue
        try:
            files = _directory_files(path, recursive) if os.path.isdir(path) else [path]
        except OSError as exc:
            errors.append(FieldError(path, -1, "", f"cannot list directory: {exc.strerror or exc}"))
            continue
        for name in files:
            try:
                with open(name, encoding="utf-8-sig") as handle:
                    sources.append((name, handle.read()))
            except FileNotFoundError:
                errors.append(FieldError(name, -1, "", "no such file or directory"))
            except UnicodeDecodeError as exc:
                errors.append(
                    FieldError(name, -1, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")
                )
            except OSError as exc:
                errors.append(FieldError(name, -1, "", f"cannot read: {exc.strerror or exc}"))
    return sources, errors


def read_sources(paths: Sequence[str], recursive: bool, stdin: TextIO) -> list[tuple[str, str]]:
    """Reads manifest sources: files, directories and ``-`` for standard input.

    A directory contributes its ``*.yaml``, ``*.yml`` and ``*.json`` files in name order,
    skipping hidden files and editor leftovers (``.#x``, ``x~``, ``*.swp``); ``recursive``
    descends into non-hidden subdirectories (symbolic links to directories are not followed).
    A file named explicitly is read whatever its name.

    Args:
        paths: Files, directories, or ``-``.
        recursive: Whether to descend into subdirectories.
        stdin: The stream ``-`` reads (named ``<stdin>``).

    Returns:
        ``(name, text)`` pairs in order.

    Raises:
        AdmissionError: Some path is missing or unreadable; every such path is listed (use
            :func:`admit_paths` to get these together with the problems in the readable ones).
    """
    sources, errors = _read_all(paths, recursive, stdin)
    if errors:
        raise AdmissionError(errors)
    return sources


def admit_paths(paths: Sequence[str], recursive: bool, stdin: TextIO) -> list[AdmittedObject]:
    """Reads and admits manifests in one step, reporting unreadable paths and invalid content
    together in one :class:`AdmissionError`.

    Args:
        paths: Files, directories, or ``-`` (see :func:`read_sources`).
        recursive: Whether to descend into subdirectories.
        stdin: The stream ``-`` reads.

    Returns:
        The admitted objects, only if every path was readable and everything is valid.

    Raises:
        AdmissionError: Every problem found.
    """
    admitted = _admit_paths(paths, recursive, stdin, False)
    return [item for item in admitted if isinstance(item, AdmittedObject)]


def admit_paths_requests(
    paths: Sequence[str], recursive: bool, stdin: TextIO
) -> list[AdmittedObject | AdmittedRequest]:
    """As :func:`admit_paths`, also accepting RESTfulSwarm requests to act (as apply does).

    Raises:
        AdmissionError: Every problem found.
    """
    return _admit_paths(paths, recursive, stdin, True)


def _admit_paths(
    paths: Sequence[str], recursive: bool, stdin: TextIO, accept_requests: bool
) -> list[AdmittedObject | AdmittedRequest]:
    # The same path twice (a shell glob, or '-' twice) is read once, not reported as twins.
    sources, read_errors = _read_all(list(dict.fromkeys(paths)), recursive, stdin)
    try:
        admitted = _admit(sources, accept_requests)
    except AdmissionError as exc:
        raise AdmissionError(read_errors + exc.errors) from None
    if read_errors:
        raise AdmissionError(read_errors)
    return admitted
