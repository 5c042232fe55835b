"""What a long-running command (``controllers``, ``agent``, ``up``) sets up while it serves.

:func:`serving` sends the ``swarmapply`` loggers to the command's standard error in a short
format and makes SIGTERM and SIGINT set the command's stop event (a second signal interrupts at
once), and undoes both when the command returns, so that running commands in-process (tests)
leaves nothing behind. Signal handlers can only be installed from the main thread; elsewhere
only the logging is set up.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from swarmapply.cli.context import Context

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
LOG_DATE_FORMAT = "%H:%M:%S"


@contextlib.contextmanager
def serving(
    ctx: Context, stop: threading.Event, level: int = logging.INFO
) -> Iterator[logging.Logger]:
    """Logging to ``ctx.stderr`` at ``level`` (DEBUG with ``--debug``) and signals setting ``stop``.

    Yields:
        The ``swarmapply`` logger.
    """
    logger = logging.getLogger("swarmapply")
    handler = logging.StreamHandler(ctx.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if ctx.debug else level)
    try:
        with _handle_signals(stop, logger):
            yield logger
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _handle_signals(stop: threading.Event, logger: logging.Logger) -> contextlib.ExitStack:
    undo = contextlib.ExitStack()
    if threading.current_thread() is not threading.main_thread():
        return undo

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        logger.warning(
            "%s received: stopping (send it again to exit at once)", signal.Signals(signum).name
        )
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        undo.callback(signal.signal, sig, signal.signal(sig, on_signal))
    return undo


__all__ = ["LOG_DATE_FORMAT", "LOG_FORMAT", "serving"]
