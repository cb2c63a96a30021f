"""Errors of the stream package.

    StreamError
    ├── RuleTableError   rule rows that contradict each other (raised by the table builder)
    └── SinkUnavailableError  the alarm sink (the case store) cannot take alarms right now: the
                         engine retries without end, since dropping the alarm would lose a case

Bad readings are not errors here: the engine counts and skips them.
"""

from __future__ import annotations

__all__ = ["RuleTableError", "SinkUnavailableError", "StreamError"]


class StreamError(Exception):
    """Base of everything the stream package raises on purpose."""


class RuleTableError(StreamError):
    """Two rows equally specific for the same sensor and condition, or similar contradictions."""


class SinkUnavailableError(StreamError):
    """The alarm sink is down (database unreachable, locked); try the same alarm again later.
    Any other exception from a sink means this one alarm cannot be recorded."""
