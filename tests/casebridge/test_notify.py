"""Notifications and escalation on a virtual clock, delivered to real SMTP and HTTP servers."""

import json
import threading
from datetime import timedelta
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from casebridge.bridge import CaseBridge
from casebridge.config import (
    EscalationConfig,
    NotifyConfig,
    OnCallConfig,
    RouteRow,
    SmtpConfig,
    TeamConfig,
    WebhookConfig,
)
from casebridge.models import User
from casebridge.notify import Escalator, Notifier, SmtpChannel, WebhookChannel, retry_delay, sign
from casebridge.store.sql import SqliteCaseStore
from husvakt.broker import free_port
from tests.factories import T0, ManualClock, make_alarm


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(
            (envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default))
        )
        return "250 OK"


class SmtpServer:
    """A real SMTP server (aiosmtpd) on a fixed loopback port that can go down and come back."""

    def __init__(self, inbox):
        self.inbox = inbox
        self.port = free_port()
        self.controller = None

    def start(self):
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp():
    inbox = Inbox()
    server = SmtpServer(inbox)
    server.start()
    try:
        yield server, inbox
    finally:
        server.stop()


class Hooks(BaseHTTPRequestHandler):
    received: list

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    received = []
    handler = type("H", (Hooks,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


SECRET = b"s3cret"


@pytest.fixture
async def world(tmp_path, smtp, webhook):
    controller, inbox = smtp
    url, received = webhook
    clock = ManualClock(T0)
    team = TeamConfig(
        id="fm",
        name="Facilities",
        members=("eva", "jonas", "boss"),
        on_call=OnCallConfig(
            rotation=("eva", "jonas"), shift=7 * 86400, start=T0 - timedelta(days=1)
        ),
        escalation=EscalationConfig(after=900, chain=("jonas", "boss")),
        webhook=WebhookConfig(url=url),
    )
    notify = NotifyConfig(
        smtp=SmtpConfig(host="127.0.0.1", port=controller.port, sender="husvakt@school.example"),
        base_url="https://husvakt.example",
    )
    store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
    for uid in ("eva", "jonas", "boss"):
        await store.add_user(User(id=uid, name=uid.title(), email=f"{uid}@school.example"), now=T0)
    bridge = CaseBridge(
        store=store,
        sites=(),
        sensors={},
        routes=(RouteRow(id="all", team="fm", priority="P1"),),
        clock=clock,
        teams=(team,),
        notify=notify,
    )
    channels = {
        "email": SmtpChannel(notify.smtp),
        "webhook": WebhookChannel(secrets={url: SECRET}, clock=clock),
    }
    notifier = Notifier(store=store, channels=channels)
    escalator = Escalator(store=store, teams=(team,), notify=notify)
    yield clock, store, bridge, notifier, escalator, inbox, received
    await store.aclose()


@pytest.mark.smtp
async def test_the_on_call_person_is_mailed_and_the_team_webhook_called(world):
    clock, store, bridge, notifier, _, inbox, hooks = world
    case = (await bridge.handle(make_alarm())).case
    (queued,) = [d for d in await store.due_deliveries(clock.now()) if d.channel == "webhook"]
    assert await notifier.run_due(clock.now()) == 2
    ((to, mail),) = inbox.messages
    assert to == ["eva@school.example"]
    assert mail["Subject"] == f"[husvakt P1] {case.draft.title} — {case.id}"
    assert f"https://husvakt.example/cases/{case.id}" in mail.get_content()
    ((headers, body),) = hooks
    assert headers["X-Husvakt-Signature"] == sign(SECRET, headers["X-Husvakt-Timestamp"], body)
    assert headers["X-Husvakt-Delivery"] == str(queued.id)  # a retry would carry it again
    payload = json.loads(body)
    assert (payload["event"], payload["case"]["id"], payload["notify"]) == (
        "opened",
        case.id,
        "eva",
    )
    kinds = [e.kind for e in await store.timeline(case.id)]
    assert kinds.count("notification_sent") == 2
    assert await notifier.run_due(clock.now()) == 0  # nothing sent twice


@pytest.mark.smtp
async def test_nobody_acknowledging_escalates_along_the_chain_until_someone_does(world):
    clock, store, bridge, notifier, escalator, inbox, _ = world
    case = (await bridge.handle(make_alarm())).case
    await notifier.run_due(clock.now())
    clock.advance(minutes=14, seconds=59)
    assert await escalator.run_due(clock.now()) == 0
    clock.advance(seconds=1)
    assert await escalator.run_due(clock.now()) == 1
    await notifier.run_due(clock.now())
    assert [m[0] for m in inbox.messages] == [["eva@school.example"], ["jonas@school.example"]]
    assert inbox.messages[-1][1]["Subject"].startswith("[husvakt P1] ESCALATED: ")
    await store.act(case.id, "acknowledge", actor="jonas", now=clock.now())
    clock.advance(hours=2)
    assert await escalator.run_due(clock.now()) == 0
    await notifier.run_due(clock.now())
    assert len(inbox.messages) == 2  # boss never disturbed
    timeline = [(e.kind, e.text) for e in await store.timeline(case.id)]
    assert ("escalated", "not acknowledged within 15 min: escalated to jonas (level 1)") in timeline


@pytest.mark.smtp
async def test_the_chain_runs_out_after_the_last_person(world):
    clock, store, bridge, notifier, escalator, inbox, _ = world
    case = (await bridge.handle(make_alarm())).case
    for _ in range(4):
        await escalator.run_due(clock.now())
        await notifier.run_due(clock.now())
        clock.advance(minutes=15)
    assert [m[0][0] for m in inbox.messages] == [
        "eva@school.example",
        "jonas@school.example",
        "boss@school.example",
    ]
    assert [e.text for e in await store.timeline(case.id) if e.kind == "escalated"][-1] == (
        "nobody acknowledged and the escalation chain is exhausted"
    )


@pytest.mark.smtp
async def test_a_mail_server_that_is_down_delays_mail_but_never_the_case(world, smtp):
    clock, store, bridge, notifier, _, inbox, _ = world
    controller, _ = smtp
    controller.stop()
    case = (await bridge.handle(make_alarm())).case
    assert case.status == "new"  # the case is there, whatever happens to the mail
    assert await notifier.run_due(clock.now()) == 1  # the webhook still went out
    failed = [e for e in await store.timeline(case.id) if e.kind == "notification_failed"]
    assert len(failed) == 1 and "retrying" in failed[0].text
    controller.start()
    clock.advance(seconds=retry_delay(1).total_seconds() - 1)
    assert await notifier.run_due(clock.now()) == 0  # not yet due
    clock.advance(seconds=1)
    assert await notifier.run_due(clock.now()) == 1
    assert [m[0] for m in inbox.messages] == [["eva@school.example"]]


def test_retry_delays_grow_and_are_capped():
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 8, 20)] == [30, 60, 120, 3600, 3600]
