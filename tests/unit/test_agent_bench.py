"""The agent benchmark: its sizing rules, and a tiny sim run that must converge.

The tiny run keeps the benchmark from rotting: it builds the same hollow-node group, the same
job-controller-shaped Tasks and the same scheduler loop as the full run, on a temporary SQLite
store, and checks that every task ends up bound and Running and that the figures are sane.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load_bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "agent_bench.py"
    spec = importlib.util.spec_from_file_location("agent_bench_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def test_job_sizes_are_gangs_of_four_with_the_remainder_last() -> None:
    assert bench.job_sizes(10) == [4, 4, 2]
    assert bench.job_sizes(8) == [4, 4]
    assert bench.job_sizes(1) == [1]
    with pytest.raises(ValueError):
        bench.job_sizes(0)


def test_hollow_nodes_get_enough_cores_for_every_task() -> None:
    assert bench.cores_per_node(10000, 1000) == 16
    assert bench.cores_per_node(20, 5) * 5 >= 20
    assert bench.cores_per_node(1000, 10) >= 100


def test_one_engine_is_split_into_enough_nodes_for_exclusive_cores() -> None:
    assert bench.engine_nodes(4, 2) == 2
    assert bench.engine_nodes(4, 3) == 2
    assert bench.engine_nodes(4, 16) == 1
    with pytest.raises(ValueError):
        bench.engine_nodes(4, 0)


def test_cpu_per_second_and_maxrss_units() -> None:
    assert bench.per_second(0.5, 2.0) == 0.25
    assert bench.per_second(1.0, 0.0) == 0.0
    assert bench.maxrss_bytes(10, "linux") == 10240
    assert bench.maxrss_bytes(10, "darwin") == 10


def test_docker_job_is_admitted_with_four_one_core_tasks_on_the_given_network() -> None:
    [item] = bench.admit([("test", bench.json.dumps(bench.docker_job("j", "net-1")))])
    spec = item.obj["spec"]
    assert spec["network"] == {"name": "net-1", "driver": "bridge"}
    assert [(t["cores"], t["memory"]) for t in spec["tasks"]] == [(1, 16 * 1024**2)] * 4


def test_tiny_sim_run_converges_with_every_task_running() -> None:
    result = bench.bench_sim(nodes=5, tasks=22, steady=0.3, baseline=0.1, timeout=60.0)
    assert result.running == 22
    assert result.containers == 22
    assert result.still_running == 22
    assert 0 < result.bound_s <= result.running_s
    assert result.steady is not None and result.baseline is not None
    assert result.steady.wall >= 0.3 and result.steady.cpu >= 0
    assert result.steady.maxrss >= result.baseline.maxrss > 0
    lines = bench.sim_lines(result)
    assert any("all Running" in line for line in lines)
    assert any("5 hollow nodes" in line for line in lines)
