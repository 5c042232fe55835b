"""Memory quantities and cpusets: Docker's meaning, canonical forms and clear rejections."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmapply.api.quantity import (
    MAX_MEMORY_BYTES,
    QuantityError,
    format_cpuset,
    format_memory,
    parse_cpuset,
    parse_memory,
)
from swarmapply.errors import PermanentError

KI, MI, GI = 1 << 10, 1 << 20, 1 << 30


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1),
        (4096, 4096),
        ("4096", 4096),
        (1024.0, 1024),
        ("10b", 10),
        ("10B", 10),
        ("512k", 512 * KI),
        ("512kb", 512 * KI),
        ("10m", 10 * MI),
        ("10M", 10 * MI),  # Docker's meaning wins over Kubernetes' decimal M
        ("10mb", 10 * MI),
        ("10MB", 10 * MI),
        ("10Mi", 10 * MI),
        ("10MiB", 10 * MI),
        ("512Mi", 512 * MI),
        ("1.5g", 3 * GI // 2),
        ("1.5Gi", 3 * GI // 2),
        ("2t", 2 << 40),
        ("1p", 1 << 50),
        ("1Pi", 1 << 50),
        (" 64m ", 64 * MI),
        ("64 m", 64 * MI),
        ("1.3m", int(1.3 * MI)),  # fractions of a byte are truncated, as Docker does
    ],
)
def test_parse_memory_accepts_docker_and_kubernetes_forms(value: object, expected: int) -> None:
    assert parse_memory(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        0,
        "0",
        "0m",
        -1,
        "-1m",
        "",
        "   ",
        True,
        False,
        None,
        1.5,
        float("nan"),
        float("inf"),
        "ten",
        "10x",
        "10 mb b",
        "10i",
        "1e3",
        "+5m",
        "10E",
        "5Ei",
        "1..5m",
        [],
        {},
        "0.0001k",
        str(MAX_MEMORY_BYTES + 1),
        "9" * 5000,
        "\uff11\uff10m",  # full-width digits are not digits here
    ],
)
def test_parse_memory_rejects(value: object) -> None:
    with pytest.raises(QuantityError) as info:
        parse_memory(value)
    assert "expected a memory quantity such as 512Mi" in str(info.value)


def test_quantity_error_is_permanent_and_value_error() -> None:
    with pytest.raises(PermanentError):
        parse_memory("x")
    with pytest.raises(ValueError):
        parse_cpuset("x")


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0B"),
        (100, "100B"),
        (1023, "1023B"),
        (1024, "1Ki"),
        (512 * KI, "512Ki"),
        (1536, "1.5Ki"),
        (10 * MI, "10Mi"),
        (3 * GI // 2, "1.5Gi"),
        (GI + 1, f"{GI + 1}B"),
        (1 << 50, "1Pi"),
        (1 << 60, "1024Pi"),
    ],
)
def test_format_memory_exact(n: int, text: str) -> None:
    assert format_memory(n) == text


def test_format_memory_approximate() -> None:
    assert format_memory(10**9, exact=False) == "953.7Mi"
    assert format_memory(100, exact=False) == "100B"
    assert format_memory(3 * GI // 2, exact=False) == "1.5Gi"


@pytest.mark.parametrize("n", [-1, 1.0, "1", True, None])
def test_format_memory_rejects_non_byte_counts(n: object) -> None:
    with pytest.raises(QuantityError):
        format_memory(n)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=MAX_MEMORY_BYTES))
def test_format_memory_round_trips_exactly(n: int) -> None:
    assert parse_memory(format_memory(n)) == n


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("0", (0,)),
        ("0-3,6", (0, 1, 2, 3, 6)),
        ("6,0-3", (0, 1, 2, 3, 6)),
        ("3,1,2", (1, 2, 3)),
        ("5-5", (5,)),
        (" 1-2 ", (1, 2)),
        (7, (7,)),
    ],
)
def test_parse_cpuset(text: object, ids: tuple[int, ...]) -> None:
    assert parse_cpuset(text) == ids


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("3-1", "descending"),
        ("0-3,2", "more than once"),
        ("1,1", "more than once"),
        ("0-3,3-5", "more than once"),
        ("-1", "cannot read"),
        ("a", "cannot read"),
        ("0,,1", "cannot read"),
        ("0-", "cannot read"),
        ("0 - 3", "cannot read"),
        ("1,", "cannot read"),
        ("0-99999999", "go up to"),
        ("9" * 40, "go up to"),
        (-1, "expected a cpuset"),
        (True, "expected a cpuset"),
        (None, "expected a cpuset"),
        (1.0, "expected a cpuset"),
        (["0"], "expected a cpuset"),
    ],
)
def test_parse_cpuset_rejects(text: object, hint: str) -> None:
    with pytest.raises(QuantityError) as info:
        parse_cpuset(text)
    assert "expected a cpuset" in str(info.value)
    assert hint in str(info.value)


@pytest.mark.parametrize(
    ("ids", "text"),
    [
        ([], ""),
        ([6, 0, 1, 2, 3], "0-3,6"),
        ([0, 1], "0-1"),
        ([4], "4"),
        ((1, 3, 5), "1,3,5"),
        (range(8), "0-7"),
    ],
)
def test_format_cpuset(ids: list[int], text: str) -> None:
    assert format_cpuset(ids) == text


@pytest.mark.parametrize("ids", [[1, 1], [-1], [True], ["1"], [1.0]])
def test_format_cpuset_rejects(ids: list[object]) -> None:
    with pytest.raises(QuantityError):
        format_cpuset(ids)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(min_value=0, max_value=300), min_size=1))
def test_cpuset_round_trips(ids: set[int]) -> None:
    text = format_cpuset(ids)
    assert parse_cpuset(text) == tuple(sorted(ids))
    assert format_cpuset(parse_cpuset(text)) == text
