"""A rate-limited, de-duplicating work queue of object keys for controller workers.

Modelled on client-go's workqueue. What it guarantees:

* A key waiting in the queue is held once, however often it is added.
* A key is handed to at most one worker at a time: adding a key while it is being processed
  marks it dirty, and it is queued again (once) when the worker calls :meth:`WorkQueue.done`.
* :meth:`WorkQueue.add_rate_limited` delays a key by its own exponential backoff (base 5 ms,
  doubling up to 60 s, computed with tenacity's ``wait_exponential``) and by a global token
  bucket (50 per second, burst 100), whichever is longer; :meth:`WorkQueue.forget` resets the
  key's backoff.
* After :meth:`WorkQueue.shutdown` every :meth:`WorkQueue.get` returns ``None`` at once (the
  queue hands out no further keys, even waiting ones) and adds are ignored.

What it does not guarantee: ordering beyond first-in first-out for keys that are ready, any
persistence (the queue is in memory; a restarted controller rebuilds it from a relist), or
fairness between keys whose delays end at the same instant. It performs no I/O; the clock is
injected so that delays can be tested without sleeping (a ``get`` timeout is measured in real
time, delays with the injected clock).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, wait_exponential
from tenacity.wait import wait_base

Clock = Callable[[], float]

DEFAULT_BASE_DELAY = 0.005
DEFAULT_MAX_DELAY = 60.0
DEFAULT_RATE = 50.0
DEFAULT_BURST = 100

_RETRYING = Retrying()


def strategy_delay(strategy: wait_base, attempt: int) -> float:
    """The delay a tenacity wait strategy gives before retry number ``attempt`` (1-based).

    Args:
        strategy: A tenacity wait strategy such as ``wait_exponential(...)``.
        attempt: How many attempts have failed so far (at least 1).

    Returns:
        The delay in seconds.
    """
    state = RetryCallState(retry_object=_RETRYING, fn=None, args=(), kwargs={})
    state.attempt_number = max(1, attempt)
    return float(strategy(state))


def exponential_backoff(
    base: float = DEFAULT_BASE_DELAY, cap: float = DEFAULT_MAX_DELAY
) -> Callable[[int], float]:
    """A pure function from failure count to delay: ``base * 2 ** (failures - 1)``, capped.

    Args:
        base: The delay after the first failure, in seconds.
        cap: The largest delay, in seconds.

    Returns:
        A function mapping the number of failures (>= 1) to a delay in seconds.
    """
    strategy = wait_exponential(multiplier=base, exp_base=2, min=0, max=cap)

    def delay(failures: int) -> float:
        return strategy_delay(strategy, failures)

    return delay


class TokenBucket:
    """A token bucket that reserves tokens ahead, as client-go's BucketRateLimiter.

    Each :meth:`reserve` takes one token and returns how long the caller must wait for it;
    tokens may be borrowed from the future, so waits grow linearly once the burst is spent.
    Not thread-safe by itself (the work queue calls it under its lock).
    """

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        """Create a full bucket.

        Args:
            rate: Tokens added per second (> 0).
            burst: Bucket capacity (>= 1).
            clock: Monotonic seconds.
        """
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def reserve(self) -> float:
        """Take one token; return the seconds until it is available (0 when at once)."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class WorkQueue:
    """A thread-safe queue of keys with de-duplication, delays and per-key backoff."""

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        backoff: Callable[[int], float] | None = None,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
    ) -> None:
        """Create an empty queue.

        Args:
            clock: Monotonic seconds used for delays and the token bucket.
            backoff: Failure count -> delay; defaults to 5 ms doubling to 60 s.
            rate: Global rate of :meth:`add_rate_limited`, per second.
            burst: Global burst of :meth:`add_rate_limited`.
        """
        self._clock = clock
        self._backoff = backoff or exponential_backoff()
        self._bucket = TokenBucket(rate, burst, clock)
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._delayed: dict[str, float] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._failures: dict[str, int] = {}
        self._shutdown = False

    def add(self, key: str) -> None:
        """Queue ``key`` unless it is already waiting (ignored after shutdown)."""
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: str) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # queued again by done()
        self._queue.append(key)
        self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        """Queue ``key`` once ``delay`` seconds have passed; the earliest pending time wins."""
        with self._cond:
            if self._shutdown:
                return
            if delay <= 0:
                self._add_locked(key)
                return
            when = self._clock() + delay
            current = self._delayed.get(key)
            if current is not None and current <= when:
                return
            self._delayed[key] = when
            self._seq += 1
            heapq.heappush(self._heap, (when, self._seq, key))
            self._cond.notify_all()  # a getter may need to wake earlier

    def add_rate_limited(self, key: str) -> float:
        """Queue ``key`` after its backoff and the global rate limit; return the delay."""
        with self._cond:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            delay = max(self._backoff(failures), self._bucket.reserve())
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        """Reset ``key``'s backoff (call after it was processed successfully)."""
        with self._cond:
            self._failures.pop(key, None)

    def num_requeues(self, key: str) -> int:
        """How many times ``key`` was rate-limited since it was last forgotten."""
        with self._cond:
            return self._failures.get(key, 0)

    def _promote_due_locked(self) -> float | None:
        """Move delayed keys that are due into the queue; return seconds to the next one."""
        now = self._clock()
        while self._heap:
            when, _, key = self._heap[0]
            if self._delayed.get(key) != when:
                heapq.heappop(self._heap)  # superseded by an earlier add_after
                continue
            if when > now:
                return when - now
            heapq.heappop(self._heap)
            del self._delayed[key]
            self._add_locked(key)
        return None

    def get(self, timeout: float | None = None) -> str | None:
        """Take the next ready key, waiting up to ``timeout`` seconds (forever when None).

        The caller must call :meth:`done` with the key when it has finished with it.

        Returns:
            The key, or None on timeout or after shutdown.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._shutdown:
                    return None
                next_due = self._promote_due_locked()
                if self._queue:
                    key = self._queue.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    return key
                wait = next_due
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._cond.wait(wait)

    def done(self, key: str) -> None:
        """Mark ``key`` processed; queue it again if it was added while being processed."""
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty and not self._shutdown:
                self._queue.append(key)
                self._cond.notify()

    def shutdown(self) -> None:
        """Stop handing out keys: wake every waiting :meth:`get`, which returns None."""
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    @property
    def is_shutdown(self) -> bool:
        """Whether :meth:`shutdown` was called."""
        with self._cond:
            return self._shutdown

    def __len__(self) -> int:
        """The number of keys ready to be taken (not counting delayed or in-process keys)."""
        with self._cond:
            return len(self._queue)

    @property
    def delayed(self) -> int:
        """The number of keys waiting for a delay to end."""
        with self._cond:
            return len(self._delayed)

    @property
    def processing(self) -> int:
        """The number of keys taken by workers and not yet done."""
        with self._cond:
            return len(self._processing)

    def idle(self) -> bool:
        """True when nothing is ready, delayed or being processed."""
        with self._cond:
            return not (self._queue or self._delayed or self._processing)


__all__ = [
    "DEFAULT_BASE_DELAY",
    "DEFAULT_BURST",
    "DEFAULT_MAX_DELAY",
    "DEFAULT_RATE",
    "Clock",
    "TokenBucket",
    "WorkQueue",
    "exponential_backoff",
    "strategy_delay",
]
