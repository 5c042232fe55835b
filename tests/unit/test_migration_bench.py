"""The migration benchmark's pure parts: statistics, the table, the messages, the specs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from swarmapply.api.admission import admit


def _load_bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "migration_bench.py"
    spec = importlib.util.spec_from_file_location("migration_bench_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


bench = _load_bench()
PAIR = bench.PAIR
Spread = bench.Spread
job_manifest = bench.job_manifest
other = bench.other
ratio = bench.ratio
raw_spec = bench.raw_spec
result_rows = bench.result_rows
shorten = bench.shorten
spread = bench.spread
table = bench.table


def test_spread_is_median_min_max_and_count() -> None:
    assert spread([3.0, 1.0, 2.0, 10.0]) == Spread(2.5, 1.0, 10.0, 4)
    assert spread([4.0]) == Spread(4.0, 4.0, 4.0, 1)
    assert spread([]) is None


def test_ratio_of_medians_and_its_missing_cases() -> None:
    assert ratio(spread([4.0, 4.2, 9.0]), spread([2.0, 2.1, 1.0])) == pytest.approx(2.1)
    assert ratio(None, spread([1.0])) is None
    assert ratio(spread([1.0]), None) is None
    assert ratio(spread([1.0]), spread([0.0])) is None


def test_shorten_flattens_and_cuts_long_messages() -> None:
    assert shorten("runc said:\n  no\tway") == "runc said: no way"
    cut = shorten("x" * 500, 300)
    assert len(cut) == 300 and cut.endswith("...")
    assert shorten("short", 300) == "short"


def test_other_node_of_the_pair() -> None:
    assert other(PAIR[0]) == PAIR[1]
    assert other(PAIR[1]) == PAIR[0]
    with pytest.raises(ValueError, match="node-1"):
        other("node-1")


def test_result_rows_order_stages_and_show_empty_series() -> None:
    stages = {"start": [0.8, 0.9], "total": [4.1, 4.2], "stop": [3.2, 3.3], "reserve": [0, 0]}
    rows = result_rows([4.0, 4.4, 4.2], stages, [])
    assert rows[0] == ("measure", "median s", "min s", "max s", "n")
    names = [r[0].strip() for r in rows[1:]]
    assert names == [
        "swarmapply cold migration (wall)",
        "status.timings.reserve",
        "status.timings.stop",
        "status.timings.start",
        "status.timings.total",
        "raw docker stop+remove, create+start",
    ]
    assert rows[1] == ("swarmapply cold migration (wall)", "4.200", "4.000", "4.400", "3")
    assert rows[-1][1:] == ("", "", "", "0")


def test_raw_spec_copies_the_tasks_container() -> None:
    inspect = {
        "Config": {"Image": "img:1", "Cmd": ["sleep", "3600"]},
        "HostConfig": {"Memory": 16 * 1024**2, "CpusetCpus": "1"},
        "NetworkSettings": {"Networks": {"migbench": {}}},
    }
    spec = raw_spec(inspect, {"node-2": "0", "node-3": "1"})
    assert (spec.image, spec.command, spec.memory, spec.network) == (
        "img:1",
        ["sleep", "3600"],
        16 * 1024**2,
        "migbench",
    )
    assert spec.cpusets == {"node-2": "0", "node-3": "1"}
    with pytest.raises(RuntimeError, match="no network"):
        raw_spec({**inspect, "NetworkSettings": {"Networks": {}}}, {})


def test_the_job_manifest_is_admitted_as_one_pinned_task() -> None:
    [job] = admit([("bench", json.dumps(job_manifest()))])
    [task] = job.obj["spec"]["tasks"]
    assert (task["node"], task["cores"], task["command"]) == (PAIR[0], 1, ["sleep", "3600"])


def test_table_aligns_columns_under_a_rule() -> None:
    lines = table([("a", "n"), ("long name", "12")], (False, True))
    assert lines == ["a           n", "---------  --", "long name  12"]
