"""Bounds on the HTTP server's connections: how long a request head may take, how many
connections one client address and all clients together may hold.

An attacker round (21st stop) held ~20,000 idle connections to one worker, each having sent
half a request head and then nothing, from four addresses and with no token: aiohttp 3.14
keeps such a connection for its ``keepalive_timeout``, 3,630 s by default, and caps nothing,
so the worker ran out of file descriptors (``Too many open files`` in its accept loop, in
its forwarded reads and its report lanes): every tenant's reads of the partitions it held
failed, through every worker. faust's aiohttp driver builds the server through
``web.AppRunner`` with no hook for these, so :func:`install` sets them on aiohttp's classes:

- **keep-alive deadline** (``RequestHandler.__init__``'s ``keepalive_timeout``): a connection
  must complete each request head within ``keepalive_s`` of being opened or of its previous
  answer, else aiohttp closes it (bytes trickled in do not extend it; a request being
  handled, an SSE stream included, is not affected);
- **per address** (``Server.connection_made``): a connection from an address that already
  holds ``per_address`` is closed at once (``0``: no cap; behind a proxy every connection
  has the proxy's address);
- **in all** (``Server.connection_made``): beyond ``total`` open connections a new one is
  closed at once, so the worker keeps descriptors for Kafka, PostgreSQL, its files and the
  requests it forwards.

Refused connections are counted in ``wedding_http_connections_refused_total{reason}``
(``per_address``, ``total``) and logged at most once a minute by the worker's log throttle.

Pinned to aiohttp 3.14 (``web_protocol.RequestHandler.__init__``'s keyword arguments,
``web_server.Server.connection_made`` / ``connection_lost``).
"""

from __future__ import annotations

import logging
import resource
from collections import Counter
from typing import Any

from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from stream_app.observability import HTTP_CONNECTIONS_REFUSED as REFUSED

log = logging.getLogger(__name__)

RESERVED_DESCRIPTORS = 1_024
"""File descriptors kept for everything but client connections when the total cap is derived
from the process's limit."""

_originals: dict[str, Any] = {}
_limits: dict[str, float] = {}
_open: Counter[str] = Counter()
_peer_of: dict[Any, str] = {}
_total = [0]


def default_total() -> int:
    """The total cap derived from the process's soft ``RLIMIT_NOFILE``: the limit less
    :data:`RESERVED_DESCRIPTORS`, at least 256."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1_000_000
    return max(256, soft - RESERVED_DESCRIPTORS)


def open_connections() -> dict[str, int]:
    """Open connections per client address (for tests and the debug view)."""
    return {peer: n for peer, n in _open.items() if n}


def _peer(transport: Any) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "unknown"


def _connection_made(self: Server, handler: RequestHandler, transport: Any) -> None:
    _originals["made"](self, handler, transport)
    peer = _peer(transport)
    per_address, total = int(_limits["per_address"]), int(_limits["total"])
    reason = None
    if total and _total[0] >= total:
        reason = "total"
    elif per_address and _open[peer] >= per_address:
        reason = "per_address"
    if reason is not None:
        REFUSED.labels(reason).inc()
        log.warning(
            "HTTP connection from %s closed: %s connection cap reached (%d)",
            peer,
            reason.replace("_", " "),
            total if reason == "total" else per_address,
        )
        transport.abort()
        return
    _open[peer] += 1
    _total[0] += 1
    _peer_of[handler] = peer


def _connection_lost(
    self: Server, handler: RequestHandler, exc: BaseException | None = None
) -> None:
    peer = _peer_of.pop(handler, None)
    if peer is not None:
        _total[0] -= 1
        _open[peer] -= 1
        if _open[peer] <= 0:
            del _open[peer]
    _originals["lost"](self, handler, exc)


def install(keepalive_s: float, per_address: int, total: int) -> None:
    """Apply the three bounds of the module docstring to every aiohttp server of this process.

    Args:
        keepalive_s: seconds a connection has to complete a request head after it opened or
            after its previous answer.
        per_address: most open connections of one client address (0: no cap).
        total: most open connections in all (0: :func:`default_total`).

    Raises:
        ValueError: ``keepalive_s`` not positive, or a cap negative.
    """
    if keepalive_s <= 0 or per_address < 0 or total < 0:
        raise ValueError("keepalive_s must be positive and the caps at least 0")
    _limits.update(per_address=per_address, total=total or default_total())
    if "init" not in _originals:
        _originals["init"] = RequestHandler.__init__
        _originals["made"] = Server.connection_made
        _originals["lost"] = Server.connection_lost
    init = _originals["init"]

    def __init__(self: RequestHandler, *args: Any, **kwargs: Any) -> None:
        kwargs["keepalive_timeout"] = _limits["keepalive_s"]
        init(self, *args, **kwargs)

    _limits["keepalive_s"] = keepalive_s
    RequestHandler.__init__ = __init__  # type: ignore[method-assign]
    Server.connection_made = _connection_made  # type: ignore[method-assign]
    Server.connection_lost = _connection_lost  # type: ignore[method-assign]
