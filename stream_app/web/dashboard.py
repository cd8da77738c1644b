"""``GET /dashboard``: a small static page showing a venue's figures live (and its files).

Part of the HTTP layer; it serves files of ``stream_app/web/static`` only, named in
:data:`ASSETS` (nothing is read from a path the caller chooses). The page holds no data: it
asks for a token and reads the API with it (``/orgs/{org}/venues/{venue}/metrics`` and
``/occupancy``, ``/orgs/{org}/updates``, ``/orgs/{org}/reports``), so the page itself is public.
Chart.js is vendored from npm (``static/VENDORED.md``: name, version, licence, checksums).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from stream_app.web.errors import ApiError
from stream_app.web.permissions import PUBLIC
from stream_app.web.views import page

STATIC = Path(__file__).with_name("static")
ASSETS: dict[str, tuple[str, str]] = {
    "dashboard.js": ("dashboard.js", "text/javascript"),
    "dashboard.css": ("dashboard.css", "text/css"),
    "chart.umd.min.js": ("vendor/chart.js-4.6.1/chart.umd.min.js", "text/javascript"),
}
"""The page's files: name in the URL → (path under ``static/``, media type)."""
SECURITY_HEADERS = {
    # scripts and connections to this worker only; Chart.js sets canvas sizes as inline styles
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; connect-src 'self';"
    " img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none';"
    " base-uri 'none'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _file(relative: str, media_type: str) -> web.Response:
    body = (STATIC / relative).read_bytes()
    return web.Response(
        body=body, content_type=media_type, charset="utf-8", headers=SECURITY_HEADERS
    )


@page("/dashboard", permission=PUBLIC)
async def dashboard(self: Any, request: web.Request) -> web.StreamResponse:
    """The dashboard page (HTML)."""
    return _file("dashboard.html", "text/html")


@page("/dashboard/{asset}", permission=PUBLIC)
async def dashboard_asset(self: Any, request: web.Request, asset: str) -> web.StreamResponse:
    """One of the page's files (:data:`ASSETS`); 404 for any other name."""
    found = ASSETS.get(asset)
    if found is None:
        raise ApiError(404, "not_found", f"no dashboard file {asset!r}", field="path.asset")
    return _file(*found)
