"""Store selection for the command line, and the README/CI agreement on the test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from swarmapply.cli.config import default_store_url, store_url

ROOT = Path(__file__).resolve().parents[2]


def test_default_store_is_under_the_xdg_state_home() -> None:
    assert default_store_url({"XDG_STATE_HOME": "/s"}) == "sqlite:////s/swarmapply/state.db"
    assert default_store_url({}).endswith("/.local/state/swarmapply/state.db")


def test_flag_beats_environment_beats_default() -> None:
    env = {"SWARMAPPLY_STORE": "mongodb://db/x", "XDG_STATE_HOME": "/s"}
    assert store_url("sqlite:///f.db", env) == "sqlite:///f.db"
    assert store_url(None, env) == "mongodb://db/x"
    assert store_url(None, {"XDG_STATE_HOME": "/s"}).startswith("sqlite:////s/")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    match = re.search(r'^TEST_COMMAND="([^"]+)"', ci, re.MULTILINE)
    assert match, ".ci/run must define TEST_COMMAND"
    assert f"```sh\n{match[1]}\n```" in readme


def test_tables_are_coloured_only_when_asked_and_stay_aligned() -> None:
    from swarmapply.cli.output import table

    jobs = [
        {"kind": "Job", "metadata": {"name": "a"}, "spec": {"tasks": []},
         "status": {"phase": "Running"}},
        {"kind": "Job", "metadata": {"name": "bb"}, "spec": {"tasks": []},
         "status": {"phase": "Failed"}},
    ]  # fmt: skip
    plain = table("Job", jobs)
    assert "\033[" not in plain
    coloured = table("Job", jobs, color=True)
    assert "\033[32mRunning" in coloured and "\033[31mFailed" in coloured
    strip = __import__("re").compile(r"\033\[[0-9;]*m")
    assert strip.sub("", coloured) == plain


def test_colour_follows_the_terminal_and_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from swarmapply.cli.context import Context

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert Context(stdout=Terminal()).color
    assert not Context(stdout=io.StringIO()).color
    monkeypatch.setenv("NO_COLOR", "1")
    assert not Context(stdout=Terminal()).color
    monkeypatch.setenv("NO_COLOR", "")  # set but empty: ignored (no-color.org)
    assert Context(stdout=Terminal()).color


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-01-01T00:00:00Z", "1m"),
        ("2026-01-01T00:00:00.123456Z", "1m"),
        ("2026-01-01T01:00:00+01:00", "1m"),
        ("2025-12-31T21:00:00Z", "3h"),
        ("not a time", "<unknown>"),
        (None, "<unknown>"),
    ],
)
def test_ages_read_any_rfc3339_timestamp(timestamp: object, expected: str) -> None:
    from datetime import datetime, timezone

    from swarmapply.cli.output import age

    now = datetime(2026, 1, 1, 0, 1, 30, tzinfo=timezone.utc)
    assert age(timestamp, now) == expected
