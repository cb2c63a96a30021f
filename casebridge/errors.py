"""Errors of the case bridge.

CaseBridgeError
├── RoutingError      no routing row matches (the table lacks its required fallback row)
├── CaseStoreError    the case store cannot be opened or written
│   └── StoreUnavailableError   it cannot be reached right now (also a stream SinkUnavailableError:
│                          the engine retries the alarm instead of dropping it)
├── CaseNotFoundError      no case (or user) with that id
├── LifecycleError    an action the case's status does not allow (e.g. close a new case)
├── WebhookSecretError   a team webhook's secret file is empty (the service refuses to start)
└── SinkSetupError    a sink cannot be set up (its optional libraries are not installed)
"""

from __future__ import annotations

from stream.errors import SinkUnavailableError

__all__ = [
    "CaseBridgeError",
    "CaseNotFoundError",
    "CaseStoreError",
    "LifecycleError",
    "PhotoError",
    "RoutingError",
    "SinkSetupError",
    "StoreUnavailableError",
    "WebhookSecretError",
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


class PhotoError(CaseBridgeError, ValueError):
    """A photo is refused: not an image we take, too large, or the case has its fill of them.
    `status`: the HTTP answer that says so; `code`: which refusal it is."""

    def __init__(self, message: str, *, status: int = 422, code: str = "refused") -> None:
        super().__init__(message)
        self.status = status
        #: what went wrong, for a page to say in its language: `empty`, `not_image`,
        #: `too_many_pixels`, `too_many`
        self.code = code


class StoreUnavailableError(CaseStoreError, SinkUnavailableError):
    """The database cannot be reached or is busy; the same write may succeed later."""


class WebhookSecretError(CaseBridgeError, ValueError):
    """A team webhook's secret file is empty: a signature with an empty key proves nothing, so
    the service refuses to start."""


class SinkSetupError(CaseBridgeError, ValueError):
    """A configured sink cannot be set up here (e.g. the Dynamics sink without msal): the
    service refuses to start rather than run without mirroring."""
