"""The error middleware: no failure leaves the API as a plain-text 500."""

from __future__ import annotations

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from stream_app.web.views import _json_errors


async def _raise(exc: BaseException) -> web.StreamResponse:
    raise exc


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"), 503, None),
        (RuntimeError("a bug"), 500, "internal_error"),
        (KeyError("missing"), 500, "internal_error"),
    ],
)
async def test_unexpected_failures_are_json_with_a_code(
    exc: BaseException, status: int, code: str | None
) -> None:
    request = make_mocked_request("GET", "/orgs/a/reports/r1")
    resp = await _json_errors(request, lambda _: _raise(exc))
    assert resp.status == status
    assert isinstance(resp, web.Response)
    assert isinstance(resp.body, bytes)
    error = orjson.loads(resp.body)["error"]
    if status == 503:
        assert error["code"] == "service_unavailable"
        assert resp.headers["Retry-After"] == "5"
    else:
        assert error["code"] == code
        assert "incident" in error["reason"]
        assert "a bug" not in error["reason"] and "missing" not in error["reason"]
