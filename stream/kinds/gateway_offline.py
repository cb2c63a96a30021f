"""The gateway offline kind: `gateway_offline` for a gateway (not a sensor) when its status
says offline (its last will) or nothing has arrived from it for `after`. Its episode lives in
the gateway's own track, not in a sensor's states."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self

from pydantic import model_validator

from gateway.config import Duration
from gateway.config import format_duration as _duration
from gateway.models import Slug
from stream.kinds.base import Episode, RuleBase, RuleKind, episode_id, make_alarm
from stream.models import Alarm

__all__ = ["KIND", "GatewayOfflineRule", "gateway_back", "gateway_tick"]


class GatewayOfflineRule(RuleBase):
    """Raise `gateway_offline` (for the gateway, not a sensor) when its status says offline or
    nothing has arrived from it for `after`. Matches on `site` and `gateway` only."""

    condition: Literal["gateway_offline"]
    kind: Slug | None = None
    gateway: Slug | None = None
    after: Duration = 600.0

    @model_validator(mode="after")
    def _gateway_fields_only(self) -> Self:
        named = [f for f in ("building", "room", "tag", "kind", "sensor") if getattr(self, f)]
        if named:
            raise ValueError(
                f"a gateway_offline row matches on site and gateway only, not {', '.join(named)}"
            )
        return self


def gateway_tick(
    episode: Episode | None,
    rule: GatewayOfflineRule,
    now: datetime,
    *,
    site: str,
    gateway: str,
    contact: datetime | None,
    said_offline: datetime | None = None,
) -> tuple[Episode | None, list[Alarm]]:
    """Raise `gateway_offline` once: the gateway said so (its last will, at `said_offline`), or
    nothing has come from it since `contact` for longer than the rule allows."""
    if episode is not None or contact is None:
        return episode, []
    if said_offline is not None:
        since, reason = said_offline, "the gateway reported itself offline (last will)"
    elif (now - contact).total_seconds() > rule.after:
        since = contact
        reason = f"nothing from the gateway for {_duration((now - contact).total_seconds())}"
    else:
        return None, []
    episode = Episode(episode_id(rule, site, gateway, since), since, "warning", reason)
    return episode, [
        make_alarm(
            rule,
            "gateway_offline",
            episode,
            "raised",
            site=site,
            sensor=gateway,
            value=round((now - contact).total_seconds(), 1),
            threshold=rule.after,
            ts=now,
        )
    ]


def gateway_back(
    episode: Episode, rule: GatewayOfflineRule, now: datetime, *, site: str, gateway: str
) -> Alarm:
    """The `cleared` alarm when an offline gateway is heard from again."""
    return make_alarm(
        rule,
        "gateway_offline",
        episode,
        "cleared",
        site=site,
        sensor=gateway,
        value=round((now - episode.since).total_seconds(), 1),
        threshold=rule.after,
        ts=now,
    )


KIND = RuleKind(
    name="gateway_offline",
    row=GatewayOfflineRule,
    conditions={"gateway_offline": {"en": "Gateway offline", "sv": "Gateway ur drift"}},
    defaults=(GatewayOfflineRule(id="gateway-offline", condition="gateway_offline"),),
)
