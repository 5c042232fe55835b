"""The root of every exception swarmapply raises on purpose.

Two branches, as controllers need to tell them apart: a :class:`TemporaryError` may succeed
when retried (a store that is briefly unreachable, a lock held by another writer), a
:class:`PermanentError` will fail the same way until someone changes the input (an invalid
manifest, a name that is taken). Third-party exceptions are wrapped in one of these with the
original chained as ``__cause__``; nothing here swallows them.
"""

from __future__ import annotations


class SwarmapplyError(Exception):
    """Base class of all errors raised by swarmapply."""


class TemporaryError(SwarmapplyError):
    """An error that may go away when the operation is retried (with backoff)."""


class PermanentError(SwarmapplyError):
    """An error that retrying cannot fix; it must be reported to a person."""
