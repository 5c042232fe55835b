"""The capacity index answers as a linear scan would, through any sequence of updates."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from swarmapply.controllers.placement_index import CapacityIndex


def scan_first(
    free: list[int], memory: list[int], active: list[bool], c: int, m: int
) -> int | None:
    return next(
        (p for p in range(len(free)) if active[p] and free[p] >= c and memory[p] >= m), None
    )


def scan_best(free: list[int], memory: list[int], active: list[bool], c: int, m: int) -> int | None:
    fits = [p for p in range(len(free)) if active[p] and free[p] >= c and memory[p] >= m]
    return min(fits, key=lambda p: (free[p], p)) if fits else None


nodes = st.lists(st.tuples(st.integers(0, 8), st.integers(0, 6), st.booleans()), max_size=12)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("ask"), st.integers(1, 9), st.integers(0, 7)),
        st.tuples(st.just("set"), st.integers(0, 11), st.integers(0, 8), st.integers(0, 6)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(nodes, steps)
def test_index_matches_a_linear_scan(
    initial: list[tuple[int, int, bool]], script: list[tuple[object, ...]]
) -> None:
    free = [f for f, _, _ in initial]
    memory = [m for _, m, _ in initial]
    active = [a for _, _, a in initial]
    index = CapacityIndex(free, memory, active)
    for step in script:
        if step[0] == "ask":
            c, m = int(step[1]), int(step[2])  # type: ignore[call-overload]
            assert index.first_fit(c, m) == scan_first(free, memory, active, c, m)
            assert index.best_fit(c, m) == scan_best(free, memory, active, c, m)
            assert index.count_free_at_least(c) == sum(
                1 for p in range(len(free)) if active[p] and free[p] >= c
            )
            assert index.count_short_of_memory(c, m) == sum(
                1 for p in range(len(free)) if active[p] and free[p] >= c and memory[p] < m
            )
        elif free:
            pos = int(step[1]) % len(free)  # type: ignore[call-overload]
            free[pos], memory[pos] = int(step[2]), int(step[3])  # type: ignore[call-overload]
            index.update(pos, free[pos], memory[pos])
