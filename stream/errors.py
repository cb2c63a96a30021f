"""Errors of the stream package.

    StreamError
    └── RuleTableError   rule rows that contradict each other (raised by the table builder)

Bad readings are not errors here: the engine counts and skips them.
"""

from __future__ import annotations

__all__ = ["RuleTableError", "StreamError"]


class StreamError(Exception):
    """Base of everything the stream package raises on purpose."""


class RuleTableError(StreamError):
    """Two rows equally specific for the same sensor and condition, or similar contradictions."""
