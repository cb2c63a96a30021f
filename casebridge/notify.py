"""Sending what the outbox holds (e-mail over SMTP, signed webhooks) and escalating cases
nobody acknowledged. Both are driven by `run_due(now)`, so tests step them on a virtual clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
import httpx

from casebridge.config import NotifyConfig, SmtpConfig, TeamConfig
from casebridge.models import Delivery
from casebridge.people import deliveries_for, escalation_target
from casebridge.store import CaseStore
from gateway.clock import Clock
from gateway.config import format_duration
from gateway.models import format_ts

__all__ = [
    "Channel",
    "DeliveryError",
    "Escalator",
    "Notifier",
    "SmtpChannel",
    "WebhookChannel",
    "post_signed",
    "retry_delay",
    "sign",
]

log = logging.getLogger("husvakt.casebridge.notify")


class DeliveryError(Exception):
    """A notification could not be delivered this time."""


class Channel(Protocol):
    async def send(self, delivery: Delivery) -> None:
        """Deliver or raise `DeliveryError`."""
        ...


def retry_delay(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min … capped at 1 h: a mail server that is down for the night does not
    get hammered, and one that blips is retried soon."""
    return timedelta(seconds=min(3600.0, 30.0 * 2 ** max(0, attempts - 1)))


class SmtpChannel:
    def __init__(self, config: SmtpConfig, *, password: str | None = None) -> None:
        self._config = config
        self._password = password

    async def send(self, delivery: Delivery) -> None:
        message = EmailMessage()
        message["From"] = self._config.sender
        message["To"] = delivery.recipient
        message["Subject"] = delivery.subject
        message.set_content(delivery.body)
        try:
            await aiosmtplib.send(
                message,
                hostname=self._config.host,
                port=self._config.port,
                username=self._config.username,
                password=self._password,
                start_tls=self._config.starttls,
                timeout=self._config.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self._config.host}:{self._config.port}: {exc}") from exc


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """`sha256=` HMAC of `timestamp.body`, as the X-Husvakt-Signature header carries it."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookChannel:
    """POSTs the JSON body with `X-Husvakt-Delivery` (the same id on every retry of one
    notification: a receiver drops repeats), `X-Husvakt-Timestamp` and `X-Husvakt-Signature`
    (HMAC-SHA256 of `timestamp.body`; a receiver refuses timestamps more than 5 minutes off)."""

    def __init__(
        self, *, secrets: Mapping[str, bytes], clock: Clock, timeout: float = 10.0
    ) -> None:
        self._secrets = dict(secrets)
        self._clock = clock
        self._timeout = timeout

    async def send(self, delivery: Delivery) -> None:
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                await post_signed(
                    client,
                    delivery.recipient,
                    delivery.body.encode(),
                    delivery_id=str(delivery.id),
                    secret=self._secrets.get(delivery.recipient),
                    now=self._clock.now(),
                )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {delivery.recipient}: {exc!r}") from exc


async def post_signed(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    *,
    delivery_id: str,
    secret: bytes | None,
    now: datetime,
) -> None:
    """POST `body` (JSON) with husvakt's delivery id, timestamp and signature headers; raise
    `DeliveryError` when the receiver does not take it (anything but 2xx)."""
    timestamp = format_ts(now)
    headers = {
        "Content-Type": "application/json",
        "X-Husvakt-Delivery": delivery_id,
        "X-Husvakt-Timestamp": timestamp,
    }
    if secret is not None:
        headers["X-Husvakt-Signature"] = sign(secret, timestamp, body)
    # Only the status matters: the answer's body is never read, so a receiver that sends an
    # endless one costs nothing.
    async with client.stream("POST", url, content=body, headers=headers) as response:
        status = response.status_code
    if status >= 300:
        raise DeliveryError(f"webhook {url}: HTTP {status}")


class Notifier:
    """Sends due deliveries; a failure is recorded on the case and retried with backoff. A
    sending problem never blocks or loses a case: the case was committed before."""

    def __init__(self, *, store: CaseStore, channels: Mapping[str, Channel]) -> None:
        self._store = store
        self._channels = dict(channels)
        #: attempts by (channel, sent | failed), for the metrics
        self.counts: Counter[tuple[str, str]] = Counter()

    async def run_due(self, now: datetime) -> int:
        sent = 0
        for delivery in await self._store.due_deliveries(now):
            channel = self._channels.get(delivery.channel)
            error: str | None = None
            if channel is None:
                error = f"no {delivery.channel} channel configured"
            else:
                try:
                    await channel.send(delivery)
                except DeliveryError as exc:
                    error = str(exc)
            retry_at = now + retry_delay(delivery.attempts + 1) if error else None
            self.counts[(delivery.channel, "failed" if error else "sent")] += 1
            if error:
                log.warning("%s for %s: %s", delivery.channel, delivery.case_id, error)
            else:
                sent += 1
            await self._store.delivery_result(delivery, error=error, now=now, retry_at=retry_at)
        return sent


class Escalator:
    """Notifies the next person in the team's chain when nobody acknowledged in time."""

    def __init__(
        self, *, store: CaseStore, teams: Sequence[TeamConfig], notify: NotifyConfig
    ) -> None:
        self._store = store
        self._teams = {t.id: t for t in teams}
        self._notify = notify

    async def run_due(self, now: datetime) -> int:
        escalated = 0
        for case in await self._store.due_escalations(now):
            team = self._teams.get(case.team)
            level = case.escalation_level + 1
            target = escalation_target(team, level) if team else None
            if team is None or target is None:
                await self._store.escalate(
                    case.id,
                    level=level,
                    next_at=None,
                    deliveries=(),
                    now=now,
                    text="nobody acknowledged and the escalation chain is exhausted",
                )
                continue
            user = await self._store.get_user(target)
            drafts = deliveries_for(
                case, user=user, team=team, notify=self._notify, reason=f"escalation-{level}"
            )
            next_at = now + timedelta(seconds=team.escalation.after)
            within = format_duration(team.escalation.after)
            text = f"not acknowledged within {within}: escalated to {target} (level {level})"
            if await self._store.escalate(
                case.id, level=level, next_at=next_at, deliveries=drafts, text=text, now=now
            ):
                escalated += 1
        return escalated


async def run_notifications(
    *, notifier: Notifier, escalator: Escalator, clock: Clock, every: float, stop: asyncio.Event
) -> None:
    """Escalate and send what is due every `every` seconds until `stop` is set."""
    while not stop.is_set():
        now = clock.now()
        await escalator.run_due(now)
        await notifier.run_due(now)
        await clock.sleep(every)
