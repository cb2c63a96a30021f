import asyncio

import pytest

from gateway.cancel import honour_cancellation


async def test_a_cancellation_that_comes_back_as_a_library_error_still_stops_a_retry_loop():
    attempts = 0
    waiting = asyncio.Event()

    async def retrying() -> None:
        nonlocal attempts
        while True:
            attempts += 1
            try:
                try:
                    waiting.set()
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    # what aiomqtt does when its disconnect times out on the way out
                    raise ConnectionError("operation timed out") from None
            except ConnectionError:
                honour_cancellation()

    task = asyncio.create_task(retrying())
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert attempts == 1  # stopped, not reconnected
