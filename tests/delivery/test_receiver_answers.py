"""What a webhook receiver answers is read within bounds, and URLs are masked where shown
(attacker report s4, items 1, 3 and 8), against real aiohttp receivers started here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest_asyncio
from aiohttp import web

from stream_app.delivery.targets import RetryPolicy, WebhookTarget
from stream_app.delivery.webhook import WebhookMethod
from tests.delivery.conftest import Deliverer
from tests.schedules.builders import per_org
from tests.serving import serving

SECRET = "whsec-0123456789-abcdefghij"
HUGE_BYTES = 256 * 1024 * 1024
CHUNK = b"A" * (64 * 1024)


@dataclass
class Answers:
    """How many bytes the huge answer got out before the client dropped it."""

    sent: int = 0
    done: bool = False


@pytest_asyncio.fixture
async def server() -> AsyncIterator[tuple[Answers, str]]:
    """Receiver on 127.0.0.1: ``/huge`` streams 256 MiB after a 500; ``/redir`` answers 302
    with a 3,000-character ``Location``; ``/ok`` answers 200."""
    answers = Answers()

    async def huge(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(status=500)
        resp.content_length = HUGE_BYTES
        await resp.prepare(request)
        try:
            while answers.sent < HUGE_BYTES:
                await resp.write(CHUNK)
                answers.sent += len(CHUNK)
        except (ConnectionError, RuntimeError):  # the client closed the connection
            pass
        answers.done = True
        return resp

    async def redir(request: web.Request) -> web.Response:
        await request.read()
        location = "http://elsewhere.example/" + "x" * 3000
        return web.Response(status=302, headers={"Location": location})

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200, text="ok")

    async with serving({"/huge": huge, "/redir": redir, "/ok": ok}) as port:
        yield answers, f"127.0.0.1:{port}"


def hook(url: str) -> Any:
    return per_org(
        "answers",
        date_range="previous_week",
        delivery=WebhookTarget(url=url, secret=SECRET, timeout_s=60),
        retry=RetryPolicy(max_attempts=1),
    )


async def test_a_huge_answer_is_not_read_whole(
    make_run: Any, server: tuple[Answers, str], delivering: Deliverer, webhook: WebhookMethod
) -> None:
    """A 256 MiB error body: the sender reads at most 64 KiB, keeps 200 characters and drops
    the connection, so the receiver gets only what fits in the socket buffers out."""
    answers, where = server
    run, (status,) = await make_run(hook(f"http://{where}/huge"))
    started = time.monotonic()
    result = await delivering(run, status, webhook)
    took = time.monotonic() - started
    assert result.outcome == "failed"
    (entry,) = await delivering.log(run.run_id)
    assert entry.detail is not None and "HTTP 500" in entry.detail
    assert "A" * 200 in entry.detail and "A" * 201 not in entry.detail
    for _ in range(100):  # the receiver notices the closed connection
        if answers.done:
            break
        await asyncio.sleep(0.05)
    assert answers.done
    assert answers.sent < 32 * 1024 * 1024  # read whole, it would be 256 MiB
    assert took < 10


async def test_a_long_redirect_location_is_clipped(
    make_run: Any, server: tuple[Answers, str], delivering: Deliverer, webhook: WebhookMethod
) -> None:
    _, where = server
    run, (status,) = await make_run(hook(f"http://{where}/redir"))
    result = await delivering(run, status, webhook)
    assert result.outcome == "failed"
    (entry,) = await delivering.log(run.run_id)
    assert entry.detail is not None and "HTTP 302 redirect to" in entry.detail
    assert "x" * 400 in entry.detail  # the Location is named, clipped
    assert len(entry.detail) <= 500
    assert len(result.detail) <= 1000


async def test_url_credentials_and_query_are_masked_in_the_log(
    make_run: Any, server: tuple[Answers, str], delivering: Deliverer, webhook: WebhookMethod
) -> None:
    _, where = server
    run, (status,) = await make_run(
        hook(f"http://hookuser:hookpass@{where}/ok?api_key=TOPSECRETKEY")
    )
    result = await delivering(run, status, webhook)
    assert result.outcome == "delivered"
    (entry,) = await delivering.log(run.run_id)
    assert entry.target == f"POST http://***@{where}/ok?***"
    assert "hookpass" not in str(entry) and "TOPSECRETKEY" not in str(entry)

    run, (status,) = await make_run(hook(f"http://u:pw@{where}/redir?token=SECRET2"))
    result = await delivering(run, status, webhook)
    (entry,) = await delivering.log(run.run_id)
    detail = entry.detail or ""  # absent: the prefix below is missing
    assert detail.startswith(f"POST http://***@{where}/redir?***: HTTP 302")
    assert "SECRET2" not in detail and "pw@" not in detail
