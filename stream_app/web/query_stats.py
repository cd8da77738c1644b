"""HTTP API of query monitoring: ``GET /orgs/{org}/query-stats?limit=20`` (admin).

Part of the HTTP layer; reads the organisation's own query log through
:func:`stream_app.db.monitoring.slowest` (tenant scope: another organisation's queries are
never read).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from stream_app.app import settings
from stream_app.db import monitoring
from stream_app.db.pool import get_pool
from stream_app.web.auth import authenticate
from stream_app.web.numbers import positive_int
from stream_app.web.permissions import Permission
from stream_app.web.responses import json_response
from stream_app.web.views import page

DEFAULT_LIMIT = 20
MAX_LIMIT = 200


def _limit(request: web.Request) -> int:
    """The ``limit`` query parameter, 1..:data:`MAX_LIMIT` (default :data:`DEFAULT_LIMIT`).

    Raises:
        ApiError: 400 ``invalid_field`` naming ``limit``.
    """
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    return positive_int(raw, "limit", maximum=MAX_LIMIT)


def record_to_json(rec: monitoring.QueryRecord) -> dict[str, Any]:
    """One query as the API shows it: kind, dataset, query id, ms, rows, slow, when (UTC)."""
    return {
        "kind": rec.kind,
        "dataset": rec.dataset,
        "query_id": rec.query_id,
        "ms": round(rec.duration_ms, 3),
        "rows": rec.rows,
        "slow": rec.slow,
        "at": rec.started_at.isoformat(),
    }


@page("/orgs/{org}/query-stats", permission=Permission.QUERY_STATS_READ)
async def query_stats(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """The organisation's slowest queries of the last days, slowest first.

    Requires admin.

    Query: ``limit`` (1-200, default 20). Answer: ``{"organization_id", "window_days",
    "slow_query_s", "queries": [{"kind", "dataset", "query_id", "ms", "rows", "slow",
    "at"}]}``; ``kind`` is ``aggregation`` or ``report``, ``dataset`` the aggregation dataset
    or the report type, ``ms`` the database time in milliseconds.
    """
    authenticate(request, settings.jwt_secret, org)
    limit = _limit(request)
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        records = await monitoring.slowest(conn, org, limit)
    return json_response(
        {
            "organization_id": org,
            "window_days": monitoring.RETENTION_DAYS,
            "slow_query_s": monitoring.slow_query_s(),
            "queries": [record_to_json(r) for r in records],
        }
    )
