"""Small builders for contract objects, so tests state only what matters to them."""

from datetime import UTC, datetime, timedelta

from casebridge.models import CaseDraft
from gateway.models import Reading
from stream.models import Alarm

T0 = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)


def make_alarm(state="raised", severity="warning", minute=0, **over):
    fields = {
        "episode": f"{over.get('condition', 'freezing')}:s:{over.get('sensor', 't1')}:start",
        "site": "s",
        "sensor": "t1",
        "condition": "freezing",
        "state": state,
        "severity": severity,
        "value": 3.0,
        "threshold": 5.0,
        "rule": "freezing",
        "started_at": T0,
        "ts": T0 + timedelta(minutes=minute),
    }
    return Alarm(**(fields | over))


def make_draft(**over):
    fields = {
        "title": "Freezing risk — Cellar, S (t1)",
        "team": "fm",
        "priority": "P2",
        "route": "frost",
        "site_name": "S",
    }
    return CaseDraft(**(fields | over))


def make_reading(minute, value, *, fault=None, sensor="t1", seq=0, start=T0, site="s", gateway="g"):
    return Reading(
        site=site,
        gateway=gateway,
        sensor=sensor,
        kind="temperature",
        value=value,
        unit="°C",
        ts=start + timedelta(minutes=minute),
        seq=seq,
        quality="fault" if fault else "good",
        fault=fault,
    )


class ManualClock:
    """Virtual time: moves only when the test says so."""

    def __init__(self, start):
        self.value = start

    def now(self):
        return self.value

    def advance(self, **delta):
        self.value += timedelta(**delta)

    async def sleep(self, seconds):
        self.value += timedelta(seconds=seconds)
