"""What one pass of ``swarmapply sync`` does, decided without I/O.

A sync *source* is a directory of manifests. Every object a source applies carries the label
:data:`SOURCE_LABEL` (the source's id: a hash of the directory's real path unless given) and
the annotation :data:`FILE_ANNOTATION` (the file it came from, relative to the directory). The
label is what the source owns; nothing without it is ever changed or deleted by the source.

A pass compares the manifests read now with the objects the source owns in the store:

* each object defined in a valid file is applied (apply's three-way merge);
* an owned object that no valid file defines any more is pruned (with ``--prune``), unless the
  file it came from failed to read, parse or validate in this pass: a broken edit never
  deletes or changes what that file produced before;
* an object defined in two files is applied from neither (the error names both);
* the mass-deletion guard: when the pass would prune more than half of the objects the source
  owns, it prunes nothing unless forced (a checkout half-way through a branch switch must not
  empty the cluster);
* an object that exists but is not the source's is left alone and reported, unless adopted.

:func:`outcome` classifies what applying one object does, so the pass can tell an edit of the
file (``configured``) from a repair of a change made out of band (``repaired``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from swarmapply.api.admission import AdmittedObject
from swarmapply.api.selectors import Requirement, labels_match

#: The label naming the sync source that applied (and owns) an object.
SOURCE_LABEL = "swarmapply.io/sync-source"
#: The annotation naming the file (relative to the source directory) an object came from.
FILE_ANNOTATION = "swarmapply.io/sync-file"
#: The share of its objects above which one pass may not prune without ``--force-prune``.
MASS_DELETION_SHARE = 0.5

Key = tuple[str, str]


def source_id(directory: str) -> str:
    """The stable id of a source directory: ``dir-`` and a hash of its real path.

    The same directory (through any relative path or symbolic link) gives the same id; a
    label value (at most 63 characters).
    """
    digest = hashlib.sha256(os.path.realpath(directory).encode()).hexdigest()
    return f"dir-{digest[:16]}"


def key_of(obj: Mapping[str, Any]) -> Key:
    """An object's ``(kind, name)``."""
    return str(obj["kind"]), str(obj["metadata"]["name"])


def marked(item: AdmittedObject, source: str, file: str) -> AdmittedObject:
    """``item`` labelled with its source and annotated with its file (object and config)."""

    def mark(obj: Mapping[str, Any]) -> dict[str, Any]:
        result = dict(obj)
        metadata = dict(result.get("metadata") or {})
        metadata["labels"] = {**(metadata.get("labels") or {}), SOURCE_LABEL: source}
        metadata["annotations"] = {**(metadata.get("annotations") or {}), FILE_ANNOTATION: file}
        result["metadata"] = metadata
        return result

    return replace(item, obj=mark(item.obj), config=mark(item.config or item.obj))


def owner_of(obj: Mapping[str, Any]) -> str | None:
    """The sync source that owns ``obj``, if any."""
    return ((obj.get("metadata") or {}).get("labels") or {}).get(SOURCE_LABEL)


def file_of(obj: Mapping[str, Any]) -> str | None:
    """The file ``obj`` was applied from, as recorded on it."""
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(FILE_ANNOTATION)


@dataclass(frozen=True)
class Desired:
    """An object a valid file defines, marked with its source."""

    file: str
    item: AdmittedObject

    @property
    def key(self) -> Key:
        return key_of(self.item.obj)


@dataclass(frozen=True)
class SyncPlan:
    """What one pass does.

    Attributes:
        apply: Objects to apply, in file order.
        prune: Owned objects to delete (empty when pruning is off or the guard held).
        kept: Owned objects whose file failed in this pass: left exactly as they are.
        problems: ``(file, message)`` for objects applied from nowhere (defined twice).
        guard: Why nothing is pruned although some objects would be (the guard held).
    """

    apply: tuple[Desired, ...] = ()
    prune: tuple[Mapping[str, Any], ...] = ()
    kept: tuple[Mapping[str, Any], ...] = ()
    problems: tuple[tuple[str, str], ...] = ()
    guard: str | None = None


def plan_pass(
    desired: Sequence[Desired],
    failed_files: Iterable[str],
    owned: Sequence[Mapping[str, Any]],
    *,
    selector: Sequence[Requirement] = (),
    prune: bool = False,
    force_prune: bool = False,
) -> SyncPlan:
    """Decide one pass.

    Args:
        desired: The objects of every valid file, marked (see :func:`marked`).
        failed_files: Files (relative paths) that failed to read, parse or validate.
        owned: The objects in the store labelled with this source.
        selector: Only objects whose labels match are applied or pruned.
        prune: Delete owned objects no valid file defines.
        force_prune: Prune even more than :data:`MASS_DELETION_SHARE` of the owned objects.
    """
    failed = set(failed_files)
    chosen = [d for d in desired if labels_match(selector, d.item.obj["metadata"].get("labels"))]
    files_of: dict[Key, list[str]] = {}
    for d in desired:  # duplicates count whatever the selector: both files define the name
        files_of.setdefault(d.key, []).append(d.file)
    problems = tuple(
        (d.file, f"{d.key[0]} {d.key[1]!r} is also defined in "
                 f"{', '.join(f for f in files_of[d.key] if f != d.file)}: applied from neither")
        for d in chosen
        if len(files_of[d.key]) > 1
    )  # fmt: skip
    apply = tuple(d for d in chosen if len(files_of[d.key]) == 1)
    mine = [o for o in owned if labels_match(selector, (o.get("metadata") or {}).get("labels"))]
    kept = tuple(o for o in mine if key_of(o) not in files_of and file_of(o) in failed)
    gone = tuple(o for o in mine if key_of(o) not in files_of and file_of(o) not in failed)
    if not prune or not gone:
        return SyncPlan(apply, (), kept, problems)
    if len(gone) > MASS_DELETION_SHARE * len(mine) and not force_prune:
        guard = (
            f"would prune {len(gone)} of the {len(mine)} objects this source owns (more than "
            f"{MASS_DELETION_SHARE:.0%}); nothing pruned. Check the directory, then pass "
            "--force-prune to prune them"
        )
        return SyncPlan(apply, (), kept, problems, guard)
    return SyncPlan(apply, gone, kept, problems)


def foreign_owner(live: Mapping[str, Any] | None, source: str, adopt: bool) -> str | None:
    """Why the source may not apply over ``live`` (None when it may).

    A live object belongs to the source when it carries its label; one without any source
    label (made by ``apply`` or anyone) is taken over only when adopting; one of another
    source never.
    """
    if live is None:
        return None
    owner = owner_of(live)
    if owner == source:
        return None
    if owner is not None:
        return f"exists and belongs to sync source {owner}: left alone"
    if adopt:
        return None
    return "exists and was not applied by this source: left alone (--adopt takes it over)"


def outcome(
    live: Mapping[str, Any] | None,
    want: Mapping[str, Any],
    last: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    known: bool,
) -> str:
    """What applying one object does.

    Args:
        live: The object in the store (None if absent).
        want: What apply makes of it.
        last: The configuration last applied to ``live`` (its annotation).
        config: The configuration applied now.
        known: The source applied this object in an earlier pass of this process.

    Returns:
        ``created``; ``recreated`` (it was deleted out of band); ``unchanged``; ``configured``
        (the file changed); or ``repaired`` (the file did not change but the object did).
    """
    if live is None:
        return "recreated" if known else "created"
    if want == live:
        return "unchanged"
    return "repaired" if last == config else "configured"


__all__ = [
    "FILE_ANNOTATION",
    "MASS_DELETION_SHARE",
    "SOURCE_LABEL",
    "Desired",
    "SyncPlan",
    "file_of",
    "foreign_owner",
    "key_of",
    "marked",
    "outcome",
    "owner_of",
    "plan_pass",
    "source_id",
]
