"""The idle benchmark's pure parts: reading /proc/<pid>/stat and summing a process tree."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the bench package, from any cwd
import os

import pytest

from bench.idle_bench import ProcStat, cpu_percent, descendants, parse_stat, tree_ticks

# A real line's shape: the command name holds spaces and a parenthesis.
LINE = (
    "4242 (python (x) y) S 17 4242 4242 0 -1 4194304 1000 0 0 0 "
    "150 30 7 3 20 0 5 0 100 1000000 2000 18446744073709551615"
)


def test_parse_stat_reads_ppid_and_cpu_fields_after_an_odd_command_name() -> None:
    stat = parse_stat(LINE)
    assert stat == ProcStat(4242, 17, 150, 30, 7, 3)
    assert stat.ticks == 190
    with pytest.raises(ValueError, match="stat"):
        parse_stat("garbage")


def test_descendants_walks_the_tree_below_the_root_only() -> None:
    stats = [
        ProcStat(1, 0, 1, 0, 0, 0),
        ProcStat(10, 1, 5, 0, 0, 0),
        ProcStat(11, 10, 2, 0, 0, 0),
        ProcStat(12, 11, 1, 1, 0, 0),
        ProcStat(20, 1, 9, 0, 0, 0),
    ]
    assert sorted(s.pid for s in descendants(10, stats)) == [10, 11, 12]
    assert descendants(99, stats) == []


def test_cpu_percent() -> None:
    assert cpu_percent(100, 10.0, 100) == pytest.approx(10.0)
    assert cpu_percent(5, 0.0, 100) == 0.0


def test_tree_ticks_of_this_process_is_positive() -> None:
    assert tree_ticks(os.getpid()) >= 0
    assert parse_stat(Path(f"/proc/{os.getpid()}/stat").read_text()).pid == os.getpid()
