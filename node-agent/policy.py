"""Which task settings would give a container the host, and which the ClusterPolicies allow (pure).

By default the node agent refuses a Task whose container would own the host: a privileged
container, added capabilities, the host's network or pid namespace, and binds of the host's
system paths. :func:`cluster_policy` folds the ClusterPolicy objects into one
:class:`Policy` (a setting is allowed when any policy allows it; no policy allows nothing) and
:func:`refused_setting` names the first setting of a Task the policy does not allow, with its
field path and the policy field that would allow it.

Dangerous host paths: ``/`` and ``/etc``, ``/proc``, ``/sys``, ``/dev``, ``/boot``, ``/root``,
``/var/lib/docker`` or anything under them (``/etc/localtime`` too: allow it by policy), the
Docker socket by any spelling (``/var/run/docker.sock``, ``/run/docker.sock``,
``/var//run/../run/docker.sock``, any path ending in ``docker.sock``) and the directories holding
it (``/run``, ``/var/run``). A policy's ``allowedHostPaths`` entry allows binds of its path and
of everything beneath it, read-only ones only when it says ``readOnly: true``. Paths are
normalised lexically only; a host symlink that leads to one of these is not seen here.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ALL_CAPABILITIES = "ALL"

_HOST_PATHS = frozenset(
    {"/", "/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/var/lib/docker"}
    | {"/var/run/docker.sock"}
)
# Anything under these too: a writable /etc/cron.d or /etc/sudoers.d is root on the host.
_HOST_TREES = ("/etc/", "/proc/", "/sys/", "/dev/", "/boot/", "/root/", "/var/lib/docker/")
_SOCKET_DIRS = frozenset({"/run", "/var/run"})
_SOCKET_NAME = "docker.sock"
_BY_POLICY = "allowed only by a ClusterPolicy"


@dataclass(frozen=True)
class HostPathGrant:
    """A host path (normalised) that tasks may bind, with everything beneath it."""

    path: str
    read_only: bool = False

    def covers(self, path: str, *, read_only: bool) -> bool:
        """Whether a bind of ``path`` (normalised) with this read-only flag is allowed."""
        inside = path == self.path or path.startswith(self.path.rstrip("/") + "/")
        return inside and (read_only or not self.read_only)


@dataclass(frozen=True)
class Policy:
    """What the ClusterPolicies allow, together (the default allows nothing).

    Attributes:
        privileged: Privileged containers are allowed.
        capabilities: Capabilities tasks may add (canonical names; ``ALL`` allows any).
        host_network: The host's network namespace is allowed.
        host_pid: The host's pid namespace is allowed.
        host_paths: Dangerous host paths tasks may bind anyway.
        sources: The names of the ClusterPolicies this was made from.
    """

    privileged: bool = False
    capabilities: frozenset[str] = frozenset()
    host_network: bool = False
    host_pid: bool = False
    host_paths: tuple[HostPathGrant, ...] = ()
    sources: tuple[str, ...] = ()

    def allows_capability(self, name: str) -> bool:
        """Whether tasks may add capability ``name`` (any spelling)."""
        wanted = canonical_capability(name)
        return ALL_CAPABILITIES in self.capabilities or wanted in self.capabilities

    def allows_bind(self, path: str, *, read_only: bool) -> bool:
        """Whether a bind of host path ``path`` (normalised) is allowed by a grant."""
        return any(g.covers(path, read_only=read_only) for g in self.host_paths)


#: No ClusterPolicy: every dangerous setting is refused.
NO_POLICY = Policy()


def canonical_capability(name: str) -> str:
    """A capability as Docker names it: upper case, without the ``CAP_`` prefix."""
    upper = name.strip().upper()
    return upper[4:] if upper.startswith("CAP_") else upper


def normalise_host_path(path: str) -> str:
    """A host path with repeated slashes, ``.``, ``..`` and trailing slashes resolved lexically.

    Symbolic links are not followed (that needs the host).
    """
    return posixpath.normpath(re.sub("/+", "/", path)) if path.startswith("/") else path


def cluster_policy(objects: Iterable[Mapping[str, Any]]) -> Policy:
    """The union of ClusterPolicy objects: a setting is allowed when any of them allows it.

    Objects being deleted (``metadata.deletionTimestamp``) allow nothing.
    """
    privileged = host_network = host_pid = False
    capabilities: set[str] = set()
    grants: list[HostPathGrant] = []
    sources: list[str] = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        spec = obj.get("spec") or {}
        sources.append(str(meta.get("name", "?")))
        privileged |= bool(spec.get("allowPrivileged"))
        host_network |= bool(spec.get("allowHostNetwork"))
        host_pid |= bool(spec.get("allowHostPID"))
        capabilities.update(
            canonical_capability(str(c)) for c in spec.get("allowedCapabilities") or []
        )
        for entry in spec.get("allowedHostPaths") or []:
            path = normalise_host_path(str(entry["path"]))
            grants.append(HostPathGrant(path, bool(entry.get("readOnly", False))))
    return Policy(
        privileged=privileged,
        capabilities=frozenset(capabilities),
        host_network=host_network,
        host_pid=host_pid,
        host_paths=tuple(grants),
        sources=tuple(sorted(sources)),
    )


def host_bind_danger(source: str) -> str | None:
    """Why a bind of the host path ``source`` gives a container the host, or None if it does not.

    Args:
        source: A volume source: an absolute host path, or a named volume (never dangerous).

    Returns:
        None for a harmless source; else a phrase for the error message (``""`` when the path
        speaks for itself, or what it is, like ``the Docker socket``).
    """
    if not source.startswith("/"):
        return None
    path = normalise_host_path(source)
    if posixpath.basename(path) == _SOCKET_NAME:
        return "the Docker socket"
    if path in _SOCKET_DIRS:
        return "it holds the Docker socket"
    if path in _HOST_PATHS or path.startswith(_HOST_TREES):
        return ""
    return None


def refused_setting(task: Mapping[str, Any], policy: Policy = NO_POLICY) -> str | None:
    """The first setting of a Task that gives its container the host and is not allowed; or None.

    The message names the field and the policy field that would allow it, e.g.
    ``spec.securityContext.privileged: a privileged container owns the host; allowed only by
    a ClusterPolicy with spec.allowPrivileged: true``.
    """
    spec = task.get("spec") or {}
    context = spec.get("securityContext") or {}
    field = "spec.securityContext"
    if context.get("privileged") and not policy.privileged:
        return (
            f"{field}.privileged: a privileged container owns the host; {_BY_POLICY} with "
            "spec.allowPrivileged: true"
        )
    added = (context.get("capabilities") or {}).get("add") or []
    for index, name in enumerate(added):
        if not policy.allows_capability(str(name)):
            return (
                f"{field}.capabilities.add[{index}]: adding capability "
                f"{canonical_capability(str(name))} gives the container power over the host; "
                f"{_BY_POLICY} listing it in spec.allowedCapabilities"
            )
    if context.get("hostNetwork") and not policy.host_network:
        return (
            f"{field}.hostNetwork: the host's network stack gives the container every port and "
            f"interface of the node; {_BY_POLICY} with spec.allowHostNetwork: true"
        )
    if context.get("hostPID") and not policy.host_pid:
        return (
            f"{field}.hostPID: the host's pid namespace lets the container see and signal every "
            f"process of the node; {_BY_POLICY} with spec.allowHostPID: true"
        )
    return _refused_bind(spec.get("volumes") or [], policy)


def _refused_bind(volumes: Iterable[Any], policy: Policy) -> str | None:
    for index, volume in enumerate(volumes):
        source = volume.get("source") if isinstance(volume, Mapping) else None
        if not isinstance(source, str):
            continue
        danger = host_bind_danger(source)
        if danger is None:
            continue
        path = normalise_host_path(source)
        read_only = bool(volume.get("readOnly", False))
        if policy.allows_bind(path, read_only=read_only):
            continue
        notes = [n for n in ((path if path != source else ""), danger) if n]
        what = f"{source} ({'; '.join(notes)})" if notes else source
        only_read = policy.allows_bind(path, read_only=True)
        allow = (
            "the ClusterPolicy allows it read-only only: set readOnly: true"
            if only_read
            else f"{_BY_POLICY} listing it in spec.allowedHostPaths"
        )
        return (
            f"spec.volumes[{index}].source: a bind of {what} gives the container the host; {allow}"
        )
    return None


__all__ = [
    "ALL_CAPABILITIES",
    "NO_POLICY",
    "HostPathGrant",
    "Policy",
    "canonical_capability",
    "cluster_policy",
    "host_bind_danger",
    "normalise_host_path",
    "refused_setting",
]
