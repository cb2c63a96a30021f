"""Errors of the case bridge.

CaseBridgeError
├── RoutingError      no routing row matches (the table lacks its required fallback row)
└── CaseStoreError    the case store cannot be opened or written
"""

from __future__ import annotations

__all__ = ["CaseBridgeError", "CaseStoreError", "RoutingError"]


class CaseBridgeError(Exception):
    """Base of everything the case bridge raises on purpose."""


class RoutingError(CaseBridgeError):
    """No routing row matched."""


class CaseStoreError(CaseBridgeError):
    """The case store failed."""
