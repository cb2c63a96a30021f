"""The sink seam with the signed webhook sink: every case event, in order per case, once per
event id however often it is retried, signed; a receiver that is down delays, never loses."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from casebridge.models import OpenPlan
from casebridge.notify import sign
from casebridge.sinks import SinkRunner
from casebridge.sinks.webhook import WebhookSink
from tests.casebridge.served import BACKENDS, store_for
from tests.factories import T0, ManualClock, make_alarm, make_draft

SECRET = b"feed-secret"


class Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], dict]] = []
        self.status = 204
        #: answer with a body that never ends (a hostile or broken receiver)
        self.endless = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.status < 300:
                    outer.received.append(
                        (dict(self.headers), json.loads(body) | {"_raw": body.decode()})
                    )
                self.send_response(outer.status)
                if outer.endless:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b"x" * 65536
                    try:
                        while True:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    except OSError:
                        return
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/feed"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture(params=BACKENDS)
async def store(request, tmp_path: Path):
    s = await store_for(request, tmp_path)
    yield s
    await s.aclose()


async def test_every_event_goes_out_in_order_signed_and_a_down_receiver_loses_nothing(
    store, receiver
):
    clock = ManualClock(T0)
    sink = WebhookSink(id="feed", url=receiver.url, secret=SECRET, clock=clock)
    runner = SinkRunner(store=store, sink=sink, clock=clock)
    await runner.start()
    outcome = await store.record_alarm(
        make_alarm(), make_draft(), OpenPlan(), now=T0, reopen_window=0
    )
    case_id = outcome.case.id
    assert await runner.run_due(clock.now()) == 1
    receiver.status = 503  # the receiver is down while the case is worked
    await store.act(case_id, "comment", actor="eva", now=T0, text="on my way")
    await store.act(case_id, "resolve", actor="eva", now=T0, text="fixed")
    assert await runner.run_due(clock.now()) == 0
    assert (await store.sink_status("feed", clock.now())).failing == 1
    receiver.status = 204
    clock.advance(seconds=10)
    assert await runner.run_due(clock.now()) == 1
    kinds = [body["event"]["kind"] for _, body in receiver.received]
    assert kinds == ["opened", "alarm_raised", "comment", "status_changed"]
    ids = [headers["X-Husvakt-Delivery"] for headers, _ in receiver.received]
    assert len(set(ids)) == len(ids) and all(i.startswith(f"feed/{case_id}/") for i in ids)
    for headers, body in receiver.received:
        signature = sign(SECRET, headers["X-Husvakt-Timestamp"], body["_raw"].encode())
        assert headers["X-Husvakt-Signature"] == signature
    assert receiver.received[-1][1]["case"]["status"] == "resolved"
    assert await runner.run_due(clock.now()) == 0  # nothing twice


async def test_a_sink_added_later_mirrors_the_open_cases_not_the_history(store, receiver):
    clock = ManualClock(T0)
    old = await store.record_alarm(
        make_alarm(sensor="t1"), make_draft(), OpenPlan(), now=T0, reopen_window=0
    )
    await store.act(old.case.id, "resolve", actor="eva", now=T0, text="long ago")
    live = await store.record_alarm(
        make_alarm(sensor="t2"), make_draft(), OpenPlan(), now=T0, reopen_window=0
    )
    runner = SinkRunner(
        store=store,
        sink=WebhookSink(id="late", url=receiver.url, secret=None, clock=clock),
        clock=clock,
    )
    await runner.start()
    assert await runner.run_due(clock.now()) == 1
    assert {body["case"]["id"] for _, body in receiver.received} == {live.case.id}


async def test_a_receiver_answering_with_an_endless_body_costs_nothing(store, receiver):
    clock = ManualClock(T0)
    runner = SinkRunner(
        store=store,
        sink=WebhookSink(id="feed", url=receiver.url, secret=None, clock=clock),
        clock=clock,
    )
    await runner.start()
    receiver.endless = True
    first = await store.record_alarm(
        make_alarm(sensor="t1"), make_draft(), OpenPlan(), now=T0, reopen_window=0
    )
    assert await runner.run_due(clock.now()) == 1  # taken on its status; the body never read
    receiver.endless = False
    second = await store.record_alarm(
        make_alarm(sensor="t2"), make_draft(), OpenPlan(), now=T0, reopen_window=0
    )
    assert await runner.run_due(clock.now()) == 1
    assert {body["case"]["id"] for _, body in receiver.received} == {first.case.id, second.case.id}


class Broken:
    """A sink whose code fails on every case (a bug, an unforeseen answer)."""

    id = "broken"

    def __init__(self) -> None:
        self.calls = 0

    async def mirror(self, jobs, report):
        self.calls += 1
        raise RuntimeError("surprise")

    async def aclose(self):
        pass


async def test_a_sink_that_fails_unexpectedly_backs_off_and_mirrors_nothing_wrongly(store):
    clock = ManualClock(T0)
    sink = Broken()
    runner = SinkRunner(store=store, sink=sink, clock=clock, max_retry=60)
    await runner.start()
    await store.record_alarm(make_alarm(), make_draft(), OpenPlan(), now=T0, reopen_window=0)
    assert await runner.run_due(clock.now()) == 0  # no exception out of the runner
    assert await runner.run_due(clock.now()) == 0
    assert sink.calls == 1  # paused, not retried in a tight loop
    assert not runner.available
    assert (await store.sink_status("broken", clock.now())).waiting == 1  # still owed
