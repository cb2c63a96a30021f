"""Errors of the stream package.

    StreamError
    └── SinkUnavailableError  the alarm sink (the case store) cannot take alarms right now: the
                         engine retries without end, since dropping the alarm would lose a case

Contradicting rule rows are configuration problems (reported with file and line when loading).

Bad readings are not errors here: the engine counts and skips them.
"""

from __future__ import annotations

__all__ = ["SinkUnavailableError", "StreamError"]


class StreamError(Exception):
    """Base of everything the stream package raises on purpose."""


class SinkUnavailableError(StreamError):
    """The alarm sink is down (database unreachable, locked); try the same alarm again later.
    Any other exception from a sink means this one alarm cannot be recorded."""
