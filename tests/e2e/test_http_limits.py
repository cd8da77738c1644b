"""Slow and idle HTTP clients against a real worker (:mod:`stream_app.runtime.http_limits`,
:func:`stream_app.web.inputs.read_within`).

An attacker round at the 21st stop: ~20,000 connections that sent half a request head and
then nothing exhausted a worker's file descriptors (every tenant's reads of its partitions
failed, on every worker), and eight half-sent bodies with an analyst's token held all of its
organisation's request slots (its admins got 503 ``busy``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import orjson
import pytest

from stream_app.db.tenancy import Organization, upsert_organization
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from tests.conftest import WorkerFactory
from tests.e2e.helpers import auth

ORG = "http-limits"
KEEPALIVE_S = 3.0
PER_ADDRESS = 4
TOTAL = 7
HALF_HEAD = b"GET /orgs/http-limits/schedules HTTP/1.1\r\nHost: x\r\n"


@pytest.fixture(scope="module")
async def worker(settings: Settings, worker_factory: WorkerFactory) -> AsyncIterator[WorkerProcess]:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(ORG, ORG, "UTC", "EUR"))
    finally:
        await conn.close()
    w = worker_factory.start(
        "wedding-http-limits",
        "a",
        WEDDING_SCHEDULING="0",
        WEDDING_HTTP_KEEPALIVE_S=str(KEEPALIVE_S),
        WEDDING_HTTP_MAX_CONNECTIONS_PER_ADDRESS=str(PER_ADDRESS),
        WEDDING_HTTP_MAX_CONNECTIONS=str(TOTAL),
        WEDDING_HTTP_BODY_TIMEOUT_S="1",
        WEDDING_ORG_INFLIGHT="2",
    )
    try:
        await w.wait_ready(timeout_s=180)
        yield w
    finally:
        w.stop()


async def half_head(
    worker: WorkerProcess, source: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection from ``source`` that sent half a request head."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", worker.web_port, local_addr=(source, 0)
    )
    writer.write(HALF_HEAD)
    await writer.drain()
    return reader, writer


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float | None:
    """Seconds until the server closed the connection (EOF or reset), None if it did not."""
    t0 = time.monotonic()
    try:
        data = await asyncio.wait_for(reader.read(), seconds)
    except TimeoutError:
        return None
    except ConnectionError:
        return time.monotonic() - t0
    assert data == b"", data  # no answer to half a head
    return time.monotonic() - t0


async def livez(worker: WorkerProcess, source: str) -> int:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with (
        aiohttp.ClientSession(worker.url, connector=connector) as s,
        s.get("/livez", timeout=aiohttp.ClientTimeout(total=5)) as r,
    ):
        return r.status


async def refused_total(worker: WorkerProcess, reason: str) -> float:
    async with aiohttp.ClientSession(worker.url) as s, s.get("/metrics") as r:
        text = await r.text()
    prefix = f'wedding_http_connections_refused_total{{reason="{reason}"}} '
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


async def test_half_sent_heads_are_closed_and_connections_capped(worker: WorkerProcess) -> None:
    per_address_before = await refused_total(worker, "per_address")
    total_before = await refused_total(worker, "total")
    await asyncio.sleep(0.2)  # the /metrics connections are closed
    held = [await half_head(worker, "127.0.0.41") for _ in range(PER_ADDRESS)]
    # a fifth from the same address is closed at once; another address still gets answers
    extra, extra_writer = await half_head(worker, "127.0.0.41")
    assert (await closed_within(extra, 2)) is not None
    extra_writer.close()
    assert await livez(worker, "127.0.0.42") == 200
    # fill up to the total from other addresses: then every new connection is closed
    held += [await half_head(worker, "127.0.0.42") for _ in range(TOTAL - PER_ADDRESS)]
    late, late_writer = await half_head(worker, "127.0.0.43")
    assert (await closed_within(late, 2)) is not None
    late_writer.close()
    # each held connection is closed at the keep-alive deadline: trickled bytes do not help
    for _, writer in held[:2]:
        writer.write(b"X-Slow: 1\r\n")
    gone = await asyncio.gather(*(closed_within(r, KEEPALIVE_S + 5) for r, _ in held))
    assert all(t is not None for t in gone), gone
    assert max(t for t in gone if t is not None) < KEEPALIVE_S + 3
    await asyncio.sleep(0.2)
    assert await livez(worker, "127.0.0.43") == 200  # room again
    assert await refused_total(worker, "per_address") >= per_address_before + 1
    assert await refused_total(worker, "total") >= total_before + 1
    for _, writer in held:
        writer.close()


async def test_slow_bodies_hold_no_slot_of_their_organisation(
    worker: WorkerProcess, settings: Settings
) -> None:
    headers = auth(settings, ORG, role="analyst")
    head = (
        f"POST /orgs/{ORG}/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: {headers['Authorization']}\r\nContent-Length: 200\r\n\r\n"
    ).encode()
    slow = []
    for n in range(4):  # twice the organisation's two slots
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", worker.web_port, local_addr=(f"127.0.0.{51 + n}", 0)
        )
        writer.write(head + b'{"report_type": ')
        await writer.drain()
        slow.append((reader, writer))
    # meanwhile the organisation's admin is answered at once (before: 503 `busy`)
    t0 = time.monotonic()
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.get(f"/orgs/{ORG}/schedules", headers=auth(settings, ORG)) as r,
    ):
        assert r.status == 200, await r.text()
    assert time.monotonic() - t0 < 1.0
    # and each slow body is answered 408 naming the body, within its deadline
    for reader, writer in slow:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 408"), head[:200]
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = orjson.loads(await reader.readexactly(length))
        assert body["error"]["code"] == "request_timeout"
        assert body["error"]["field"] == "$"
        assert "did not arrive within 1 s" in body["error"]["reason"]
        writer.close()
