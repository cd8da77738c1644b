"""The error middleware: no failure leaves the API as a plain-text 500."""

from __future__ import annotations

import logging

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from stream_app.logthrottle import RepeatThrottle
from stream_app.web.views import _json_errors, loggable_path


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


class Capture(logging.Handler):
    """Keeps the formatted lines it emits (a worker's handler, with its throttle)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def _unused(request: web.Request) -> web.StreamResponse:
    raise AssertionError("not called: the route is only matched")


async def _incident(method: str, path: str, exc: BaseException) -> str:
    """The incident id of the 500 answered for ``exc`` raised by the route of ``path``."""
    router = web.UrlDispatcher()
    for template in ("/orgs/{org}/reports", "/orgs/{org}/reports/{report_id}"):
        router.add_route("*", template, _unused)
    match = await router.resolve(make_mocked_request(method, path))
    request = make_mocked_request(method, path, match_info=match)
    resp = await _json_errors(request, lambda _: _raise(exc))
    assert resp.status == 500
    assert isinstance(resp, web.Response) and isinstance(resp.body, bytes)
    reason: str = orjson.loads(resp.body)["error"]["reason"]
    return reason.split("incident ")[1].rstrip(")")


async def test_every_incident_id_is_logged_and_only_a_repeated_traceback_is_left_out() -> None:
    """An attacker's finding: all 500s of all routes and tenants were one throttled kind, so one
    tenant's cheap 500 every minute kept every other 500's incident id out of the log."""
    logger = logging.getLogger("stream_app.web.views")
    out = Capture()
    out.addFilter(RepeatThrottle(60.0))
    logger.addHandler(out)
    try:
        first = await _incident("POST", "/orgs/a/reports", TypeError("Recursion limit reached"))
        again = await _incident("POST", "/orgs/a/reports", TypeError("Recursion limit reached"))
        other = await _incident("GET", "/orgs/b/reports/r1", KeyError("missing"))
    finally:
        logger.removeHandler(out)
    assert len(out.lines) == 3
    assert out.lines[0].startswith(
        f"ERROR POST /orgs/a/reports failed (incident {first}): TypeError: Recursion limit"
        " reached\nTraceback (most recent call last)"
    )
    # the same failure again within the minute: its line and incident id, not its traceback
    assert out.lines[1].startswith(
        f"ERROR POST /orgs/a/reports failed (incident {again}): TypeError: Recursion limit"
        " reached [traceback left out: as the one logged"
    )
    assert "Traceback" not in out.lines[1]
    # another failure (another tenant, route and type) in the same minute: whole
    assert out.lines[2].startswith(
        f"ERROR GET /orgs/b/reports/r1 failed (incident {other}): KeyError: 'missing'\nTraceback"
    )


def test_a_download_links_token_is_cut_in_log_lines() -> None:
    """An attacker round found a whole signed link (a working credential) in an error line."""
    token = "eyJhbGciOiJIUzI1NiJ9.eyJvcmciOiJhIn0.c2lnbmF0dXJl"
    assert (
        loggable_path(make_mocked_request("GET", f"/downloads/{token}")) == "/downloads/eyJhbGci…"
    )
    assert loggable_path(make_mocked_request("GET", "/orgs/a/venues")) == "/orgs/a/venues"
