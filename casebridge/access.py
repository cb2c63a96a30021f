"""Who may see and do what: the one place for roles, work lists, visibility and the actions a
case allows — used by the API, the pages and the live feed alike.

Roles: a technician reads and acts on their own teams' cases; dispatchers and admins on every
case; an integrator reads every case and acts on none. Work lists (one vocabulary, API and
pages): `mine` (assigned to me), `team` (my teams' cases), `team-members` (assigned to my
teammates) and `all` (every case I may see; the default for those who see everything).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from casebridge.config import TeamConfig
from casebridge.lifecycle import TRANSITIONS
from casebridge.models import Case, User

__all__ = ["STATUS_ACTIONS", "WORK_LISTS", "Access", "WorkList", "member_of", "status_actions"]

WorkList = Literal["mine", "team", "team-members", "all"]
WORK_LISTS: tuple[WorkList, ...] = ("mine", "team", "team-members", "all")
#: The status changes, in the order a case goes through them (buttons, API paths).
STATUS_ACTIONS: tuple[str, ...] = tuple(TRANSITIONS)


def status_actions(case: Case) -> list[str]:
    """The status changes the case's status allows (from the lifecycle's transitions)."""
    return [action for action, (allowed, _) in TRANSITIONS.items() if case.status in allowed]


def member_of(teams: Sequence[TeamConfig], team_id: str, user_id: str) -> bool:
    """Whether `user_id` is a member of the team `team_id` (cases are assigned within it)."""
    return any(t.id == team_id and user_id in t.members for t in teams)


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

    @property
    def may_see_sites(self) -> bool:
        """The site overview (every site's open cases and gateways) is for dispatchers."""
        return self.user.role in ("dispatcher", "admin")

    def may_remove_photo(self, case: Case, uploaded_by: str) -> bool:
        """Who took a photo may take it back; dispatchers and admins may remove any (a face or
        a name that should not be kept)."""
        if not self.can_act(case):
            return False
        return self.user.role in ("dispatcher", "admin") or uploaded_by == self.user.id

    @property
    def may_see_reports(self) -> bool:
        """Reports over every team's cases are for dispatchers and admins."""
        return self.user.role in ("dispatcher", "admin")

    @property
    def may_enter_readings(self) -> bool:
        """A meter read by hand: technicians (who read it on site), dispatchers and admins."""
        return self.user.role in ("technician", "dispatcher", "admin")

    @property
    def work_lists(self) -> tuple[WorkList, ...]:
        return WORK_LISTS if self.sees_everything else WORK_LISTS[:3]

    @property
    def default_list(self) -> WorkList:
        return "all" if self.sees_everything else "team"

    def narrowing(self, work_list: WorkList) -> dict[str, list[str]]:
        """A work list as case-store filter fields (`CaseFilter(**narrowing)`)."""
        return {
            "mine": {"assignees": [self.user.id]},
            "team": {"teams": list(self.teams)},
            "team-members": {"assignees": list(self.team_members)},
            "all": {},
        }[work_list]

    def in_list(self, work_list: WorkList, case: Case) -> bool:
        """`narrowing` for one case already read; and only cases the user may read."""
        if not self.can_read(case):
            return False
        return {
            "mine": case.assignee == self.user.id,
            "team": case.team in self.teams,
            "team-members": case.assignee in self.team_members,
            "all": True,
        }[work_list]
