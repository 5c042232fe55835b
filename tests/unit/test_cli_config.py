"""Store selection for the command line, and the README/CI agreement on the test command."""

from __future__ import annotations

import re
from pathlib import Path

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
