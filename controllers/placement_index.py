"""Internal helpers of :mod:`swarmapply.controllers.placement`: node order, core choice, indexes.

Nothing here knows about jobs or tasks. Positions are indexes into the naturally sorted node
list; an inactive position (a node that is not Ready or not schedulable) is never returned.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence


def pick_cores(free: Iterable[int], count: int) -> tuple[int, ...]:
    """Chooses ``count`` core ids among ``free``: the lowest contiguous run, else the lowest ids.

    Args:
        free: The free core ids of one node, in any order.
        count: How many cores to take (at least 1, at most the number of free ids).

    Returns:
        The chosen ids in ascending order.

    Raises:
        ValueError: ``count`` is not between 1 and the number of free ids.
    """
    ordered = sorted(free)
    if not 1 <= count <= len(ordered):
        raise ValueError(f"cannot take {count} cores out of {len(ordered)} free")
    run_start = 0
    for i in range(len(ordered)):
        if i > run_start and ordered[i] != ordered[i - 1] + 1:
            run_start = i
        if i - run_start + 1 == count:
            return tuple(ordered[run_start : i + 1])
    return tuple(ordered[:count])


class CapacityIndex:
    """Finds a node with enough free cores and memory without scanning every node.

    Two structures are kept in step:

    * per requested core count k, a max segment tree over positions whose leaf is the node's
      free memory when it has at least k free cores, else -1. The first position (in node
      order) with ``cores`` free cores and ``memory`` is found by one root-to-leaf descent,
      O(log n). A tree is built on first use, O(n), so there are only as many as distinct core
      counts are requested;
    * buckets of positions by free-core count (a sorted list of the distinct counts, each with a
      sorted list of positions), so best fit starts at the smallest sufficient count:
      O(log n) to find the bucket, plus the nodes skipped for lack of memory.

    An update (after taking or returning cores) costs O(log n) per tree whose leaf changes
    (stopping early where a maximum is unchanged), plus O(b) list moves for the two buckets
    involved (b = bucket size; a memmove, cheap in practice).
    """

    def __init__(
        self, free_cores: Sequence[int], free_memory: Sequence[int], active: Sequence[bool]
    ):
        """Builds the index.

        Args:
            free_cores: Free core count per position.
            free_memory: Free memory per position, in bytes.
            active: Whether each position may be chosen at all.
        """
        n = len(free_cores)
        size = 1
        while size < n:
            size *= 2
        self._size = size
        self._active = list(active)
        self._free = [-1] * n
        self._memory = [-1] * n
        self._trees: dict[int, list[int]] = {}
        self._counts: list[int] = []
        self._buckets: dict[int, list[int]] = {}
        for pos in range(n):
            if self._active[pos]:
                self._free[pos] = free_cores[pos]
                self._memory[pos] = free_memory[pos]
                self._bucket_add(pos, free_cores[pos])

    def _tree(self, cores: int) -> list[int]:
        tree = self._trees.get(cores)
        if tree is None:
            size = self._size
            tree = [-1] * (2 * size)
            for pos, free in enumerate(self._free):
                if free >= cores:
                    tree[size + pos] = self._memory[pos]
            for i in range(size - 1, 0, -1):
                tree[i] = max(tree[2 * i], tree[2 * i + 1])
            self._trees[cores] = tree
        return tree

    def _bucket_add(self, pos: int, count: int) -> None:
        bucket = self._buckets.get(count)
        if bucket is None:
            bucket = self._buckets[count] = []
            bisect.insort(self._counts, count)
        bisect.insort(bucket, pos)

    def _bucket_remove(self, pos: int, count: int) -> None:
        bucket = self._buckets[count]
        del bucket[bisect.bisect_left(bucket, pos)]
        if not bucket:
            del self._buckets[count]
            del self._counts[bisect.bisect_left(self._counts, count)]

    def update(self, pos: int, free_cores: int, free_memory: int) -> None:
        """Records a position's new free cores and memory (ignored for inactive positions).

        Args:
            pos: The position.
            free_cores: Its free core count now.
            free_memory: Its free memory now, in bytes.
        """
        if not self._active[pos]:
            return
        if self._free[pos] != free_cores:
            self._bucket_remove(pos, self._free[pos])
            self._bucket_add(pos, free_cores)
        self._free[pos] = free_cores
        self._memory[pos] = free_memory
        leaf = self._size + pos
        for cores, tree in self._trees.items():
            value = free_memory if free_cores >= cores else -1
            if tree[leaf] == value:
                continue
            tree[leaf] = value
            i = leaf // 2
            while i:
                best = max(tree[2 * i], tree[2 * i + 1])
                if tree[i] == best:
                    break
                tree[i] = best
                i //= 2

    def first_fit(self, cores: int, memory: int) -> int | None:
        """Returns the first active position with at least ``cores`` free cores and ``memory``.

        Args:
            cores: Free cores needed.
            memory: Free memory needed, in bytes.

        Returns:
            The lowest such position, or None.
        """
        tree = self._tree(cores)
        if tree[1] < memory or tree[1] < 0:
            return None
        i, size = 1, self._size
        while i < size:
            i = 2 * i if tree[2 * i] >= memory else 2 * i + 1
        return i - size

    def count_free_at_least(self, cores: int) -> int:
        """How many active positions have at least ``cores`` free cores (O(distinct counts))."""
        counts = self._counts
        return sum(len(self._buckets[c]) for c in counts[bisect.bisect_left(counts, cores) :])

    def count_short_of_memory(self, cores: int, memory: int) -> int:
        """How many active positions have ``cores`` free cores but less than ``memory`` free.

        Visits only the positions with enough free cores.
        """
        counts, mem = self._counts, self._memory
        return sum(
            1
            for c in counts[bisect.bisect_left(counts, cores) :]
            for pos in self._buckets[c]
            if mem[pos] < memory
        )

    def best_fit(self, cores: int, memory: int) -> int | None:
        """Returns the active position left with the fewest free cores after taking ``cores``.

        Args:
            cores: Free cores needed.
            memory: Free memory needed, in bytes.

        Returns:
            Among positions with enough cores and memory, one with the smallest free-core count,
            the lowest such position on ties; None if no position fits.
        """
        if self.first_fit(cores, memory) is None:  # O(log n) fast refusal: no full bucket scan
            return None
        counts = self._counts
        for k in range(bisect.bisect_left(counts, cores), len(counts)):
            for pos in self._buckets[counts[k]]:
                if self._memory[pos] >= memory:
                    return pos
        return None  # pragma: no cover - first_fit found a fitting position above
