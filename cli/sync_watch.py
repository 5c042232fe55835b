"""When ``swarmapply sync --watch`` runs a pass: file events, debounced, and a steady interval.

:class:`Debounce` (pure, the clock passed in) turns a burst of file events into one pass: a pass
is due once the directory has been quiet for ``quiet`` seconds, or ``longest`` seconds after the
first event of the burst, whichever comes first (so a ``git pull`` of many files, or an editor
writing a temporary file, then renaming it, is one pass, and a directory written to without
pause is still synced). :class:`DirectoryEvents` feeds it from watchdog's observer: created,
modified, moved and deleted manifests (and directories, which may hold manifests); reads
(opened, closed without writing) and hidden files or editor leftovers do not count, so a pass
reading the files never triggers the next one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from swarmapply.api.admission import is_manifest_name

#: Seconds without file events after which a burst is over.
QUIET = 0.3
#: Seconds after a burst's first event at which a pass runs anyway.
LONGEST = 2.0
#: The kinds of file events that can change what the directory says.
CHANGES = frozenset({"created", "modified", "moved", "deleted"})


class Debounce:
    """A burst of events, and when the pass it asks for is due."""

    def __init__(self, quiet: float = QUIET, longest: float = LONGEST) -> None:
        self.quiet = quiet
        self.longest = longest
        self._first: float | None = None
        self._last = 0.0
        self.events = 0

    def note(self, now: float) -> None:
        """Record an event at ``now``."""
        if self._first is None:
            self._first = now
        self._last = now
        self.events += 1

    def due_at(self) -> float | None:
        """When the pass for the current burst is due; None when there is no burst."""
        if self._first is None:
            return None
        return min(self._last + self.quiet, self._first + self.longest)

    def take(self) -> int:
        """End the burst (its pass is starting); returns how many events it had."""
        events, self.events, self._first = self.events, 0, None
        return events


def relevant(event: FileSystemEvent) -> bool:
    """Whether a watchdog event can change what the directory's manifests say."""
    if event.event_type not in CHANGES:
        return False
    if event.is_directory:
        return event.event_type != "modified"  # a directory's mtime changes with any file
    paths = [event.src_path, getattr(event, "dest_path", "") or ""]
    return any(is_manifest_name(os.path.basename(os.fsdecode(p))) for p in paths if p)


class DirectoryEvents(FileSystemEventHandler):
    """Watches a directory tree and wakes the sync loop when its manifests change.

    Args:
        directory: The directory to watch (recursively).
        wake: Called (from the observer's thread) after each relevant event.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        directory: str,
        wake: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        debounce: Debounce | None = None,
    ) -> None:
        self.directory = directory
        self.debounce = debounce or Debounce()
        self._wake = wake
        self._clock = clock
        self._lock = threading.Lock()
        self._observer: Observer | None = None  # type: ignore[valid-type]

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not relevant(event):
            return
        with self._lock:
            self.debounce.note(self._clock())
        self._wake()

    def due_at(self) -> float | None:
        """When the next pass is due because of file events (None: no change seen)."""
        with self._lock:
            return self.debounce.due_at()

    def take(self) -> int:
        """Start the pass for the changes seen so far; returns how many events they were."""
        with self._lock:
            return self.debounce.take()

    def start(self) -> None:
        """Start watching (inotify on Linux; a polling observer elsewhere, as watchdog picks)."""
        observer = Observer()
        observer.schedule(self, self.directory, recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        """Stop watching and wait for the observer's thread."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)
            self._observer = None


__all__ = ["CHANGES", "LONGEST", "QUIET", "Debounce", "DirectoryEvents", "relevant"]
