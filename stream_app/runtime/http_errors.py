"""aiohttp's answer to a request its HTTP parser refuses: the API's JSON error, without the
request's bytes.

A request malformed at the HTTP level (a control byte in a header value or the request line,
a header line over 8,190 bytes, a bad ``Content-Length``) never reaches a handler or a
middleware: aiohttp 3.14's ``RequestHandler.handle_error`` answers it with a plain-text 400
that repeats the offending line, so a bearer token with a stray byte came back in the body
(and in the server's ERROR log line, ``Error handling request``). An attacker round and the
README's known limits named it; the rule is a 4xx with a machine-readable body that echoes
no credential.

:func:`install` replaces ``RequestHandler.handle_error`` (a public method of aiohttp's
low-level server, which faust's aiohttp driver builds through ``web.AppRunner`` with no hook
for its class) for statuses below 500: the answer is ``{"error": {"code": "bad_request",
"reason", "field"}}`` (``too_large`` for 413 and 431), ``reason`` aiohttp's own words up to
the echoed bytes, ``field`` ``header.<Name>`` when the refused line is a header (its name is
an HTTP token: nothing secret) or ``path`` for the request line, else ``null``; the
connection is closed as aiohttp closes it. The log line says the same, at INFO. 5xx answers
are aiohttp's (they carry no request bytes; a traceback only in debug mode).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

_ECHO = re.compile(r":?\s*b['\"]")
"""Where aiohttp's message starts repeating the request's bytes (``…: b'Authorization: …'``)."""

_HEADER_NAME = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}):")
_ECHOED_LINE = re.compile(r"b(['\"])(.*?)\1", re.S)

_TOO_LONG = re.compile(r"^Got more than (\d+) bytes when reading")

_original: Any = None


def _reason(message: str | None, exc: BaseException | None) -> str:
    """aiohttp's description of what is wrong, cut before the echoed bytes (one line, at most
    200 characters)."""
    text = message if message else getattr(exc, "message", None) or str(exc or "")
    text = str(text).strip()
    echo = _ECHO.search(text)
    if echo is not None:
        text = text[: echo.start()]
    text = text.splitlines()[0].rstrip(" :.") if text.strip() else ""
    too_long = _TOO_LONG.match(text)
    if too_long:  # aiohttp: "Got more than 8190 bytes when reading: b'<the line>'"
        text = f"a request or header line is longer than {too_long.group(1)} bytes"
    return (text or "the request is not valid HTTP/1.1")[:200]


def _field(message: str | None, exc: BaseException | None) -> str | None:
    """``header.<Name>`` when the refused line is a header line, ``path`` for the request
    line, else None."""
    text = message if message else getattr(exc, "message", None) or str(exc or "")
    echoed = _ECHOED_LINE.search(str(text))
    if echoed is None:
        return None
    line = echoed.group(2)
    if re.match(r"^[A-Z]+ ", line):  # the request line: METHOD target HTTP/x
        return "path"
    name = _HEADER_NAME.match(line.encode("utf-8", "replace"))
    return f"header.{name.group(1).decode()}" if name else None


def handle_error(
    self: RequestHandler,
    request: Any,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    """``RequestHandler.handle_error`` as the module docstring says (4xx: JSON, no echo)."""
    if status >= 500:
        return _original(self, request, status, exc, message)  # type: ignore[no-any-return]
    reason = _reason(message, exc)
    field = _field(message, exc)
    log.info(
        "malformed HTTP request from %s refused (%d): %s (%s)",
        getattr(request, "remote", None),
        status,
        reason,
        field,
    )
    if request.writer.output_size > 0:  # as aiohttp: an answer had begun, the connection broke
        raise ConnectionError("Response is sent already, cannot send another response")
    code = "too_large" if status in (413, 431) else "bad_request"
    body = {"error": {"code": code, "reason": reason, "field": field}}
    response = web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
    response.force_close()
    return response


def install() -> None:
    """Replace ``RequestHandler.handle_error`` with :func:`handle_error` (idempotent)."""
    global _original
    if _original is None:
        _original = RequestHandler.handle_error
    RequestHandler.handle_error = handle_error  # type: ignore[method-assign]
