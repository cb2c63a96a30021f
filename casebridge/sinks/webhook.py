"""Every case event as a signed JSON POST, in order per case: a change feed for any system
that takes webhooks (TOPdesk, ServiceNow, a team's own service).

The body is `{"sink", "case", "event", "version"}`; `X-Husvakt-Delivery` is
`<sink>/<case id>/<event cursor>`, the same on every retry, so a receiver drops repeats.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import httpx

from casebridge.models import CaseEvent
from casebridge.notify import DeliveryError, post_signed
from casebridge.sinks import Failed, Mirrored, MirrorJob, Report, SinkDownError
from gateway.clock import Clock

__all__ = ["WebhookSink"]


class WebhookSink:
    def __init__(
        self,
        *,
        id: str,
        url: str,
        secret: bytes | None,
        clock: Clock,
        timeout: float = 10.0,
    ) -> None:
        self.id = id
        self._url = url
        self._secret = secret
        self._clock = clock
        self._timeout = timeout

    def body(self, job: MirrorJob, event: CaseEvent | None) -> bytes:
        payload = {
            "sink": self.id,
            "case": job.task.case.model_dump(mode="json"),
            "event": event.model_dump(mode="json") if event is not None else None,
            "version": job.task.version,
        }
        return json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()

    async def aclose(self) -> None:
        """Nothing is held between rounds."""

    async def mirror(self, jobs: Sequence[MirrorJob], report: Report) -> None:
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            for job in jobs:
                await self._one(client, job, report)

    async def _one(self, client: httpx.AsyncClient, job: MirrorJob, report: Report) -> None:
        case = job.task.case
        sent: int | None = None
        # a change without a new event (rare) still goes out, as the case's new version
        items: Sequence[CaseEvent | None] = job.events or (None,)
        for event in items:
            tag = str(event.cursor) if event is not None else f"v{job.task.version}"
            try:
                await post_signed(
                    client,
                    self._url,
                    self.body(job, event),
                    delivery_id=f"{self.id}/{case.id}/{tag}",
                    secret=self._secret,
                    now=self._clock.now(),
                )
            except httpx.HTTPError as exc:
                if sent is not None:
                    await report(job, Failed(f"{exc!r}", event=sent))
                raise SinkDownError(f"webhook {self._url}: {exc!r}") from exc
            except DeliveryError as exc:
                await report(job, Failed(str(exc), event=sent))
                return
            if event is not None:
                sent = event.cursor
        await report(job, Mirrored())
