"""WorkQueue: de-duplication, exclusive processing, delays, backoff, rate limit, shutdown."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from swarmapply.controllers.workqueue import (
    TokenBucket,
    WorkQueue,
    exponential_backoff,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def drain(q: WorkQueue) -> list[str]:
    keys = []
    while (key := q.get(timeout=0)) is not None:
        keys.append(key)
        q.done(key)
    return keys


def test_add_deduplicates_waiting_keys_and_keeps_fifo_order() -> None:
    q = WorkQueue()
    for key in ["a", "b", "a", "c", "b", "a"]:
        q.add(key)
    assert len(q) == 3
    assert drain(q) == ["a", "b", "c"]
    assert len(q) == 0
    assert q.idle()


def test_key_added_while_processing_is_requeued_once_after_done() -> None:
    q = WorkQueue()
    q.add("a")
    assert q.get(timeout=0) == "a"
    q.add("a")
    q.add("a")
    assert len(q) == 0  # not handed to another worker while processing
    assert q.get(timeout=0) is None
    q.done("a")
    assert len(q) == 1
    assert q.get(timeout=0) == "a"
    q.done("a")
    assert q.get(timeout=0) is None


def test_one_key_is_never_processed_by_two_workers_at_once() -> None:
    q = WorkQueue()
    active: dict[str, int] = {}
    overlap = []
    processed = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker() -> None:
        while (key := q.get(timeout=None)) is not None:
            with lock:
                active[key] = active.get(key, 0) + 1
                if active[key] > 1:
                    overlap.append(key)
            time.sleep(0.0005)
            with lock:
                active[key] -= 1
                processed.append(key)
            q.done(key)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for i in range(2000):
        q.add(f"k{i % 5}")
    deadline = time.monotonic() + 5
    while not q.idle() and time.monotonic() < deadline:
        time.sleep(0.001)
    stop.set()
    q.shutdown()
    for t in threads:
        t.join(2)
    assert not overlap
    assert q.idle()
    assert set(processed) == {f"k{i}" for i in range(5)}


def test_add_after_waits_for_the_clock_and_earliest_time_wins() -> None:
    clock = FakeClock()
    q = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add_after("a", 5)
    q.add_after("a", 20)  # later than pending: ignored
    assert q.delayed == 1
    assert q.get(timeout=0) is None
    clock.advance(4.9)
    assert q.get(timeout=0) is None
    clock.advance(0.2)
    assert q.get(timeout=0) == "a"
    q.done("a")
    clock.advance(100)
    assert q.get(timeout=0) is None  # the superseded times do not add it again
    q.add_after("b", 0)
    assert q.get(timeout=0) == "b"


def test_add_after_wakes_a_blocked_getter_in_real_time() -> None:
    q = WorkQueue()
    result: list[str | None] = []
    t = threading.Thread(target=lambda: result.append(q.get(timeout=5)))
    t.start()
    q.add_after("a", 0.02)
    t.join(2)
    assert result == ["a"]


def test_backoff_doubles_from_5ms_to_a_60s_cap() -> None:
    delay = exponential_backoff()
    assert [delay(n) for n in range(1, 6)] == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert delay(14) == pytest.approx(40.96)
    assert delay(15) == 60.0
    assert delay(10_000) == 60.0


def test_add_rate_limited_grows_per_key_and_forget_resets() -> None:
    clock = FakeClock()
    q = WorkQueue(clock=clock)
    delays = [q.add_rate_limited("a") for _ in range(20)]
    assert delays[:4] == pytest.approx([0.005, 0.01, 0.02, 0.04])
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert delays[-1] == 60.0
    assert q.num_requeues("a") == 20
    assert q.add_rate_limited("b") == pytest.approx(0.005)  # per key
    q.forget("a")
    assert q.num_requeues("a") == 0
    assert q.add_rate_limited("a") == pytest.approx(0.005)


def test_rate_limited_key_becomes_ready_after_its_backoff() -> None:
    clock = FakeClock()
    q = WorkQueue(clock=clock)
    q.add_rate_limited("a")
    q.add_rate_limited("a")  # 10 ms; the 5 ms entry is earlier and wins
    assert q.get(timeout=0) is None
    clock.advance(0.005)
    assert q.get(timeout=0) == "a"


def test_global_token_bucket_limits_rate_limited_adds() -> None:
    clock = FakeClock()
    q = WorkQueue(clock=clock, rate=50, burst=100)
    delays = [q.add_rate_limited(f"k{i}") for i in range(110)]
    assert delays[:100] == pytest.approx([0.005] * 100)  # burst: only the per-key backoff
    assert delays[100:] == pytest.approx([(i + 1) / 50 for i in range(10)])
    clock.advance(10)  # the bucket refills
    assert q.add_rate_limited("fresh") == pytest.approx(0.005)


def test_token_bucket_refills_at_its_rate_up_to_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=2, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0, 0, 0.1])
    clock.advance(0.35)
    assert bucket.reserve() == 0  # 1 token was owed, 3.5 refilled, capped at burst
    assert bucket.reserve() == 0
    assert bucket.reserve() == pytest.approx(0.1)
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1, clock=clock)


def test_shutdown_wakes_all_getters_and_stops_handing_out_keys() -> None:
    q = WorkQueue()
    results: list[str | None] = []
    lock = threading.Lock()

    def getter() -> None:
        key = q.get(timeout=None)
        with lock:
            results.append(key)

    threads = [threading.Thread(target=getter) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.02)  # let them block (not needed for correctness)
    started = time.monotonic()
    q.shutdown()
    for t in threads:
        t.join(1)
    assert all(not t.is_alive() for t in threads)
    assert results == [None] * 4
    assert time.monotonic() - started < 1
    q.add("a")
    assert len(q) == 0
    assert q.get(timeout=0) is None
    assert q.is_shutdown


def test_get_times_out() -> None:
    q = WorkQueue()
    started = time.monotonic()
    assert q.get(timeout=0.02) is None
    assert time.monotonic() - started >= 0.02
