"""Name syntax checks: Kubernetes' DNS-1123 and label rules, with messages that say what to do."""

from __future__ import annotations

import pytest

from swarmapply.api.names import (
    dns1123_label_error,
    dns1123_subdomain_error,
    label_key_error,
    label_value_error,
)


@pytest.mark.parametrize("name", ["a", "0", "my-job", "web1", "a" * 63, "1-2-3"])
def test_valid_labels(name: str) -> None:
    assert dns1123_label_error(name) is None


@pytest.mark.parametrize(
    "name",
    ["", "A", "my_job", "-a", "a-", "a.b", "a" * 64, "é", "a b", "a\n", "$a", 5, None],
)
def test_invalid_labels(name: object) -> None:
    message = dns1123_label_error(name)
    assert message is not None
    assert "expected" in message or "at most 63" in message or "must not be empty" in message


def test_label_error_says_what_was_expected() -> None:
    message = dns1123_label_error("My_Job")
    assert message is not None
    assert "lower-case letters, digits and '-'" in message
    assert '"My_Job"' in message


@pytest.mark.parametrize("name", ["a", "a.b", "node1.example.com", "a-b.c-d", "a" * 253])
def test_valid_subdomains(name: str) -> None:
    assert dns1123_subdomain_error(name) is None


@pytest.mark.parametrize("name", ["", "a..b", ".a", "a.", "A.b", "a_b.c", "a" * 254, "a.-b", 1])
def test_invalid_subdomains(name: object) -> None:
    assert dns1123_subdomain_error(name) is not None


@pytest.mark.parametrize(
    "key",
    [
        "app",
        "App",
        "tier_1",
        "my.name",
        "a",
        "swarmapply.io/job",
        "app.kubernetes.io/name",
        "restfulswarm.swarmapply.io/status",
        "x" * 63,
        "example.com/" + "x" * 63,
    ],
)
def test_valid_label_keys(key: str) -> None:
    assert label_key_error(key) is None


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("", "must not be empty"),
        ("$set", "name part"),
        ("a$b", "name part"),
        ("a.$b", "name part"),
        (".a", "name part"),
        ("a.", "name part"),
        ("-a", "name part"),
        ("a b", "name part"),
        ("x" * 64, "at most 63"),
        ("/a", "prefix before '/'"),
        ("a/", "name part must not be empty"),
        ("a/b/c", "at most one '/'"),
        ("Example.com/a", "not a DNS subdomain"),
        ("ex$ample.com/a", "not a DNS subdomain"),
        ("a..b/c", "not a DNS subdomain"),
        (1, "as a string"),
    ],
)
def test_invalid_label_keys(key: object, hint: str) -> None:
    message = label_key_error(key)
    assert message is not None
    assert hint in message


@pytest.mark.parametrize("value", ["", "a", "A-b_c.d", "x" * 63, "1"])
def test_valid_label_values(value: str) -> None:
    assert label_value_error(value) is None


@pytest.mark.parametrize("value", ["-a", "a-", "a b", "x" * 64, "a/b", "$", 1, None, True])
def test_invalid_label_values(value: object) -> None:
    assert label_value_error(value) is not None
