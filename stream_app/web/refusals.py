"""Refused requests in the audit log, aggregated so that a flood cannot fill it.

Part of the HTTP layer; it writes only through :func:`stream_app.db.audit_events.record`.
The error middleware (:func:`stream_app.web.views.json_errors`) hands every 401, 403 and 429
answered for an organisation path (``/orgs/{org}/…``) to :func:`note_refusal`; it is recorded
in that organisation's chain as ``request.refused`` with outcome ``refused``, the client's
address as actor and the reason (status, error code, field, method, route) in the details.

**Flood bound.** Refusals are aggregated per worker process and per minute (UTC, by the
wall clock) per key (organisation, client address, error code):

- the first refusal of a key in a minute is written at once (``count`` 1);
- the others of that minute are counted and written as one row (``count`` = how many more,
  ``aggregated`` true) once the minute is over (by the next refusal after it, or by the
  worker's flush timer, :data:`FLUSH_INTERVAL_S`);
- at most :data:`MAX_KEYS_PER_MINUTE` keys per minute get rows of their own; refusals of
  further keys that minute are only counted, in one ``request.refused.overflow`` row of the
  system chain (:data:`~stream_app.db.audit_events.SYSTEM_ORG`) with their number.

So one worker writes at most ``2 × MAX_KEYS_PER_MINUTE + 1`` refused rows a minute, whatever
the request rate or the number of organisations and addresses an attacker cycles through,
and keeps at most :data:`MAX_KEYS_PER_MINUTE` keys in memory. A failed write is logged and the
refusal is still answered (the audit write never turns a 401 into a 500).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt

from stream_app.app import app, settings
from stream_app.db import audit_events
from stream_app.db.pool import get_pool
from stream_app.db.tenancy import tenant_transaction

log = logging.getLogger(__name__)

REFUSED_STATUSES = frozenset({401, 403, 429})
"""The HTTP statuses recorded as refused requests."""

MAX_KEYS_PER_MINUTE = 200
"""Keys (organisation, client, code) with rows of their own per worker and minute."""

FLUSH_INTERVAL_S = 15.0
"""How often a worker writes the counts of minutes that are over."""

WINDOW_S = 60


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refused request.

    Attributes:
        organization_id: the path's organisation.
        client: the client's address (the TCP peer).
        status: 401, 403 or 429.
        code: the error's machine code (``unauthorized``, ``forbidden``, ``rate_limited``, …).
        field: the error's field, if any.
        method: the HTTP method.
        route: the route template (``/orgs/{org}/reports``), not the path.
        subject: the token's ``sub`` for a 403 (the token was valid) when the token is of
            ``organization_id``, else None.
    """

    organization_id: str
    client: str
    status: int
    code: str
    field: str | None
    method: str
    route: str
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRow:
    """A row to write: the arguments of :func:`stream_app.db.audit_events.record`."""

    organization_id: str
    actor: str
    action: str
    details: dict[str, Any]


@dataclass(slots=True)
class _Window:
    first: Refusal
    more: int = 0


@dataclass(slots=True)
class RefusalAggregator:
    """The per-minute accounting of refusals (no I/O: it returns the rows to write).

    Attributes:
        max_keys: keys with rows of their own per minute.
        clock: seconds since the epoch (injected in tests).
    """

    max_keys: int = MAX_KEYS_PER_MINUTE
    clock: Callable[[], float] = time.time
    _minute: int | None = None
    _windows: dict[tuple[str, str, str], _Window] = field(default_factory=dict)
    _overflow: int = 0

    def note(self, refusal: Refusal) -> list[AuditRow]:
        """Count ``refusal``; the rows to write now (its first row, and the summaries of a
        minute that is over)."""
        rows = self.flush_due()
        self._minute = int(self.clock() // WINDOW_S)
        key = (refusal.organization_id, refusal.client, refusal.code)
        window = self._windows.get(key)
        if window is not None:
            window.more += 1
        elif len(self._windows) >= self.max_keys:
            self._overflow += 1
        else:
            self._windows[key] = _Window(refusal)
            rows.append(_row(refusal, self._minute, count=1, aggregated=False))
        return rows

    def flush_due(self) -> list[AuditRow]:
        """The summary rows of the minute being counted, once it is over (else none)."""
        if self._minute is None or int(self.clock() // WINDOW_S) == self._minute:
            return []
        minute, self._minute = self._minute, None
        rows = [
            _row(w.first, minute, count=w.more, aggregated=True)
            for w in self._windows.values()
            if w.more
        ]
        if self._overflow:
            rows.append(
                AuditRow(
                    audit_events.SYSTEM_ORG,
                    "http",
                    "request.refused.overflow",
                    {
                        "window_start": _iso_minute(minute),
                        "count": self._overflow,
                        "max_keys_per_minute": self.max_keys,
                    },
                )
            )
        self._windows.clear()
        self._overflow = 0
        return rows


def _iso_minute(minute: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(minute * WINDOW_S))


def _row(r: Refusal, minute: int, *, count: int, aggregated: bool) -> AuditRow:
    details: dict[str, Any] = {
        "status": r.status,
        "code": r.code,
        "field": r.field,
        "method": r.method,
        "route": r.route,
        "window_start": _iso_minute(minute),
        "count": count,
        "aggregated": aggregated,
    }
    if r.subject is not None:
        details["token_subject"] = r.subject
    return AuditRow(r.organization_id, r.client, "request.refused", details)


aggregator = RefusalAggregator()
"""This worker's aggregator."""


def token_subject(authorization: str, organization_id: str) -> str | None:
    """The ``sub`` claim of a bearer token of ``organization_id``, read without checking it
    (only for a 403, whose token :func:`stream_app.web.auth.authenticate` has already
    checked); at most 128 characters.

    None when unreadable, and when the token is another organisation's: its subject (often
    an e-mail address) is that organisation's, not to be written into this one's audit log
    (an attacker's finding); the row's ``field`` (``organization_id``) says that it was
    another organisation's token, without naming it."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    if not isinstance(claims, dict) or claims.get("org") != organization_id:
        return None
    sub = claims.get("sub")
    return sub[:128] if isinstance(sub, str) else None


async def write_rows(rows: list[AuditRow]) -> None:
    """Write ``rows``, each in its organisation's tenant scope; a failure is logged."""
    if not rows:
        return
    try:
        pool = await get_pool(settings.postgres_dsn)
        async with pool.acquire() as conn:
            for row in rows:
                async with tenant_transaction(conn, row.organization_id):
                    await audit_events.record(
                        conn,
                        row.organization_id,
                        row.actor,
                        row.action,
                        None,
                        row.details,
                        outcome="refused",
                    )
    except Exception:
        log.exception("could not record %d refused request row(s)", len(rows))


async def note_refusal(refusal: Refusal) -> None:
    """Account one refused request and write the rows that are due (see the module)."""
    await write_rows(aggregator.note(refusal))


@app.timer(interval=FLUSH_INTERVAL_S)  # type: ignore[untyped-decorator]
async def flush_refusals() -> None:
    """Write the counts of a minute that is over, even when no refusal follows it."""
    await write_rows(aggregator.flush_due())
