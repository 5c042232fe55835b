"""Lease objects as the leader elector reads and writes them, and what a follower observes (pure).

A Lease says who holds it (``holderIdentity``), since when (``acquireTime``), when it was last
renewed (``renewTime``, microsecond precision so that every renewal is a visible change), for
how long a holder keeps it without renewing (``leaseDurationSeconds``) and how often it changed
holders (``leaseTransitions``). Functions here build the next Lease from the current one and
judge, on the follower's own monotonic clock, whether a Lease has expired; they do no I/O.
:mod:`swarmapply.controllers.leader` does the writing. Node agents heartbeat through Leases
of the same shape, named by :func:`node_lease_name`; :func:`live_holder` is the wall-clock
judgement used where no earlier observation is at hand.
"""

from __future__ import annotations

import copy
import math
import os
import secrets
import socket
import string
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from swarmapply.api.store import Object
from swarmapply.api.store.lifecycle import parse_time

LEASE_KIND = "Lease"
API_VERSION = "swarmapply.io/v1"

_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


def default_identity() -> str:
    """A process identity unique enough for leases: ``<hostname>-<pid>-<5 random characters>``."""
    suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
    return f"{socket.gethostname()}-{os.getpid()}-{suffix}"


def timestamp_now() -> str:
    """The current UTC time in RFC 3339 with microseconds (Kubernetes' MicroTime form).

    Second precision would make two renewals within one second the same write, which the
    store ignores as no change, and followers would think the leader stopped renewing.
    """
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseRecord:
    """The leader-election fields of a Lease's spec, with defaults for missing ones.

    Attributes:
        holder: ``spec.holderIdentity``; empty when nobody holds the Lease.
        duration_seconds: ``spec.leaseDurationSeconds`` (at least 1).
        acquire_time: ``spec.acquireTime``, if set.
        renew_time: ``spec.renewTime``, if set.
        transitions: ``spec.leaseTransitions``.
    """

    holder: str
    duration_seconds: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int


def lease_record(lease: Object) -> LeaseRecord:
    """Reads the leader-election fields of a Lease (pure; tolerant of missing fields)."""
    spec: dict[str, Any] = lease.get("spec") or {}
    holder = spec.get("holderIdentity")
    duration = spec.get("leaseDurationSeconds")
    transitions = spec.get("leaseTransitions")
    acquire = spec.get("acquireTime")
    renew = spec.get("renewTime")
    return LeaseRecord(
        holder=holder if isinstance(holder, str) else "",
        duration_seconds=max(1, duration) if isinstance(duration, int) else 1,
        acquire_time=acquire if isinstance(acquire, str) else None,
        renew_time=renew if isinstance(renew, str) else None,
        transitions=max(0, transitions) if isinstance(transitions, int) else 0,
    )


#: The prefix of the Lease a node's agent renews as its heartbeat.
NODE_LEASE_PREFIX = "node-"


def node_lease_name(node: str) -> str:
    """The name of the Lease a node's agent renews as its heartbeat: ``node-<name>``."""
    return f"{NODE_LEASE_PREFIX}{node}"


def live_holder(lease: Object, now: datetime) -> str | None:
    """The Lease's holder if it renewed (or took) the Lease less than its duration before
    ``now``, by the wall clock; None when nobody holds it or it expired (pure).

    Timestamps written on another machine are compared with this one's clock, so clocks far
    apart mislead it; leader election judges expiry by observation instead (:func:`observe`).
    """
    record = lease_record(lease)
    renewed = parse_time(record.renew_time or record.acquire_time)
    if not record.holder or renewed is None:
        return None
    if now >= renewed + timedelta(seconds=record.duration_seconds):
        return None
    return record.holder


def lease_duration_seconds(lease_duration: float) -> int:
    """The whole seconds written to ``leaseDurationSeconds``: rounded up, so never shorter."""
    return max(1, math.ceil(lease_duration))


def acquired_lease(
    current: Object | None, name: str, identity: str, duration_seconds: int, now: str
) -> Object:
    """The Lease after ``identity`` acquires it (pure).

    Args:
        current: The Lease as read (its resourceVersion makes the write a CAS), or None to
            create it.
        name: The Lease name (used when creating).
        identity: The new holder.
        duration_seconds: ``leaseDurationSeconds`` to write.
        now: The timestamp for ``renewTime`` (and ``acquireTime`` on a change of holder).

    Returns:
        The object to create or update. ``leaseTransitions`` grows by one when the holder
        changes (as in client-go, a release followed by an acquisition counts as a change);
        a new Lease starts at 0.
    """
    if current is None:
        return {
            "apiVersion": API_VERSION,
            "kind": LEASE_KIND,
            "metadata": {"name": name},
            "spec": {
                "holderIdentity": identity,
                "leaseDurationSeconds": duration_seconds,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
    record = lease_record(current)
    same = record.holder == identity
    lease = copy.deepcopy(current)
    lease["spec"] = {
        "holderIdentity": identity,
        "leaseDurationSeconds": duration_seconds,
        "acquireTime": (record.acquire_time or now) if same else now,
        "renewTime": now,
        "leaseTransitions": record.transitions if same else record.transitions + 1,
    }
    return lease


def renewed_lease(current: Object, now: str) -> Object:
    """The Lease with a new ``renewTime`` (pure)."""
    lease = copy.deepcopy(current)
    lease.setdefault("spec", {})["renewTime"] = now
    return lease


def released_lease(current: Object, now: str) -> Object:
    """The Lease with no holder, so any candidate may take it at once (pure).

    ``acquireTime`` and ``leaseTransitions`` are kept; ``renewTime`` records the release.
    """
    lease = copy.deepcopy(current)
    spec = lease.setdefault("spec", {})
    spec["holderIdentity"] = ""
    spec["renewTime"] = now
    return lease


@dataclass(frozen=True)
class Observation:
    """What a candidate last saw of a Lease, and when by its own monotonic clock.

    Attributes:
        holder: The holder then.
        renew_time: ``renewTime`` then.
        resource_version: ``metadata.resourceVersion`` then.
        duration_seconds: ``leaseDurationSeconds`` then.
        seen_at: The local monotonic time at which this state was first seen.
    """

    holder: str
    renew_time: str | None
    resource_version: str
    duration_seconds: int
    seen_at: float

    @property
    def expires_at(self) -> float:
        """The local monotonic time after which the holder is considered gone."""
        return self.seen_at + self.duration_seconds


def observe(previous: Observation | None, lease: Object, now: float) -> Observation:
    """Updates an observation with a Lease just read (pure).

    The observation time moves only when the holder, ``renewTime`` or resourceVersion
    changed: a Lease that stays the same keeps ageing towards expiry.
    """
    record = lease_record(lease)
    version = str((lease.get("metadata") or {}).get("resourceVersion") or "")
    if previous is not None and (
        previous.holder,
        previous.renew_time,
        previous.resource_version,
    ) == (record.holder, record.renew_time, version):
        return previous
    return Observation(record.holder, record.renew_time, version, record.duration_seconds, now)


def is_free(observation: Observation, identity: str, now: float) -> bool:
    """Whether ``identity`` may take the Lease (pure): no holder, itself, or expired."""
    return observation.holder in ("", identity) or now >= observation.expires_at


def default_renew_deadline(lease_duration: float, renew_interval: float) -> float:
    """How long a leader keeps leading without a successful renewal, by default.

    Two thirds of the time between one renew interval and the lease duration, after one
    renew interval: the last third is left for the controller to stop before a follower may
    take over (client-go's defaults, 10 s of 15 s with 2 s retries, have the same shape).
    """
    return renew_interval + (lease_duration - renew_interval) * 2 / 3
