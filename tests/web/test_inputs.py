"""The request-input helpers of the HTTP layer over real HTTP (an aiohttp server on loopback)
and a real PostgreSQL: the status, code, field and reason of every refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from stream_app.aggregation import decode_request
from stream_app.db.tenancy import Organization, upsert_organization
from stream_app.settings import Settings
from stream_app.web.errors import ApiError
from stream_app.web.inputs import (
    decode_aggregation,
    json_depth,
    json_object,
    json_value,
    known_organization,
    read_body,
    require_query,
)

LIMIT = 16


async def _body(request: web.Request) -> web.StreamResponse:
    try:
        return web.json_response(json_object(await read_body(request, LIMIT)))
    except ApiError as exc:
        return exc.response()


async def _query(request: web.Request) -> web.StreamResponse:
    try:
        require_query(request, ("from", "to"), "query parameter {name!r} is required")
    except ApiError as exc:
        return exc.response()
    return web.json_response({"ok": True})


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    app.router.add_post("/body", _body)
    app.router.add_get("/query", _query)
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b'{"a": 1}', 200, None),
        (b'{"a": "0123456789"}', 413, {"code": "too_large", "field": "$"}),
        (b"{", 400, {"code": "invalid_json", "field": "$"}),
        (b"[1, 2]", 400, {"code": "invalid_field", "field": "$"}),
    ],
)
async def test_body(
    client: TestClient[web.Request, web.Application],
    body: bytes,
    status: int,
    error: dict[str, str] | None,
) -> None:
    async with client.post("/body", data=body) as resp:
        got = await resp.json()
    assert resp.status == status
    if error is None:
        assert got == {"a": 1}
    else:
        assert {k: got["error"][k] for k in error} == error


async def test_too_large_names_the_limit(client: TestClient[web.Request, web.Application]) -> None:
    async with client.post("/body", data=b"x" * (LIMIT + 1)) as resp:
        got = await resp.json()
    assert resp.status == 413
    assert got["error"]["reason"] == "body is over 16 bytes"


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("?from=a&to=b", 200, None),
        ("?to=b", 400, "from"),
        ("?from=a", 400, "to"),
        ("", 400, "from"),
    ],
)
async def test_required_query(
    client: TestClient[web.Request, web.Application], query: str, status: int, field: str | None
) -> None:
    async with client.get("/query" + query) as resp:
        got = await resp.json()
    assert resp.status == status
    if field is not None:
        assert got["error"] == {
            "code": "missing_field",
            "reason": f"query parameter {field!r} is required",
            "field": field,
        }


def test_json_value_takes_any_json() -> None:
    assert json_value(b"[1, 2]") == [1, 2]
    with pytest.raises(ApiError) as caught:
        json_value(b"nope")
    assert (caught.value.status, caught.value.code, caught.value.field) == (
        400,
        "invalid_json",
        "$",
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"client_id":"c\xff\xfe"}', "body is not valid UTF-8: invalid start byte at byte 15"),
        (b'{"a":"\xc0\xaf"}', "body is not valid UTF-8: invalid start byte at byte 6"),
        (b'{"a":"\xe2\x82"}', "body is not valid UTF-8: invalid continuation byte at byte 6"),
    ],
)
def test_a_body_that_is_not_utf8_says_where(raw: bytes, reason: str) -> None:
    """orjson calls every bad UTF-8 "surrogates not allowed": the reason names the byte."""
    with pytest.raises(ApiError) as caught:
        json_value(raw)
    assert (caught.value.status, caught.value.code, caught.value.field) == (
        400,
        "invalid_json",
        "$",
    )
    assert caught.value.reason == reason


def test_decode_aggregation_names_the_path() -> None:
    with pytest.raises(ApiError) as caught:
        decode_aggregation(decode_request, b"{")
    assert (caught.value.status, caught.value.code, caught.value.field) == (
        400,
        "invalid_json",
        "$",
    )


@pytest.mark.parametrize(
    ("raw", "key", "field"),
    [
        (b'{"report_id": "a", "report_id": "b"}', "report_id", "$.report_id"),
        (b'{"a": {"x": 1, "x": 1}, "b": 2}', "x", "$..x"),  # the same value twice too
        (b'[{"q": 1}, {"q": 2, "q": 3}]', "q", "$..q"),
        (b'{"d": {"b": 1, "b": 2}, "c": 1, "c": 3}', "c", "$.c"),  # the top level's first
    ],
)
def test_a_key_an_object_repeats_is_refused_naming_it(raw: bytes, key: str, field: str) -> None:
    """Decoders kept the last value silently (a security review's finding)."""
    with pytest.raises(ApiError) as caught:
        json_value(raw)
    e = caught.value
    assert (e.status, e.code, e.field) == (400, "invalid_field", field)
    assert e.reason == f"the key {key!r} appears twice in an object; send it once"
    assert json_value(b'{"a": {"x": 1}, "b": {"x": 2}}') == {"a": {"x": 1}, "b": {"x": 2}}


def test_an_aggregation_that_repeats_a_key_is_refused_naming_it() -> None:
    """msgspec, the aggregation decoder, keeps the last value too."""
    metrics = b'"metrics": [{"op": "count"}]'
    once = b'{"dataset": "payments", ' + metrics + b"}"
    assert decode_aggregation(decode_request, once).dataset == "payments"
    with pytest.raises(ApiError) as caught:
        decode_aggregation(
            decode_request, b'{"dataset": "payments", "dataset": "bookings", ' + metrics + b"}"
        )
    e = caught.value
    assert (e.status, e.code, e.field) == (400, "invalid_field", "$.dataset")


async def test_known_organization(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        org = Organization("inputs-known", "Inputs", "Europe/Lisbon", "EUR")
        await upsert_organization(conn, org)
        assert await known_organization(conn, "inputs-known") == org
        with pytest.raises(ApiError) as caught:
            await known_organization(conn, "inputs-unknown")
    finally:
        await conn.close()
    err = caught.value
    assert (err.status, err.code, err.field) == (404, "not_found", "organization_id")
    assert "inputs-unknown" in err.reason


def nested(depth: int, inner: bytes = b"1") -> bytes:
    """``{"z": [[…inner…]]}``: ``depth`` levels of nesting in all (the object counts one)."""
    return b'{"z": ' + b"[" * (depth - 1) + inner + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize("depth", [65, 300, 1000])
def test_a_body_nested_deeper_than_64_levels_is_refused_before_decoding(depth: int) -> None:
    """An attacker's finding: 255–1024 levels passed orjson's parser and failed its
    serialiser later (a 500), and hid a repeated key from the duplicate check."""
    for decode in (json_value, lambda raw: decode_aggregation(decode_request, raw)):
        with pytest.raises(ApiError) as caught:
            decode(nested(depth))
        e = caught.value
        assert (e.status, e.code, e.field) == (400, "invalid_json", "$")
        assert e.reason == f"body is nested {depth} levels deep; at most 64 are accepted"
    # a repeated key beside a deep value: refused for the depth, not accepted for the repeat
    with pytest.raises(ApiError) as caught:
        json_value(b'{"client_id": "a", "client_id": "b", "d": ' + nested(depth) + b"}")
    assert caught.value.reason.startswith(f"body is nested {depth + 1} levels")


def test_64_levels_and_brackets_in_strings_pass() -> None:
    value: object = 1
    for _ in range(63):
        value = [value]
    assert json_value(nested(64)) == {"z": value}
    assert json_depth(nested(64)) == 64
    assert json_depth(b'{"a": "[[[[\\"{{", "b": ["]]"]}') == 2
    assert json_value(b'{"a": "' + b"[" * 100 + b'"}') == {"a": "[" * 100}
