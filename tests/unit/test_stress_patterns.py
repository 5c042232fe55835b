"""The load patterns, option checks and job names of ``swarmapply stress`` (pure)."""

from __future__ import annotations

import math
import random
import re

import pytest

from swarmapply.api.names import dns1123_label_error, label_key_error, label_value_error
from swarmapply.cli.stress_patterns import (
    SESSION_LABEL,
    Bursty,
    Incremental,
    RandomConstant,
    Steady,
    counts,
    interval_count,
    is_session,
    job_name,
    make_pattern,
    session_selector,
    uses_seed,
)
from swarmapply.cli.usage import UsageError

NONE: dict[str, float | None] = {
    "--rate": None,
    "--lambda": None,
    "--slope": None,
    "--intercept": None,
    "--min": None,
    "--max": None,
}


def options(**given: float | None) -> dict[str, float | None]:
    """The option dict with some values set (``rate=2`` sets ``--rate``)."""
    return {**NONE, **{f"--{k.replace('lambd', 'lambda')}": v for k, v in given.items()}}


# ---------------------------------------------------------------------------------- steady


def test_steady_whole_rate_is_the_same_every_interval() -> None:
    assert counts(Steady(2), 5, None) == [2, 2, 2, 2, 2]


def test_steady_fractional_rate_carries_the_remainder() -> None:
    assert counts(Steady(0.5), 6, None) == [0, 1, 0, 1, 0, 1]
    assert counts(Steady(2.5), 4, None) == [2, 3, 2, 3]


@pytest.mark.parametrize("rate", [0, 0.1, 0.3, 0.7, 1, 1.25, 2.5, 3.3333])
@pytest.mark.parametrize("intervals", [1, 3, 7, 10, 30, 100])
def test_steady_total_is_floor_of_rate_times_intervals(rate: float, intervals: int) -> None:
    from fractions import Fraction

    assert sum(counts(Steady(rate), intervals, None)) == math.floor(Fraction(str(rate)) * intervals)


def test_steady_uses_the_decimal_given_not_its_binary_rounding() -> None:
    # 0.1 * 30 and 0.3 * 3 are 3.0000000000000004 and 0.8999999999999999 in floats
    assert sum(counts(Steady(0.1), 30, None)) == 3
    assert sum(counts(Steady(0.3), 10, None)) == 3
    assert counts(Steady(0.3), 4, None) == [0, 0, 0, 1]


# ---------------------------------------------------------------------------------- bursty


def test_bursty_is_ceil_of_exponential_draws_from_the_seed() -> None:
    rng = random.Random(42)
    expected = [math.ceil(rng.expovariate(0.5)) for _ in range(20)]
    assert counts(Bursty(0.5), 20, 42) == expected
    assert counts(Bursty(0.5), 20, 42) == expected  # same seed, same counts
    assert counts(Bursty(0.5), 20, 43) != expected


def test_bursty_counts_have_about_the_mean_of_the_distribution() -> None:
    values = counts(Bursty(0.25), 4000, 1)
    assert all(v >= 0 for v in values)
    mean = sum(values) / len(values)
    assert 4.0 < mean < 5.0  # ceil(Exp(1/4)) has mean 1/(1 - e^-0.25) ~ 4.52


# ----------------------------------------------------------------------------- incremental


def test_incremental_is_slope_times_t_plus_intercept_rounded_halves_up() -> None:
    assert counts(Incremental(1, 0), 4, None) == [0, 1, 2, 3]
    assert counts(Incremental(2, 3), 3, None) == [3, 5, 7]
    assert counts(Incremental(0.5, 0), 6, None) == [0, 1, 1, 2, 2, 3]  # 0.5 -> 1, 1.5 -> 2
    assert counts(Incremental(0.4, 0.2), 3, None) == [0, 1, 1]


def test_incremental_never_goes_below_zero() -> None:
    assert counts(Incremental(-1, 2), 5, None) == [2, 1, 0, 0, 0]


# ---------------------------------------------------------------------------------- random


def test_random_draws_one_constant_in_range_from_the_seed() -> None:
    for seed in range(50):
        values = counts(RandomConstant(2, 5), 8, seed)
        assert len(set(values)) == 1
        assert 2 <= values[0] <= 5
        assert values[0] == random.Random(seed).randint(2, 5)
        assert counts(RandomConstant(2, 5), 8, seed) == values
    drawn = {counts(RandomConstant(2, 5), 1, seed)[0] for seed in range(100)}
    assert drawn == {2, 3, 4, 5}


def test_random_with_equal_bounds_is_that_number() -> None:
    assert counts(RandomConstant(3, 3), 4, 9) == [3, 3, 3, 3]


def test_only_bursty_and_random_use_the_seed() -> None:
    assert uses_seed(Bursty(1)) and uses_seed(RandomConstant(0, 1))
    assert not uses_seed(Steady(1)) and not uses_seed(Incremental(1, 0))
    assert counts(Steady(1.5), 6, 1) == counts(Steady(1.5), 6, 2)


def test_zero_intervals_give_no_counts() -> None:
    assert counts(Steady(1), 0, None) == []
    assert counts(Bursty(1), 0, 1) == []


# ------------------------------------------------------------------------------- checking


def test_make_pattern_builds_each_pattern() -> None:
    assert make_pattern("steady", options(rate=1.5)) == Steady(1.5)
    assert make_pattern("bursty", options(lambd=0.5)) == Bursty(0.5)
    assert make_pattern("incremental", options(slope=-1, intercept=4)) == Incremental(-1, 4)
    assert make_pattern("random", options(min=1, max=4)) == RandomConstant(1, 4)
    assert make_pattern("steady", options(rate=1.5)).parameters() == {"rate": 1.5}
    assert make_pattern("random", options(min=1, max=4)).parameters() == {"min": 1, "max": 4}


@pytest.mark.parametrize(
    ("pattern", "given", "message"),
    [
        ("steady", {}, "--rate: required with this --pattern"),
        ("steady", {"rate": -1}, "--rate: expected a number >= 0, got -1"),
        ("steady", {"rate": math.inf}, "--rate: expected a finite number"),
        ("bursty", {}, "--lambda: required"),
        ("bursty", {"lambd": 0}, "--lambda: expected a number > 0, got 0"),
        ("bursty", {"lambd": -2}, "--lambda: expected a number > 0, got -2"),
        ("incremental", {"intercept": 1}, "--slope: required"),
        ("incremental", {"slope": 1}, "--intercept: required"),
        ("incremental", {"slope": 1, "intercept": -1}, "--intercept: expected a number >= 0"),
        ("random", {"max": 3}, "--min: required"),
        ("random", {"min": 1}, "--max: required"),
        ("random", {"min": -1, "max": 3}, "--min: expected a number >= 0, got -1"),
        ("random", {"min": 1.5, "max": 3}, "--min: expected a whole number of jobs, got 1.5"),
        ("random", {"min": 4, "max": 3}, "--min: must not be above --max, got --min 4 and"),
        ("steady", {"rate": 1, "lambd": 2}, "--lambda: only with --pattern bursty"),
        ("random", {"min": 1, "max": 2, "rate": 1}, "--rate: only with --pattern steady"),
        ("wave", {}, "--pattern: expected one of steady, bursty, incremental, random"),
    ],
)
def test_bad_parameters_name_the_option(
    pattern: str, given: dict[str, float], message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        make_pattern(pattern, options(**given))
    assert str(caught.value).startswith(message), str(caught.value)


def test_interval_count_is_whole_intervals_in_the_duration() -> None:
    assert interval_count(3, 0.5) == 6
    assert interval_count(3, 0.1) == 30  # not 29 from 3 / 0.1 = 29.999999999999996
    assert interval_count(1, 0.3) == 3
    assert interval_count(2, 2) == 1


@pytest.mark.parametrize(
    ("duration", "interval", "message"),
    [
        (1, 2, "--interval: must not be longer than --duration (2s > 1s)"),
        (1, 0, "--interval: expected a number of seconds > 0"),
        (0, 1, "--duration: expected a number of seconds > 0"),
    ],
)
def test_interval_count_rejects_bad_values(duration: float, interval: float, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        interval_count(duration, interval)


# ---------------------------------------------------------------------------------- names


def test_job_name_is_restfulswarm_style_unique_and_dns_safe() -> None:
    name = job_name(1712345678901, "a1b2c3", 17)
    assert name == "job1712345678901-a1b2c3-17"
    assert dns1123_label_error(name) is None
    assert len(job_name(10**15, "ffffff", 10**9)) <= 63
    assert job_name(1, "a1b2c3", 0) != job_name(1, "a1b2c3", 1)


@pytest.mark.parametrize("session", ["A1B2C3", "a1b2c", "a1b2c3d", "g1b2c3", ""])
def test_a_bad_session_is_refused(session: str) -> None:
    assert not is_session(session)
    with pytest.raises(ValueError, match="6 lower-case hex digits"):
        job_name(1, session, 0)
    with pytest.raises(ValueError, match="6 lower-case hex digits"):
        session_selector(session)


def test_session_label_is_a_valid_label() -> None:
    assert label_key_error(SESSION_LABEL) is None
    selector = session_selector("0a9f3c")
    key, _, value = selector.partition("=")
    assert key == SESSION_LABEL and value == "0a9f3c"
    assert label_value_error(value) is None
