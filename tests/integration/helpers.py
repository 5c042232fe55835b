"""Shared helpers of the integration tests: polling, controllers on threads, real processes.

Polling: :func:`wait_for` waits for a predicate to hold, :func:`seconds_until` also says how
long that took, :func:`eventually` waits for a check that asserts. Each fails the test with an
AssertionError naming what it waited for; none sleeps longer than its polling interval.

Processes: :class:`ControllersProcess` writes the child's stdout and stderr to a log file, never
to a pipe (a pipe that nobody reads fills up and blocks the child); :class:`Fleet` starts them
and, whatever happens in the test, kills and reaps every one it started, by its own pid.

These helpers hold no state between tests and start nothing by themselves.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from swarmapply.controllers.runtime import Controller

T = TypeVar("T")


# -------------------------------------------------------------------------------- polling


def wait_for(
    condition: Callable[[], Any], timeout: float = 10.0, what: str = "", *, interval: float = 0.01
) -> Any:
    """Polls ``condition`` until it returns a truthy value, and returns that value.

    (Typed ``Any``: a condition like ``len(x) == 2 and x`` returns ``False`` or ``x``, and the
    result is never the ``False``.)

    Args:
        condition: What to wait for; called every ``interval`` seconds.
        timeout: Seconds to wait at most.
        what: Names what is awaited in the failure message (default: the condition itself).
        interval: Seconds between calls.

    Raises:
        AssertionError: ``condition`` was not truthy within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or condition}")
        time.sleep(interval)


def seconds_until(
    condition: Callable[[], object],
    timeout: float = 10.0,
    what: str = "",
    *,
    interval: float = 0.01,
) -> float:
    """Like :func:`wait_for`, but returns the seconds it took ``condition`` to hold."""
    started = time.monotonic()
    wait_for(condition, timeout, what, interval=interval)
    return time.monotonic() - started


def eventually(check: Callable[[], T], timeout: float, what: str, *, interval: float = 0.05) -> T:
    """Polls ``check`` until it passes; returns its last result.

    ``check`` passes when it returns anything but ``False`` without raising AssertionError
    (so both predicates and functions that assert work).

    Raises:
        AssertionError: ``check`` did not pass within ``timeout`` seconds; the message names
            ``what`` and the last assertion message.
    """
    deadline = time.monotonic() + timeout
    last = "it returned False"
    while True:
        try:
            result = check()
            if result is not False:
                return result
        except AssertionError as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}: {last}")
        time.sleep(interval)


# ---------------------------------------------------------------------- controllers in-process


@contextlib.contextmanager
def in_thread(
    run: Callable[[threading.Event], None], what: str, timeout: float = 10.0
) -> Iterator[None]:
    """Runs ``run(stop)`` on a thread for the length of a ``with`` block.

    Leaving sets ``stop`` and asserts that ``run`` returned within ``timeout`` seconds.
    """
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout)
        assert not thread.is_alive(), f"{what} did not return within {timeout:g} s of stop"


class Running:
    """A controller running on a thread, for the length of a ``with`` block.

    Entering starts ``controller.run`` and waits until the controller has started (its caches
    are filled); leaving stops it and asserts that its thread ended.
    """

    def __init__(self, controller: Controller, timeout: float = 10.0) -> None:
        """Prepares the thread; ``timeout`` bounds both the start and the stop, in seconds."""
        self.controller = controller
        self.timeout = timeout
        self.stop = threading.Event()
        self.thread = threading.Thread(target=controller.run, args=(self.stop,))

    def __enter__(self) -> Controller:
        self.thread.start()
        assert self.controller.wait_started(self.timeout)
        return self.controller

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(self.timeout)
        assert not self.thread.is_alive()


# ------------------------------------------------------------------------------ processes


class ControllersProcess:
    """One ``swarmapply controllers`` subprocess, its stdout and stderr going to a log file."""

    def __init__(
        self, log: Path, args: Sequence[str], env: Mapping[str, str] | None = None
    ) -> None:
        """Starts ``python -m swarmapply controllers ARGS``.

        Args:
            log: The file that receives the child's output (created or truncated).
            args: The command's arguments.
            env: The child's environment; None inherits this process's.
        """
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "swarmapply", "controllers", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        """Everything the process has written so far."""
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL (no cleanup, no Lease release) and reap."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Sends ``sig`` and reaps the process; returns its exit status.

        Raises:
            AssertionError: It did not exit within ``timeout`` seconds (it is then killed); the
                message holds its output.
        """
        if self.alive():
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"pid {self.pid} did not exit within {timeout:g}s of "
                f"{signal.Signals(sig).name}:\n{self.output()}"
            ) from None


class Fleet:
    """Starts controller processes; on exit kills and reaps every one still running.

    When the ``with`` block fails, the output of every process is written to stderr.
    """

    def __init__(
        self, directory: Path, *options: str, env: Mapping[str, str] | None = None
    ) -> None:
        """Every process gets ``options`` and ``env``; logs go to ``directory``."""
        self.directory = directory
        self.options = options
        self.env = env
        self.started: list[ControllersProcess] = []

    def start(self, *more: str) -> ControllersProcess:
        """Starts one process with the fleet's options followed by ``more``."""
        log = self.directory / f"controllers-{len(self.started)}.log"
        process = ControllersProcess(log, [*self.options, *more], self.env)
        self.started.append(process)
        return process

    def logs(self) -> str:
        """The output of every process started, each under a header naming its log and pid."""
        return "\n".join(f"--- {p.log.name} (pid {p.pid})\n{p.output()}" for p in self.started)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for process in self.started:
            if process.alive():
                process.kill()
        if exc is not None:
            sys.stderr.write(self.logs())
