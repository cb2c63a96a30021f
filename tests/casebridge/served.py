"""The case server over real HTTP: uvicorn on a free loopback port, in this event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from casebridge.store.sql import SqlCaseStore, SqliteCaseStore
from husvakt.broker import free_port

#: Run a test on both stores: `@pytest.fixture(params=BACKENDS)`, then `await store_for(request,
#: tmp_path)`.
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


async def store_for(request: pytest.FixtureRequest, tmp_path: Path) -> SqlCaseStore:
    """A started case store of the test's parameter: a SQLite file, or a PostgreSQL database."""
    if request.param == "postgres":
        store = SqlCaseStore.from_url(request.getfixturevalue("postgres_url"))
    else:
        store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
    return store


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[tuple[str, int]]:
    """(base URL, port) of `app` served by uvicorn until the block ends."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # it failed to start: say why
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True
        await task
