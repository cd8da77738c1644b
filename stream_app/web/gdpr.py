"""HTTP API of GDPR actions and retention rules (admin actions).

- ``POST /orgs/{org}/gdpr/export`` ``{"client_id": "...", "kind": "access"|"portability"}``:
  everything held about a client as one JSON document (Art. 15 access, Art. 20 portability).
- ``POST /orgs/{org}/gdpr/erase`` ``{"client_id": "..."}``: erase a client (Art. 17): the
  PostgreSQL rows (:mod:`stream_app.gdpr.pgdata`), the live table rows with tombstones to
  the changelog (:mod:`stream_app.gdpr.live`), the organisation's report files and cache
  entries (:mod:`stream_app.gdpr.artifacts`).
- ``GET`` / ``PUT /orgs/{org}/retention``: the organisation's retention rule
  (:mod:`stream_app.gdpr.retention`).

Every request is recorded in ``gdpr_requests`` (received → in_progress → completed) and in
the audit log, by request id only (never the client id). These routes are for the
organisation's administrators: they need a bearer token of ``org``, and the ``admin`` role
once tokens carry roles.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from stream_app.app import settings
from stream_app.db import audit_events
from stream_app.db.pool import get_lock_pool, get_pool
from stream_app.db.tenancy import tenant_transaction
from stream_app.gdpr import live
from stream_app.gdpr import requests as gdpr_requests
from stream_app.gdpr.artifacts import purge_organization_files
from stream_app.gdpr.pgdata import client_rows, erase_client_rows, holds_client, new_pseudonym
from stream_app.gdpr.retention import RuleError, fetch_rule, parse_rule, store_rule
from stream_app.reports import cache as report_cache
from stream_app.web.auth import authenticate
from stream_app.web.errors import ApiError, BusyError
from stream_app.web.inputs import json_object, known_organization, read_body
from stream_app.web.permissions import Permission
from stream_app.web.responses import json_response
from stream_app.web.views import page

EXPORT_FORMAT = "wedding-engine.gdpr-export/1"
"""The ``format`` of an export document; a new version if its shape ever changes."""

MAX_BODY_BYTES = 4096
_IDENTIFIER = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


async def _body(request: web.Request) -> dict[str, Any]:
    return json_object(await read_body(request, MAX_BODY_BYTES))


def _client_id(body: dict[str, Any], allowed: frozenset[str]) -> str:
    """The body's ``client_id`` (the events' identifier rule); only ``allowed`` fields.

    Raises:
        ApiError: 400 naming an unknown field or a missing or malformed ``client_id``.
    """
    for key in body:
        if key not in allowed:
            raise ApiError(
                400, "invalid_field", f"unknown field; known: {sorted(allowed)}", field=f"$.{key}"
            )
    client_id = body.get("client_id")
    if client_id is None:
        raise ApiError(400, "missing_field", "client_id is required", field="$.client_id")
    if (
        not isinstance(client_id, str)
        or not _IDENTIFIER.fullmatch(client_id)
        or client_id in (".", "..")  # the id rule of stream_app.schemas.ids
    ):
        raise ApiError(
            400,
            "invalid_field",
            "client_id: 1-128 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-', not '.' or '..'",
            field="$.client_id",
        )
    return client_id


@asynccontextmanager
async def _one_at_a_time(pool: asyncpg.Pool, org: str) -> AsyncIterator[None]:
    """:func:`stream_app.gdpr.requests.exclusive` on a connection of the lock pool
    (:func:`stream_app.db.pool.get_lock_pool`, not ``pool``, which every tenant's requests
    share); 503 ``busy`` when it cannot be had."""
    locks = await get_lock_pool(settings.postgres_dsn)
    try:
        async with gdpr_requests.exclusive(locks, org):
            yield
    except gdpr_requests.GdprBusyError as exc:
        raise BusyError(503, "busy", str(exc), 30, field="organization_id") from None


async def _open(
    conn: asyncpg.Connection, org: str, kind: gdpr_requests.RequestKind, client_id: str, actor: str
) -> str:
    """Check the organisation, record the request (tenant scope) and audit it; its id.

    Raises:
        ApiError: 404 when the organisation does not exist.
    """
    await known_organization(conn, org)
    async with tenant_transaction(conn, org):
        request_id = await gdpr_requests.open_request(conn, org, kind, client_id)
        await audit_events.record(
            conn, org, actor, f"gdpr.{kind}.received", request_id, {"kind": kind}
        )
    return request_id


async def _known_client(
    pool: asyncpg.Pool, org: str, client_id: str, *, erasure: bool = True
) -> None:
    """Check that ``org`` holds something of ``client_id`` before an export or an erasure
    (nothing is recorded otherwise: a request row would store the id again, even one erased
    already): a PostgreSQL row (:func:`stream_app.gdpr.pgdata.holds_client`), an event in the
    live table (:func:`stream_app.gdpr.live.holds_client`), or, for an ``erasure``, an
    unfinished erasure of the organisation (its client is pseudonymised already: erasing
    again must confirm it). Call it holding the organisation's GDPR lock
    (:func:`stream_app.gdpr.requests.exclusive`).

    Raises:
        ApiError: 404 ``not_found`` when the organisation does not exist, or naming
            ``$.client_id`` when it holds nothing of the client (whatever other
            organisations hold: the answer tells nothing about them); for an export, 409
            ``erasure_in_progress`` when only the live table holds the client while an
            erasure of the organisation is not yet confirmed there (it may be this
            client's: exporting would write its id back).
        stream_app.queries.errors.QueryUnavailableError: the live table cannot be read.
    """
    async with pool.acquire() as conn:
        await known_organization(conn, org)
        async with tenant_transaction(conn, org):
            if await holds_client(conn, org, client_id):
                return
            unfinished = await gdpr_requests.erasure_unfinished(conn, org)
            if erasure and unfinished:
                return
    if live.holds_client(await live.interactions_row(org, client_id)):
        if unfinished:  # an export: the live row may be the one an erasure is removing
            raise ApiError(
                409,
                "erasure_in_progress",
                "an erasure of this organisation is not yet confirmed by the live table;"
                " export again once it is (erase again to confirm it)",
                field="$.client_id",
            )
        return
    raise ApiError(
        404,
        "not_found",
        "the organisation holds nothing of this client (never known, or erased already)",
        field="$.client_id",
    )


@page("/orgs/{org}/gdpr/export", method="post", permission=Permission.GDPR_MANAGE)
async def gdpr_export(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """Everything held about a client (GDPR Art. 15 / Art. 20); admin role.

    Body: ``{"client_id": "...", "kind": "access" | "portability"}`` (kind defaults to
    ``access``). Answer 200, ``application/json`` as an attachment::

        {"format": "wedding-engine.gdpr-export/1", "request_id", "kind", "organization_id",
         "client_id", "generated_at",
         "postgresql": {"<table>": [row, ...], ...},       # every table holding the client
         "live_tables": {"client-interaction-totals": {...}},  # as the per-client read
         "reports": {"note": "..."}}

    Errors: 400 naming the field; 401/403 (token); 404 unknown organisation; 404
    ``not_found`` naming ``$.client_id`` when the organisation holds nothing of the client
    (never known, or erased already: :func:`_known_client`; nothing is recorded, so an
    erased id is not stored again); 409 ``erasure_in_progress`` when only the live table
    holds the client while an erasure of the organisation is unconfirmed; 503 when the live
    table's owner cannot answer (the request then stays ``in_progress``), or ``busy`` when
    another GDPR request of the organisation ran for over two minutes (they run one at a
    time: :func:`stream_app.gdpr.requests.exclusive`).
    """
    principal = authenticate(request, settings.jwt_secret, org)
    body = await _body(request)
    client_id = _client_id(body, frozenset({"client_id", "kind"}))
    kind = body.get("kind", "access")
    if kind not in ("access", "portability"):
        raise ApiError(
            400, "invalid_field", "kind must be 'access' or 'portability'", field="$.kind"
        )
    pool = await get_pool(settings.postgres_dsn)
    async with _one_at_a_time(pool, org):
        return await _export(pool, org, client_id, kind, principal.user_id)


async def _export(
    pool: asyncpg.Pool, org: str, client_id: str, kind: gdpr_requests.RequestKind, actor: str
) -> web.StreamResponse:
    """The export of ``client_id`` (the caller holds the organisation's GDPR lock)."""
    await _known_client(pool, org, client_id, erasure=False)
    async with pool.acquire() as conn:
        request_id = await _open(conn, org, kind, client_id, actor)
        async with tenant_transaction(conn, org):
            await gdpr_requests.mark_in_progress(conn, org, request_id)
            rows = await client_rows(conn, org, client_id)
    if "gdpr_requests" in rows:  # this request is the document's own request_id, not data
        rows["gdpr_requests"] = [r for r in rows["gdpr_requests"] if r.get("id") != request_id]
    live_row = await live.interactions_row(org, client_id)
    async with pool.acquire() as conn:
        doc = {
            "format": EXPORT_FORMAT,
            "request_id": request_id,
            "kind": kind,
            "organization_id": org,
            "client_id": client_id,
            "generated_at": datetime.now(UTC).isoformat(),
            "postgresql": rows,
            "live_tables": {"client-interaction-totals": live_row},
            "reports": {
                "note": "reports are totals over every client; which report file mentions a"
                " client is not tracked, so none is listed (an erasure removes every report"
                " file of the organisation)"
            },
        }
        result = {"rows": {t: len(r) for t, r in rows.items()}, "live_rows": 1}
        async with tenant_transaction(conn, org):  # the audit row commits with the answer
            await gdpr_requests.complete(conn, org, request_id, result)
            await audit_events.record(
                conn, org, actor, f"gdpr.{kind}.completed", request_id, result
            )
    return web.Response(
        body=orjson.dumps(doc),
        content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{request_id}.json"'},
    )


@page("/orgs/{org}/gdpr/erase", method="post", permission=Permission.GDPR_MANAGE)
async def gdpr_erase(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """Erase a client (GDPR Art. 17); admin role.

    Body: ``{"client_id": "..."}``. In order: the request is recorded (``received``, then
    ``in_progress``); a ``client_erased`` event goes to ``client-interactions``; the client's
    PostgreSQL rows are deleted or pseudonymised (one transaction); the answer waits until
    the live table has applied the event (at most ``WEDDING_GDPR_ERASURE_WAIT_S``); every
    report file and cache entry of the organisation is purged (reports still running are
    listed in ``running_reports``: erase again once they end). Erasing is idempotent.

    Answers 200 ``{"request_id", "status": "completed", "result"}``, or 202 with ``status``
    ``in_progress`` when the live table did not confirm in time (the PostgreSQL part and the
    purge are done; the event is in the log and will be applied; erase again to confirm).
    ``result`` counts rows per table and action, files and cache keys; it holds neither the
    client id nor the pseudonym.

    Errors: 400 naming the field; 401/403 (token); 404 unknown organisation; 404
    ``not_found`` naming ``$.client_id`` when the organisation holds nothing of the client
    (:func:`_known_client`: nothing is recorded nor purged); 503 when the live table's owner
    cannot answer that check, or ``busy`` when another GDPR request of the organisation ran
    for over two minutes (they run one at a time).
    """
    principal = authenticate(request, settings.jwt_secret, org)
    client_id = _client_id(await _body(request), frozenset({"client_id"}))
    pool = await get_pool(settings.postgres_dsn)
    async with _one_at_a_time(pool, org):
        return await _erase(pool, org, client_id, principal.user_id)


async def _erase(pool: asyncpg.Pool, org: str, client_id: str, actor: str) -> web.StreamResponse:
    """The erasure of ``client_id`` (the caller holds the organisation's GDPR lock)."""
    await _known_client(pool, org, client_id)
    # a connection per step, released before the waits for Kafka (the lock's own connection
    # is held throughout: one per organisation with a request running)
    async with pool.acquire() as conn:
        request_id = await _open(conn, org, "erasure", client_id, actor)
        async with tenant_transaction(conn, org):
            await gdpr_requests.mark_in_progress(conn, org, request_id)
    partition, offset = await live.send_erasure(org, client_id)
    pseudonym = new_pseudonym()
    async with pool.acquire() as conn, tenant_transaction(conn, org):
        pg_counts = await erase_client_rows(conn, org, client_id, pseudonym)
    folded = await live.wait_folded(partition, offset, settings.gdpr_erasure_wait_s)
    async with pool.acquire() as conn:
        async with tenant_transaction(conn, org):
            purge = await purge_organization_files(conn, settings.artifact_dir, org, request_id)
        await report_cache.purge_organization(org, purge.cache_keys)
        result: dict[str, Any] = {
            "postgresql": pg_counts,
            "live_table_erased": folded,
            "reports_purged": len(purge.report_ids),
            "artifact_files_deleted": purge.files,
            "cache_keys_purged": len(purge.cache_keys),
            "running_reports": purge.running,
        }
        action = "gdpr.erasure.completed" if folded else "gdpr.erasure.pending"
        async with tenant_transaction(conn, org):  # the audit row commits with the answer
            if folded:
                await gdpr_requests.complete(conn, org, request_id, result, pseudonym)
            await audit_events.record(conn, org, actor, action, request_id, result)
    status = "completed" if folded else "in_progress"
    return json_response(
        {"request_id": request_id, "status": status, "result": result},
        status=200 if folded else 202,
    )


@page("/orgs/{org}/retention", permission=Permission.RETENTION_MANAGE)
async def retention_get(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """The organisation's retention rule (days; ``null`` = kept for ever); admin role."""
    authenticate(request, settings.jwt_secret, org)
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        await known_organization(conn, org)
        async with tenant_transaction(conn, org):
            rule = await fetch_rule(conn, org)
    return json_response({"organization_id": org, **rule.as_dict()})


@page("/orgs/{org}/retention", method="put", permission=Permission.RETENTION_MANAGE)
async def retention_put(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """Replace the organisation's retention rule; admin role.

    Body: ``{"artifacts_days", "report_rows_days", "delivery_log_days"}``, each ``null`` (keep
    for ever; also when missing) or an integer from 1 to 36,500. Answers 200 with the rule.
    The retention job applies it at its next run (``WEDDING_RETENTION_INTERVAL_S``).

    Errors: 400 naming the field (unknown field, bad value); 401/403; 404.
    """
    principal = authenticate(request, settings.jwt_secret, org)
    try:
        rule = parse_rule(await _body(request))
    except RuleError as exc:
        raise ApiError(400, "invalid_field", exc.reason, field=exc.field) from None
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        await known_organization(conn, org)
        await store_rule(conn, org, rule, principal.user_id)
    return json_response({"organization_id": org, **rule.as_dict()})
