"""The case service's one web application: the HTTP API (`api.py`, under /api/v1) and the web
pages (`web/`) mounted together, behind the request hardening (`hardening.py`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from fastapi import FastAPI

from casebridge import api
from casebridge.config import PhotoConfig, TeamConfig, WebConfig
from casebridge.hardening import MAX_BODY, BodyLimit, SecurityHeaders
from casebridge.store import CaseStore
from casebridge.uploads import UPLOAD_PATH, PhotoService
from casebridge.web.pages import WebDeps, mount_web
from gateway.clock import Clock
from gateway.config import SensorConfig, SiteConfig
from stream.conditions import Vocabulary

__all__ = ["create_app"]


def create_app(
    *,
    store: CaseStore,
    teams: Sequence[TeamConfig],
    clock: Clock,
    sites: Sequence[SiteConfig] = (),
    rule_state: Path | None = None,
    web: WebConfig | None = None,
    conditions: Vocabulary | None = None,
    sensors: Mapping[tuple[str, str], SensorConfig] | None = None,
    meters: Mapping[tuple[str, str], float | None] | None = None,
    photos: PhotoConfig | None = None,
) -> FastAPI:
    """The API on `store` and the web pages; team membership comes from the site config.
    OpenAPI at /docs. `rule_state`: the rule engine's state file, for gateways' last contact;
    `conditions`: what the config's conditions are called; `sensors`: the config's sensors by
    (site, id), `meters`: those a meter rule watches, with their counters' rollover; `photos`:
    the limits on photos attached to cases."""
    app = FastAPI(
        title="husvakt case API",
        version="1",
        description="Cases opened from building sensor alarms: work lists, timelines, actions.",
    )
    service = PhotoService.of(photos or PhotoConfig())
    app.state.husvakt_photos = service
    api.install(app, store=store, teams=teams, clock=clock)
    app.add_middleware(BodyLimit, limit=MAX_BODY, uploads=(UPLOAD_PATH, service.body_limit))
    app.add_middleware(SecurityHeaders)  # outermost: a refused body carries the headers too
    mount_web(
        app,
        WebDeps(
            store=store,
            teams=tuple(teams),
            sites=tuple(sites),
            clock=clock,
            rule_state=rule_state,
            web=web or WebConfig(),
            conditions=conditions or Vocabulary(),
            sensors=dict(sensors or {}),
            meters=dict(meters or {}),
        ),
    )
    return app
