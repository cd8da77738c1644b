"""A request aiohttp's parser refuses is answered with the API's JSON error, naming the
header and echoing none of the request's bytes (:mod:`stream_app.runtime.http_errors`), on a
real aiohttp server over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from stream_app.runtime import http_errors

TOKEN = b"eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJl"


@pytest.fixture
async def port() -> AsyncIterator[int]:
    http_errors.install()

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


async def exchange(port: int, raw: bytes) -> tuple[int, bytes, bytes]:
    """``(status, head, body)`` of the answer to the bytes ``raw``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)  # the server closes the connection
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN + b"\x01\r\n\r\n",
            "Invalid header value char",
            "header.Authorization",
        ),
        (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", "Invalid char in url path", "path"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN + b"\r\n"
            b"Content-Length: 1" + TOKEN + b"\r\n\r\n",
            "Invalid character in Content-Length",
            "header.Content-Length",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Note: " + TOKEN * 200 + b"\r\n\r\n",
            "a request or header line is longer than 8190 bytes",
            None,
        ),
    ],
)
async def test_a_malformed_request_gets_the_json_error_without_its_bytes(
    port: int, raw: bytes, reason: str, field: str | None
) -> None:
    status, head, body = await exchange(port, raw)
    assert status == 400
    assert b"content-type: application/json" in head.lower()
    assert orjson.loads(body) == {
        "error": {"code": "bad_request", "reason": reason, "field": field}
    }
    assert TOKEN[:20] not in body and b"c2VjcmV0" not in body


async def test_a_well_formed_request_is_served_as_before(port: int) -> None:
    status, _, body = await exchange(
        port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert (status, body) == (200, b"ok")


async def test_the_log_line_names_the_header_not_the_token(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN + b"\x01\r\n\r\n"
    await exchange(port, raw)
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        "refused (400): Invalid header value char (header.Authorization)" in line for line in lines
    ), lines
    assert not any(TOKEN.decode()[:20] in line for line in lines)
