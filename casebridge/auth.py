"""Bearer tokens and who may see and do what. Pure apart from token generation."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence

from casebridge.config import TeamConfig
from casebridge.models import Case, User

__all__ = [
    "Access",
    "csrf_token",
    "hash_password",
    "hash_token",
    "member_of",
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


def member_of(teams: Sequence[TeamConfig], team_id: str, user_id: str) -> bool:
    """Whether `user_id` is a member of the team `team_id` (cases are assigned within it)."""
    return any(t.id == team_id and user_id in t.members for t in teams)


def csrf_token(session_token: str) -> str:
    """The token a signed-in page's forms carry: derived from the session (which the cookie
    holds and another site cannot read), so a forged cross-site form cannot know it."""
    return hashlib.sha256(b"csrf:" + session_token.encode()).hexdigest()[:32]


class Access:
    """One user's view: their teams, and which cases they may read and act on.

    technician: reads and acts on their own teams' cases; dispatcher and admin: every case;
    integrator: reads every case, acts on none.
    """

    def __init__(self, user: User, teams: Sequence[TeamConfig]) -> None:
        self.user = user
        self.teams = tuple(t.id for t in teams if user.id in t.members)
        self.team_members = tuple(
            sorted({m for t in teams if t.id in self.teams for m in t.members} - {user.id})
        )

    @classmethod
    def of(cls, user: User, teams: Mapping[str, TeamConfig] | Sequence[TeamConfig]) -> Access:
        values = list(teams.values()) if isinstance(teams, Mapping) else list(teams)
        return cls(user, values)

    @property
    def sees_everything(self) -> bool:
        return self.user.role in ("dispatcher", "admin", "integrator")

    def can_read(self, case: Case) -> bool:
        return self.sees_everything or case.team in self.teams

    def can_act(self, case: Case) -> bool:
        if self.user.role == "integrator":
            return False
        return self.user.role in ("dispatcher", "admin") or case.team in self.teams
