"""Errors of the case bridge.

CaseBridgeError
├── RoutingError      no routing row matches (the table lacks its required fallback row)
├── CaseStoreError    the case store cannot be opened or written
├── CaseNotFoundError      no case (or user) with that id
└── LifecycleError    an action the case's status does not allow (e.g. close a new case)
"""

from __future__ import annotations

__all__ = [
    "CaseBridgeError",
    "CaseNotFoundError",
    "CaseStoreError",
    "LifecycleError",
    "RoutingError",
]


class CaseBridgeError(Exception):
    """Base of everything the case bridge raises on purpose."""


class RoutingError(CaseBridgeError):
    """No routing row matched."""


class CaseStoreError(CaseBridgeError):
    """The case store failed."""


class CaseNotFoundError(CaseBridgeError):
    """No such case or user."""


class LifecycleError(CaseBridgeError):
    """The action is not allowed in the case's current status."""
