"""The suite's pure parts: goals, ratios, the table, Markdown, and the child's JSON round trip."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the bench package, from any cwd
import math

import pytest

from bench.suite import (
    Figure,
    Goal,
    Result,
    fmt_number,
    markdown_document,
    percentile,
    table_rows,
    text_table,
)


def test_goal_on_value_and_on_ratio() -> None:
    at_least = Goal(">=", 2000)
    assert at_least.met(2500, None) is True
    assert at_least.met(1999, None) is False
    assert at_least.met(None, None) is None
    ratio = Goal("<=", 1.5, on="ratio")
    assert ratio.met(100.0, 1.2) is True
    assert ratio.met(1.0, 1.6) is False
    assert ratio.met(1.0, None) is None
    assert ratio.describe() == "ratio <= 1.5"
    assert at_least.describe("/s") == ">= 2000 /s"
    with pytest.raises(ValueError, match="op"):
        Goal("<", 1)
    with pytest.raises(ValueError, match="on"):
        Goal("<=", 1, on="baseline")


def test_figure_ratio_and_met() -> None:
    f = Figure("docker", "apply", 1.5, "s", 1.2, "raw", Goal("<=", 1.5, on="ratio"))
    assert f.ratio == pytest.approx(1.25)
    assert f.met is True
    assert Figure("x", "y", 1.0, baseline=0.0).ratio is None
    assert Figure("x", "y", None, baseline=2.0).ratio is None
    assert Figure("x", "y", 3.0).met is None  # no goal


def test_table_rows_show_skips_baselines_and_unmet_goals() -> None:
    figures = [
        Figure("placement", "core", 59737.2, "/s", 5605.0, "naive", Goal(">=", 2000), digits=0),
        Figure("e2e", "apply", 300.0, "/s", goal=Goal(">=", 2000), digits=0),
        Figure("docker", "apply", None, note="skipped: no engine", goal=Goal("<=", 1.5)),
    ]
    head, core, e2e, docker = table_rows(figures)
    assert head[-1] == "met?"
    assert core == ("placement", "core", "59,737 /s", "5,605 /s (naive)", "10.66", ">= 2000 /s",
                    "yes")  # fmt: skip
    assert e2e[2] == "300 /s" and e2e[3] == "" and e2e[-1] == "NO"
    assert docker[2] == "skipped: no engine" and docker[-1] == "-"
    lines = text_table(figures)
    assert len(lines) == 5 and set(lines[1]) <= {"-", " "}


def test_markdown_document_has_command_machine_and_escaped_cells() -> None:
    text = markdown_document(
        [("CPU", "x86 | 2 CPUs")],
        [Figure("store", "a|b", 1.0, "/s")],
        ["a note"],
        "python -m bench --markdown out.md",
        "2026-01-01 00:00:00 UTC",
        12.0,
    )
    assert "`python -m bench --markdown out.md`" in text
    assert "* CPU: x86 | 2 CPUs" in text
    assert "| store | a\\|b | 1.000 /s |" in text
    assert "* a note" in text


def test_result_round_trips_through_json() -> None:
    result = Result(
        [Figure("idle", "cpu", 1.2, "%", 0.0, "asleep", Goal("<=", 2.0), digits=2)],
        ["n"],
        failed=True,
    )
    again = Result.from_json(result.to_json())
    assert again == result
    with pytest.raises(ValueError, match="not a figure"):
        Figure.from_json({"benchmark": "x"})


def test_percentile_nearest_rank_and_numbers() -> None:
    values = [float(v) for v in range(1, 201)]
    assert percentile(values, 50) == 100.0
    assert percentile(values, 99) == 198.0
    assert percentile(values, 100) == 200.0
    with pytest.raises(ValueError):
        percentile([], 50)
    assert fmt_number(None) == "-"
    assert fmt_number(math.inf) == "inf"
    assert fmt_number(0.12345, 2) == "0.12"
