"""Refused host settings and the ClusterPolicies that allow them (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from swarmapply.agent.policy import (
    NO_POLICY,
    HostPathGrant,
    Policy,
    canonical_capability,
    cluster_policy,
    host_bind_danger,
    normalise_host_path,
    refused_setting,
)


def task(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web-a", "uid": "u-a"}, "spec": {"image": "x", **spec}}


def policy_object(name: str, deleting: bool = False, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    return {"kind": "ClusterPolicy", "metadata": meta, "spec": spec}


def bind(source: str, read_only: bool = False) -> dict[str, Any]:
    return task(volumes=[{"source": "cache", "target": "/c"},
                         {"source": source, "target": "/x", "readOnly": read_only}])  # fmt: skip


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ("/", True),
        ("/etc", True),
        ("/etc/", True),
        ("//etc", True),
        ("/tmp/../etc", True),
        ("/proc", True),
        ("/proc/1/root", True),
        ("/sys/fs/cgroup", True),
        ("/var/run/docker.sock", True),
        ("/run/docker.sock", True),
        ("/var//run/./docker.sock", True),
        ("/srv/docker.sock", True),
        ("/var/run", True),
        ("/run", True),
        ("/etc/localtime", True),  # allowed only through a ClusterPolicy
        ("/etc/cron.d", True),
        ("/dev/sda", True),
        ("/root/.ssh", True),
        ("/var/lib/docker/volumes", True),
        ("/boot", True),
        ("/data", False),
        ("/proceed", False),
        ("/system", False),
        ("data", False),
        ("docker.sock", False),
    ],
)
def test_host_binds_that_give_away_the_host_are_refused(source: str, refused: bool) -> None:
    assert (host_bind_danger(source) is not None) is refused
    message = refused_setting(bind(source))
    if refused:
        assert message is not None
        assert message.startswith(f"spec.volumes[1].source: a bind of {source}")
        assert message.endswith(
            "allowed only by a ClusterPolicy listing it in spec.allowedHostPaths"
        )
    else:
        assert message is None


def test_the_refusal_names_the_field_plainly() -> None:
    assert refused_setting(task(volumes=[{"source": "/etc", "target": "/host-etc"}])) == (
        "spec.volumes[0].source: a bind of /etc gives the container the host; "
        "allowed only by a ClusterPolicy listing it in spec.allowedHostPaths"
    )
    sock = task(volumes=[{"source": "/var//run/docker.sock", "target": "/s"}])
    assert refused_setting(sock) == (
        "spec.volumes[0].source: a bind of /var//run/docker.sock (/var/run/docker.sock; "
        "the Docker socket) gives the container the host; allowed only by a ClusterPolicy "
        "listing it in spec.allowedHostPaths"
    )


@pytest.mark.parametrize(
    ("context", "field", "policy_field"),
    [
        ({"privileged": True}, "privileged", "spec.allowPrivileged: true"),
        ({"capabilities": {"add": ["NET_ADMIN"]}}, "capabilities.add[0]", "allowedCapabilities"),
        ({"hostNetwork": True}, "hostNetwork", "spec.allowHostNetwork: true"),
        ({"hostPID": True}, "hostPID", "spec.allowHostPID: true"),
    ],
)
def test_each_host_setting_is_refused_by_default_naming_field_and_policy(
    context: dict[str, Any], field: str, policy_field: str
) -> None:
    message = refused_setting(task(securityContext=context))
    assert message is not None
    assert message.startswith(f"spec.securityContext.{field}: ")
    assert message.endswith(policy_field) or policy_field in message


def test_settings_turned_off_are_not_refused() -> None:
    off = {"privileged": False, "hostNetwork": False, "hostPID": False, "capabilities": {"add": []}}
    assert refused_setting(task(securityContext=off)) is None
    assert refused_setting(task()) is None


def test_a_policy_allows_exactly_what_it_says() -> None:
    policy = cluster_policy([policy_object("net", allowHostNetwork=True)])
    assert refused_setting(task(securityContext={"hostNetwork": True}), policy) is None
    still = refused_setting(task(securityContext={"hostNetwork": True, "hostPID": True}), policy)
    assert still is not None and still.startswith("spec.securityContext.hostPID:")


def test_capabilities_match_in_any_spelling_and_all_allows_any() -> None:
    assert canonical_capability(" cap_net_admin ") == "NET_ADMIN"
    policy = cluster_policy([policy_object("caps", allowedCapabilities=["CAP_NET_ADMIN"])])
    assert (
        refused_setting(task(securityContext={"capabilities": {"add": ["net_admin"]}}), policy)
        is None
    )
    second = task(securityContext={"capabilities": {"add": ["NET_ADMIN", "SYS_ADMIN"]}})
    message = refused_setting(second, policy)
    assert message is not None
    assert message.startswith(
        "spec.securityContext.capabilities.add[1]: adding capability SYS_ADMIN"
    )
    everything = cluster_policy([policy_object("all", allowedCapabilities=["all"])])
    assert refused_setting(second, everything) is None


def test_policies_are_a_union_and_ones_being_deleted_allow_nothing() -> None:
    policy = cluster_policy(
        [
            policy_object("b", allowPrivileged=True),
            policy_object("a", allowHostPID=True),
            policy_object("gone", deleting=True, allowHostNetwork=True),
        ]
    )
    assert policy.privileged and policy.host_pid and not policy.host_network
    assert policy.sources == ("a", "b")
    assert cluster_policy([]) == NO_POLICY


def test_allowed_host_paths_cover_their_subtree_and_respect_read_only() -> None:
    policy = cluster_policy(
        [
            policy_object(
                "paths",
                allowedHostPaths=[
                    {"path": "/var/run/docker.sock/"},
                    {"path": "/etc", "readOnly": True},
                ],
            )
        ]
    )
    assert policy.host_paths == (
        HostPathGrant("/var/run/docker.sock"),
        HostPathGrant("/etc", read_only=True),
    )
    assert refused_setting(bind("/var//run/docker.sock"), policy) is None
    assert (
        refused_setting(bind("/run/docker.sock"), policy) is not None
    )  # another spelling of a path
    assert refused_setting(bind("/etc/localtime", read_only=True), policy) is None
    writable = refused_setting(bind("/etc/localtime"), policy)
    assert writable is not None and writable.endswith(
        "the ClusterPolicy allows it read-only only: set readOnly: true"
    )
    assert refused_setting(bind("/etcetera"), policy) is None  # never dangerous
    assert refused_setting(bind("/proc"), policy) is not None
    root = cluster_policy([policy_object("root", allowedHostPaths=[{"path": "/"}])])
    assert refused_setting(bind("/proc/1/root"), root) is None


def test_host_paths_are_normalised_lexically() -> None:
    assert normalise_host_path("//var/./run/../run//docker.sock/") == "/var/run/docker.sock"
    assert normalise_host_path("named-volume") == "named-volume"


def test_the_default_policy_allows_nothing() -> None:
    assert Policy() == NO_POLICY
    assert not NO_POLICY.allows_capability("CHOWN")
    assert not NO_POLICY.allows_bind("/etc", read_only=True)
