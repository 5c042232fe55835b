"""Label and field selector parsing and matching."""

from __future__ import annotations

import pytest

from swarmapply.api.selectors import (
    InvalidSelector,
    Requirement,
    equality_terms,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)


def test_parses_every_label_operator() -> None:
    parsed = parse_label_selector("a=b, c==d,e!=f,g in (x, y),h notin (z),i,!j,k.io/l=m")
    assert parsed == (
        Requirement("a", "=", ("b",)),
        Requirement("c", "=", ("d",)),
        Requirement("e", "!=", ("f",)),
        Requirement("g", "in", ("x", "y")),
        Requirement("h", "notin", ("z",)),
        Requirement("i", "exists"),
        Requirement("j", "!exists"),
        Requirement("k.io/l", "=", ("m",)),
    )


@pytest.mark.parametrize("text", [None, "", "   "])
def test_empty_selector_selects_everything(text: str | None) -> None:
    assert parse_label_selector(text) == ()
    assert labels_match(parse_label_selector(text), {"x": "y"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a=b=c", "cannot parse"),
        ("a in (b", "unbalanced"),
        ("a in b)", "unbalanced"),
        ("a,,b", "empty term"),
        ("a in ()", "invalid value list"),
        ("$where=1", "cannot parse"),
        ("a=$gt", "cannot parse"),
    ],
)
def test_bad_label_selectors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidSelector, match=message):
        parse_label_selector(text)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app=web", {"app": "db"}, False),
        ("app=web", {}, False),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("app in (a,b)", {"app": "b"}, True),
        ("app in (a,b)", {}, False),
        ("app notin (a,b)", {}, True),
        ("app notin (a,b)", {"app": "a"}, False),
        ("app", {"app": ""}, True),
        ("!app", {"app": ""}, False),
        ("app=web,tier=fe", {"app": "web", "tier": "be"}, False),
    ],
)
def test_label_matching(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert labels_match(parse_label_selector(selector), labels) is expected


def test_field_selector_rejects_unindexed_fields_listing_the_supported_ones() -> None:
    with pytest.raises(InvalidSelector, match=r"spec\.image.*status\.phase"):
        parse_field_selector("spec.image=x")
    with pytest.raises(InvalidSelector, match="cannot parse"):
        parse_field_selector("status.phase")


def test_field_matching_treats_unset_as_empty_and_owners_as_a_set() -> None:
    obj = {
        "metadata": {"name": "t", "ownerReferences": [{"uid": "u1"}, {"uid": "u2"}]},
        "spec": {"node": "n1"},
        "status": {},
    }
    assert fields_match(parse_field_selector("metadata.ownerReferences.uid=u2"), obj)
    assert not fields_match(parse_field_selector("metadata.ownerReferences.uid!=u1"), obj)
    assert fields_match(parse_field_selector("status.phase="), obj)
    assert fields_match(parse_field_selector("status.phase!=Running,spec.node==n1"), obj)
    assert not fields_match(parse_field_selector("status.node=n1"), obj)


def test_equality_terms_are_what_a_backend_may_narrow_by() -> None:
    parsed = parse_field_selector("spec.node=n1,status.phase!=Failed,status.node=")
    assert equality_terms(parsed) == {"spec.node": "n1"}
