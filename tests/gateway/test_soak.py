"""Months on a Pi: the gateway's memory and file descriptors stay flat while it reads and
uplinks (a short run of `bench.soak`; the bench runs a whole day at the Pi load)."""

from __future__ import annotations

import pytest

from bench.soak import soak

pytestmark = [pytest.mark.mqtt, pytest.mark.e2e, pytest.mark.timeout(240)]


async def test_memory_and_descriptors_stay_flat_while_the_gateway_works(capsys):
    flat, uplinked = await soak(readings=30_000, rate=3000.0, slack=8.0)
    report = capsys.readouterr().out
    assert flat, report
    assert uplinked >= 29_700, report  # what was read went on (QoS 1 from the sensors)
