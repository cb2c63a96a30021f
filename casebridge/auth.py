"""Secrets of sign-in: API tokens, session values, password hashes, CSRF tokens. Pure apart from
their generation. Who may see and do what is `casebridge.access`."""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = [
    "csrf_token",
    "hash_password",
    "hash_token",
    "new_token",
    "verify_password",
    "verify_sign_in",
]

TOKEN_PREFIX = "hv_"  # noqa: S105 - a prefix that makes leaked tokens recognisable, not a secret


def new_token() -> str:
    """A random bearer token (shown once; only its hash is stored)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 suffices: tokens are 256 random bits, not passwords a person chose."""
    return hashlib.sha256(token.encode()).hexdigest()


_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    """scrypt with a random salt, as `scrypt$n$r$p$salt$hash` (hex)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    n, r, p = _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches `stored` (constant time; False without a password set)."""
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), dklen=32, n=int(n), r=int(r), p=int(p)
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


#: What a sign-in of an unknown user is checked against, so that it costs what a known user's
#: does (a quick "no" would tell an attacker which user ids exist).
_NOBODY = "scrypt$16384$8$1$" + "00" * 16 + "$" + "00" * 32


def verify_sign_in(password: str, stored: str | None) -> bool:
    """`verify_password`, with the same work whether or not the user exists or has a password
    (run it off the event loop: scrypt takes tens of milliseconds on purpose)."""
    if not stored:
        verify_password(password, _NOBODY)
        return False
    return verify_password(password, stored)


def csrf_token(session_token: str) -> str:
    """The token a signed-in page's forms carry: derived from the session (which the cookie
    holds and another site cannot read), so a forged cross-site form cannot know it."""
    return hashlib.sha256(b"csrf:" + session_token.encode()).hexdigest()[:32]
