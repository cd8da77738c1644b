"""``GET /debug/consumer``: faust's offset bookkeeping of this worker, for diagnosing stalls.

Served only when ``WEDDING_DEBUG=1`` (it exposes internals, not tenant data): per input
partition, the committed offset faust believes in, the acked offsets waiting to be committed
(first and last 5, and how many), the gaps, whether a commit is in flight, and the size of the
producer buffer (read by :func:`stream_app.runtime.introspect.consumer_state`); and whether
this process applied :func:`stream_app.runtime.install` (``runtime_installed``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from aiohttp import web

from stream_app import runtime
from stream_app.app import app
from stream_app.runtime.introspect import consumer_state
from stream_app.settings import parse_flag
from stream_app.web.permissions import Permission
from stream_app.web.views import page

if parse_flag("WEDDING_DEBUG", os.environ.get("WEDDING_DEBUG", "0")):

    @page("/debug/consumer", permission=Permission.DEBUG_READ)
    async def debug_consumer(self: Any, request: web.Request) -> web.StreamResponse:
        """faust's offset bookkeeping (see the module docstring)."""
        body = {**consumer_state(app), "runtime_installed": runtime.installed()}
        return web.json_response(body, dumps=lambda o: json.dumps(o, default=str))
