"""HTTP API of the audit log: ``GET /orgs/{org}/audit?after_seq=0&limit=100``.

Part of the HTTP layer; reads ``audit_log`` through :func:`stream_app.db.audit_events.list_events`
(tenant scope: only the organisation's own chain).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from stream_app.app import settings
from stream_app.db import audit_events
from stream_app.db.pool import get_pool
from stream_app.web.auth import authenticate
from stream_app.web.errors import ApiError
from stream_app.web.numbers import ascii_int
from stream_app.web.permissions import Permission
from stream_app.web.responses import json_response
from stream_app.web.views import page

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """Query parameter ``name`` as an integer in ``lo..hi`` (``default`` when absent).

    Raises:
        ApiError: 400 ``invalid_field`` naming the parameter.
    """
    raw = request.query.get(name)
    if raw is None:
        return default
    value = ascii_int(raw, name)
    if not lo <= value <= hi:
        raise ApiError(400, "invalid_field", f"{name}: must be in {lo}..{hi}", field=name)
    return value


def event_to_json(event: audit_events.AuditEvent) -> dict[str, Any]:
    """One event as the API shows it: the fields of its hash (:mod:`stream_app.db.audit_events`,
    ``at`` as hashed) and the hash. Not the row's ``id``: ids come from one sequence of every
    organisation, so their gaps told a tenant how many audited actions the others made in
    between (the 20th stop's attacker round, F2); ``seq`` numbers the organisation's own."""
    return {
        "seq": event.seq,
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "details": event.details,
        "outcome": event.outcome,
        "at": audit_events.format_at(event.at),
        "prev_hash": event.prev_hash,
        "row_hash": event.row_hash,
    }


@page("/orgs/{org}/audit", permission=Permission.AUDIT_READ)
async def audit_log(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """The organisation's audit events, oldest first, paged by ``seq``.

    Requires admin.

    Query: ``after_seq`` (default 0: from the first event) and ``limit`` (1-1000, default
    100). Answer: ``{"organization_id", "events": [...], "next_after_seq"}``; ask again with
    ``after_seq`` = ``next_after_seq`` while it is not null. Each event carries ``seq``,
    ``prev_hash`` and ``row_hash``, so a client can check the chain itself (the rule:
    :mod:`stream_app.db.audit_events`).
    """
    authenticate(request, settings.jwt_secret, org)
    after_seq = _int_param(request, "after_seq", 0, 0, 2**63 - 1)
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        events = await audit_events.list_events(conn, org, after_seq=after_seq, limit=limit)
    return json_response(
        {
            "organization_id": org,
            "events": [event_to_json(e) for e in events],
            "next_after_seq": events[-1].seq if len(events) == limit else None,
        }
    )
