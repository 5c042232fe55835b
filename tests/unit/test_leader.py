"""The pure parts of leader election and of the controller manager."""

from __future__ import annotations

import re
from typing import Any

import pytest

from swarmapply.api.schema import validate
from swarmapply.controllers.leader import LeaderElector
from swarmapply.controllers.lease import (
    Observation,
    acquired_lease,
    default_identity,
    default_renew_deadline,
    is_free,
    lease_duration_seconds,
    lease_record,
    observe,
    released_lease,
    renewed_lease,
    timestamp_now,
)
from swarmapply.controllers.manager import (
    PLUGINS_ENV,
    ControllerUnavailable,
    known_controllers,
    load_factory,
    parse_plugins,
    resolve_factories,
    select_names,
)

T0 = "2024-05-01T12:00:00.000000Z"
T1 = "2024-05-01T12:00:01.250000Z"


def stored(lease: dict[str, Any], version: str) -> dict[str, Any]:
    """The lease as the store returns it (with a resourceVersion)."""
    return {**lease, "metadata": {**lease["metadata"], "resourceVersion": version}}


def test_a_new_lease_is_valid_and_starts_without_transitions() -> None:
    lease = acquired_lease(None, "controller-job", "host-1-abcde", 4, T0)
    assert validate(lease) == []
    assert lease["metadata"] == {"name": "controller-job"}
    assert lease["spec"] == {
        "holderIdentity": "host-1-abcde",
        "leaseDurationSeconds": 4,
        "acquireTime": T0,
        "renewTime": T0,
        "leaseTransitions": 0,
    }


def test_taking_over_counts_a_transition_and_renewing_keeps_the_acquire_time() -> None:
    held = stored(acquired_lease(None, "controller-job", "a", 4, T0), "7")
    taken = acquired_lease(held, "controller-job", "b", 4, T1)
    assert taken["metadata"]["resourceVersion"] == "7"  # the write is a CAS on what was read
    assert taken["spec"]["holderIdentity"] == "b"
    assert taken["spec"]["acquireTime"] == T1
    assert taken["spec"]["leaseTransitions"] == 1
    again = acquired_lease(held, "controller-job", "a", 4, T1)
    assert again["spec"]["acquireTime"] == T0
    assert again["spec"]["leaseTransitions"] == 0
    renewed = renewed_lease(held, T1)
    assert renewed["spec"] == {**held["spec"], "renewTime": T1}
    assert held["spec"]["renewTime"] == T0  # inputs are not modified
    assert validate(taken) == [] and validate(renewed) == []


def test_a_released_lease_has_no_holder_and_keeps_its_history() -> None:
    held = stored(acquired_lease(None, "controller-job", "a", 4, T0), "7")
    held["spec"]["leaseTransitions"] = 5
    released = released_lease(held, T1)
    assert released["spec"]["holderIdentity"] == ""
    assert released["spec"]["renewTime"] == T1
    assert released["spec"]["acquireTime"] == T0
    assert released["spec"]["leaseTransitions"] == 5
    assert validate(released) == []
    after = acquired_lease(stored(released, "8"), "controller-job", "b", 4, T1)
    assert after["spec"]["leaseTransitions"] == 6


def test_lease_record_tolerates_missing_and_bad_fields() -> None:
    record = lease_record({"spec": {"leaseDurationSeconds": 0, "leaseTransitions": "x"}})
    assert (record.holder, record.duration_seconds, record.transitions) == ("", 1, 0)
    assert record.renew_time is None and record.acquire_time is None


def test_an_observation_ages_until_the_lease_changes() -> None:
    lease = stored(acquired_lease(None, "l", "a", 2, T0), "3")
    first = observe(None, lease, now=10.0)
    assert first == Observation("a", T0, "3", 2, 10.0)
    assert observe(first, lease, now=11.0) is first  # unchanged: keeps the first sighting
    renewed = stored(renewed_lease(lease, T1), "4")
    assert observe(first, renewed, now=11.5).seen_at == 11.5
    same_time_new_version = stored(lease, "5")
    assert observe(first, same_time_new_version, now=11.7).seen_at == 11.7


def test_when_a_lease_is_free() -> None:
    held = Observation("a", T0, "3", 2, seen_at=10.0)
    assert not is_free(held, "b", now=11.9)
    assert is_free(held, "b", now=12.0)  # seen_at + leaseDurationSeconds
    assert is_free(held, "a", now=10.0)  # our own
    assert is_free(Observation("", T0, "3", 2, 10.0), "b", now=10.0)  # released


def test_durations() -> None:
    assert lease_duration_seconds(1.0) == 1
    assert lease_duration_seconds(1.2) == 2  # rounded up: never shorter than the holder's
    assert lease_duration_seconds(0.3) == 1
    assert default_renew_deadline(4.0, 1.0) == pytest.approx(3.0)
    deadline = default_renew_deadline(1.0, 0.9)
    assert 0.9 < deadline < 1.0


def test_identity_and_timestamps() -> None:
    identity = default_identity()
    assert re.fullmatch(r".+-\d+-[a-z0-9]{5}", identity)
    assert default_identity() != identity
    stamp = timestamp_now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lease_name": "Bad_Name"}, "lease name"),
        ({"identity": ""}, "identity"),
        ({"identity": " padded"}, "identity"),
        ({"lease_duration": 0.0}, "lease_duration"),
        ({"renew_interval": 4.0}, "renew_interval"),
        ({"renew_deadline": 0.5}, "renew_deadline"),
        ({"renew_deadline": 5.0}, "renew_deadline"),
    ],
)
def test_elector_arguments_are_checked(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"lease_name": "controller-x", "identity": "me", **kwargs}
    with pytest.raises(ValueError, match=message):
        LeaderElector(None, args.pop("lease_name"), args.pop("identity"), **args)  # type: ignore[arg-type]


def test_an_elector_starts_as_a_follower() -> None:
    elector = LeaderElector(None, "controller-x", "me")  # type: ignore[arg-type]
    stats = elector.stats()
    assert not elector.is_leader
    assert (stats.identity, stats.lease_name, stats.terms, stats.holder) == (
        "me",
        "controller-x",
        0,
        "",
    )
    assert not elector.wait_until(lambda s: s.is_leader, 0.01)


# -- the manager's choices -------------------------------------------------------------------


def test_select_names() -> None:
    known = ["job", "scheduler"]
    assert select_names(None, known) == known
    assert select_names([], known) == known
    assert select_names(["scheduler", "job", "scheduler"], known) == ["scheduler", "job"]
    with pytest.raises(ValueError, match=r"unknown controller 'x'; known: job, scheduler"):
        select_names(["job", "x"], known)
    with pytest.raises(ValueError, match=r"unknown controllers 'x', 'y'"):
        select_names(["x", "y"], known)


def test_parse_plugins() -> None:
    assert parse_plugins("") == {}
    assert parse_plugins(" a=pkg.mod:build , b=m:f,") == {"a": "pkg.mod:build", "b": "m:f"}
    for bad in ("a", "a=mod", "=m:f", "a=m:"):
        with pytest.raises(ValueError, match=PLUGINS_ENV):
            parse_plugins(bad)
    with pytest.raises(ValueError, match="built-in 'job'"):
        parse_plugins("job=m:f")
    with pytest.raises(ValueError, match="lease name"):
        parse_plugins("Not_A_Name=m:f")


def test_known_controllers_and_loading() -> None:
    assert list(known_controllers({})) == [
        "job",
        "scheduler",
        "deployer",
        "migrator",
        "nodes",
        "pruner",
    ]
    assert list(known_controllers({PLUGINS_ENV: "extra=m:f"})) == [
        "job",
        "scheduler",
        "deployer",
        "migrator",
        "nodes",
        "pruner",
        "extra",
    ]
    with pytest.raises(ControllerUnavailable):
        known_controllers({PLUGINS_ENV: "broken"})
    with pytest.raises(ControllerUnavailable, match="controller 'x' cannot be loaded"):
        load_factory("x", "swarmapply.no_such_module:build")
    with pytest.raises(ControllerUnavailable, match="has no function 'nope'"):
        load_factory("x", "swarmapply.controllers.settings:nope")
    # Only the selected controllers are imported: a broken plugin that is not chosen is fine.
    env = {
        PLUGINS_ENV: "broken=swarmapply.no_such_module:build,"
        "ok=swarmapply.controllers.settings:ControllerSettings"
    }
    assert list(resolve_factories(["ok"], environ=env)) == ["ok"]
    with pytest.raises(ControllerUnavailable, match="'broken'"):
        resolve_factories(["broken"], environ=env)
    fake = {"a": lambda store, settings: None, "b": lambda store, settings: None}
    assert list(resolve_factories(["b"], fake)) == ["b"]  # type: ignore[arg-type]


def test_a_controllers_counters_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    from swarmapply.controllers.manager import _log_summary

    class Counting:
        name = "counting"

        def summary(self) -> str:
            return "passes 3, tasks bound 7"

    with caplog.at_level("INFO", logger="swarmapply.controllers.manager"):
        _log_summary("scheduler", Counting())  # type: ignore[arg-type]
    assert "controller scheduler: passes 3, tasks bound 7" in caplog.text
