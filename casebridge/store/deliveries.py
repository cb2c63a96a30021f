"""The case store's notification outbox and escalation: deliveries queued in the same
transaction as the case change that caused them, retried with backoff, and cases escalated
when nobody acknowledges."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from casebridge.models import (
    UNACKNOWLEDGED,
    Case,
    Delivery,
    DeliveryDraft,
    format_case_id,
    parse_case_id,
)
from casebridge.store.rows import (
    case_from_row,
    delivery_values,
)
from casebridge.store.schema import (
    case_events,
    cases,
    deliveries,
)

__all__ = ["MAX_DELIVERY_ATTEMPTS", "DeliveryQueries"]

MAX_DELIVERY_ATTEMPTS = 8


class DeliveryQueries:
    """Deliveries and escalation (a part of `SqlCaseStore`)."""

    _engine: AsyncEngine

    @staticmethod
    async def _queue(
        conn: AsyncConnection, number: int, drafts: Sequence[DeliveryDraft], now: datetime
    ) -> None:
        if drafts:
            await conn.execute(
                insert(deliveries), [delivery_values(number, d, now) for d in drafts]
            )

    async def due_deliveries(self, now: datetime, *, limit: int = 50) -> list[Delivery]:
        query = (
            select(deliveries, cases.c.opened_at)
            .join(cases, cases.c.number == deliveries.c.case_number)
            .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now)
            .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [
                Delivery(
                    id=r.id,
                    case_id=format_case_id(r.opened_at.year, r.case_number),
                    channel=r.channel,
                    recipient=r.recipient,
                    subject=r.subject,
                    body=r.body,
                    reason=r.reason,
                    status=r.status,
                    attempts=r.attempts,
                    next_attempt_at=r.next_attempt_at,
                )
                for r in await conn.execute(query)
            ]

    async def delivery_result(
        self, delivery: Delivery, *, error: str | None, now: datetime, retry_at: datetime | None
    ) -> None:
        attempts = delivery.attempts + 1
        if error is None:
            status, kind, text = (
                "sent",
                "notification_sent",
                f"{delivery.channel} sent to {delivery.recipient}",
            )
        elif retry_at is not None and attempts < MAX_DELIVERY_ATTEMPTS:
            status, kind = "pending", "notification_failed"
            text = f"{delivery.channel} to {delivery.recipient} failed ({error}); retrying"
        else:
            status, kind = "failed", "notification_failed"
            text = f"{delivery.channel} to {delivery.recipient} failed ({error}); gave up"
        number = parse_case_id(delivery.case_id)
        assert number is not None, "deliveries carry well-formed case ids"
        async with self._engine.begin() as conn:
            changed = await conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery.id, deliveries.c.attempts == delivery.attempts)
                .values(
                    status=status,
                    attempts=attempts,
                    last_error=error,
                    next_attempt_at=retry_at or now,
                )
            )
            if changed.rowcount == 1:
                await conn.execute(
                    insert(case_events).values(
                        case_number=number, at=now, kind=kind, actor="husvakt", text=text
                    )
                )

    async def next_due(self) -> datetime | None:
        """When the next delivery attempt or escalation falls due (None: none is pending)."""
        attempts = select(func.min(deliveries.c.next_attempt_at)).where(
            deliveries.c.status == "pending"
        )
        escalations = select(func.min(cases.c.next_escalation_at)).where(
            cases.c.status.in_(UNACKNOWLEDGED)
        )
        async with self._engine.connect() as conn:
            times = [await conn.scalar(attempts), await conn.scalar(escalations)]
        known = [t for t in times if t is not None]
        return min(known) if known else None

    async def due_escalations(self, now: datetime, *, limit: int = 50) -> list[Case]:
        query = (
            select(cases)
            .where(cases.c.status.in_(UNACKNOWLEDGED), cases.c.next_escalation_at <= now)
            .order_by(cases.c.next_escalation_at)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [case_from_row(r) for r in await conn.execute(query)]

    async def escalate(
        self,
        case_id: str,
        *,
        level: int,
        next_at: datetime | None,
        deliveries: Sequence[DeliveryDraft],
        text: str,
        now: datetime,
    ) -> bool:
        number = parse_case_id(case_id)
        async with self._engine.begin() as conn:
            changed = await conn.execute(
                update(cases)
                .where(
                    cases.c.number == number,
                    cases.c.status.in_(UNACKNOWLEDGED),
                    cases.c.escalation_level == level - 1,
                )
                .values(
                    escalation_level=level,
                    next_escalation_at=next_at,
                    updated_at=now,
                    version=cases.c.version + 1,
                )
            )
            if changed.rowcount != 1:
                return False
            assert number is not None
            await conn.execute(
                insert(case_events).values(
                    case_number=number, at=now, kind="escalated", actor="husvakt", text=text
                )
            )
            await self._queue(conn, number, deliveries, now)
            return True
