"""``GET /orgs/{org}/updates``: a tenant's live updates as Server-Sent Events.

Part of the HTTP layer. Each event is one message of ``realtime-metrics-updates`` the caller may
see (:mod:`stream_app.web.updates_filter`), its JSON body unchanged (fields this worker does not
know, such as a window's ``"final": true``, are passed through)::

    id: qLPNMdgEMdrxcKBNReFqe-6d0ddNIkAo8e...   (opaque: :mod:`stream_app.web.updates_ids`)
    event: metric_update
    data: {"kind": "metric_update", "organization_id": "acme", "key": "v1", ...}

- ``event``: the message's ``kind`` (``metric_update``, ``generic_metric_update``,
  ``report_status``); the stream starts with ``event: ready`` (``data: {"id": ...}``) once it is
  live, and a ``: keep-alive`` comment is written every 15 s of silence.
- Token: ``Authorization: Bearer`` or, for a browser's ``EventSource`` (which cannot set
  headers), the ``access_token`` query parameter. A query string can end up in proxies' logs
  and the browser's history: give the page a short-lived token (``wedding-engine token --ttl
  900``); this worker writes no access log. The stream ends when the token expires or is
  revoked (checked every :data:`RECHECK_S` seconds).
- Filters: ``metric`` and ``venue``, comma-separated (``report_status`` as a metric selects
  report status changes).
- Ids: every id (``ready``'s too) is the reader's position in the shared topic after the
  event, sealed for the organisation (:mod:`stream_app.web.updates_ids`): opaque, different at
  each send, refused by another organisation's stream. The offsets themselves count every
  tenant's messages and are never shown.
- Resume: ``Last-Event-ID`` (header, as ``EventSource`` sends it, or the ``last_event_id``
  query parameter) replays exactly the messages after that event, then goes on live; an id
  that does not open is a 400 ``invalid_field`` naming the field. At most
  ``WEDDING_UPDATES_REPLAY_MAX`` messages per partition are read back: a position further
  behind resumes from (end − that), and the stream says so first, after ``ready``::

      id: <the position it resumes from, sealed>
      event: gap
      data: {"kind": "gap", "max_replay": 2000, "detail": "..."}

  (the client missed updates: it re-reads the figures over HTTP; no offset is named). An
  organisation replays at most ``WEDDING_UPDATES_MAX_REPLAYS`` streams at once on a worker;
  one more waits :data:`REPLAY_WAIT_S` seconds for a turn, then is refused with 429
  ``too_many_replays`` (503 ``busy`` when the worker's replays are all taken), with
  ``Retry-After``.
- Slow clients are dropped (:mod:`stream_app.web.updates_hub`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from stream_app.app import app, settings
from stream_app.db.pool import get_pool
from stream_app.db.report_scope import report_venues
from stream_app.quotas import SlotsBusyError
from stream_app.topics import REALTIME_METRICS_UPDATES
from stream_app.web import revocation
from stream_app.web.auth import Principal, authenticate
from stream_app.web.errors import BusyError
from stream_app.web.permissions import Permission
from stream_app.web.updates_filter import UpdateFilter, Verdict, parse_filter
from stream_app.web.updates_hub import END, UPDATES_DROPPED, UpdatesHub, bound_resume
from stream_app.web.updates_ids import EventIds, Position
from stream_app.web.views import page, refuse_unknown_venues

KEEPALIVE_S = 15.0
"""Seconds without an update after which a stream sends a ``: keep-alive`` comment."""
GONE_CHECK_S = 1.0
"""How often an idle stream checks that its client is still connected, seconds: a client
that went away gives its organisation's stream slot back within this (a trial user's finding:
it was held until the next keep-alive write, and a browser reconnecting at the cap got 429,
on which ``EventSource`` gives up)."""
RECHECK_S = 30.0
"""How often an open stream re-checks its token's expiry and revocation, seconds."""
RETRY_MS = 3000
"""The reconnection delay a client is told (``retry:``), milliseconds."""
REPLAY_WRITE_S = 10.0
"""Longest wait for a resumed stream's client to take the next update of its read-back,
seconds; past it the stream is cut and its organisation's replay slot freed (a second
attacker round: two viewers that stopped reading held both slots, and every other resume of
their organisation, an admin's too, was a 429 for as long as they stayed connected)."""
REPLAY_WAIT_S = 2.0
"""Seconds a resumed stream waits for one of its organisation's replay turns before 429."""
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

hub = UpdatesHub(
    settings.kafka_bootstrap,
    REALTIME_METRICS_UPDATES,
    queue_size=settings.updates_queue,
    max_streams_per_org=settings.updates_max_clients,
    max_replays_per_org=settings.updates_max_replays,
)


async def _stop_hub(_: web.Application) -> None:
    await hub.stop()


app.web.web_app.on_shutdown.append(_stop_hub)  # type: ignore[attr-defined]


def sse_event(event_id: str, kind: str, data: bytes) -> bytes:
    """One Server-Sent Event (WHATWG HTML, "Server-sent events"): ``data`` must be one line
    of JSON (it is re-encoded if it holds a line break)."""
    if b"\n" in data or b"\r" in data:
        data = orjson.dumps(orjson.loads(data))
    name = kind if _KIND.match(kind) else "message"
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id.encode(), name.encode(), data)


class _ReportScope:
    """Whether report ids are within a venue-scoped token's venues (looked up once each)."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.known: dict[str, bool] = {}

    async def admits(self, report_id: object) -> bool:
        if not isinstance(report_id, str) or self.principal.venues is None:
            return False
        if report_id not in self.known:
            pool = await get_pool(settings.postgres_dsn)
            async with pool.acquire() as conn:
                venues = await report_venues(conn, self.principal.organization_id, report_id)
            self.known[report_id] = venues is not None and set(venues) <= self.principal.venues
        return self.known[report_id]


async def _admits(filt: UpdateFilter, scope: _ReportScope, key: bytes, doc: dict[str, Any]) -> bool:
    verdict = filt.verdict(key, doc)
    if verdict is Verdict.CHECK_REPORT:
        return await scope.admits(doc.get("report_id"))
    return verdict is Verdict.SHOW


GAP_DETAIL = (
    "the stream resumed after the last event you saw, but further back than the worker reads"
    " back (max_replay messages of the shared topic per partition): some of your updates since"
    " then may be missing; re-read the figures you show over HTTP"
)


def gap_event(event_id: str, max_replay: int) -> bytes:
    """The ``event: gap`` of a resume that was further behind than ``max_replay`` messages
    on some partition (see the module docstring): it names no partition or offset, which
    would count other tenants' messages."""
    data = {"kind": "gap", "max_replay": max_replay, "detail": GAP_DETAIL}
    return b"id: %s\nevent: gap\ndata: %s\n\n" % (event_id.encode(), orjson.dumps(data))


@asynccontextmanager
async def _replay_turn(org: str, resume: Position | None) -> AsyncIterator[None]:
    """One of the organisation's replay slots for the block (none needed without ``resume``).

    Raises:
        BusyError: 429 ``too_many_replays`` (the organisation's replays are all running) or
            503 ``busy`` (the worker's) after :data:`REPLAY_WAIT_S` seconds.
    """
    if not resume:
        yield
        return
    try:
        async with hub.replay_slots.slot(org, REPLAY_WAIT_S):
            yield
    except SlotsBusyError as exc:
        if exc.organization:
            raise BusyError(
                429,
                "too_many_replays",
                f"this organisation already has {hub.replay_slots.per_org} resumed live-update"
                " streams reading back on this worker (WEDDING_UPDATES_MAX_REPLAYS); retry",
                retry_after_s=RETRY_MS // 1000,
                field="organization_id",
            ) from None
        raise BusyError(
            503, "busy", "too many live-update streams reading back; retry", RETRY_MS // 1000
        ) from None


async def _still_valid(principal: Principal) -> bool:
    if principal.expires_at is not None and principal.expires_at <= datetime.now(UTC):
        return False
    return not await revocation.is_revoked(principal)


async def _check_venues(org: str, venues: frozenset[str]) -> None:
    """Refuse a ``venue`` filter naming a venue the organisation has not registered: its
    stream would stay empty (a trial user's filter on another organisation's studio answered
    200 and a silent stream, while an unknown ``metric`` is a 400).

    Raises:
        ApiError: 400 ``invalid_field`` naming ``venue`` and the unknown ids.
    """
    await refuse_unknown_venues(
        await get_pool(settings.postgres_dsn),
        org,
        venues,
        "venue",
        prefix="venue: ",
        why=" (a stream filtered on it would stay empty)",
    )


@page(
    "/orgs/{org}/updates",
    permission=Permission.TABLES_READ,
    venue_aware=True,
    streaming=True,
)
async def updates(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """The organisation's live updates as Server-Sent Events (see the module docstring)."""
    principal = authenticate(request, settings.jwt_secret, org)
    filt = parse_filter(principal, request.query.get("metric"), request.query.get("venue"))
    if filt.venues is not None:
        await _check_venues(org, filt.venues)
    ids = EventIds(settings.jwt_secret, org, hub.topic)
    last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    resume = None
    if last:
        field = "Last-Event-ID" if "Last-Event-ID" in request.headers else "last_event_id"
        resume = ids.open(last, field)
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )

    def close() -> None:  # at once, unsent bytes discarded (close() would wait for them)
        if request.transport is not None:
            request.transport.abort()

    async with contextlib.AsyncExitStack() as replay_turn:
        # taken before the response starts, so a refusal is still a 429
        await replay_turn.enter_async_context(_replay_turn(org, resume))
        sub, joined = await hub.subscribe(filt, resume, close)
        scope = _ReportScope(principal)
        try:
            await resp.prepare(request)
            gapped = False
            if resume:
                resume, gaps = bound_resume(resume, joined, settings.updates_replay_max)
                gapped = bool(gaps)
            ready_id = ids.seal({**joined, **(resume or {})} if resume else joined)
            await resp.write(
                b"retry: %d\nid: %s\nevent: ready\ndata: %s\n\n"
                % (RETRY_MS, ready_id.encode(), orjson.dumps({"id": ready_id}))
            )
            if gapped:
                await resp.write(gap_event(ready_id, settings.updates_replay_max))
            if resume:
                async for at, key, raw, doc, _, _ in hub.replay(resume, joined):
                    if sub.dropped:
                        return resp
                    if await _admits(filt, scope, key, doc):
                        event = sse_event(ids.seal(at), str(doc.get("kind")), raw)
                        try:  # a client that stops reading must not keep the replay slot
                            await asyncio.wait_for(resp.write(event), REPLAY_WRITE_S)
                        except TimeoutError:
                            UPDATES_DROPPED.inc()  # dropped as a slow live client is
                            close()
                            return resp
            await replay_turn.aclose()  # the live part holds no replay slot
            loop = asyncio.get_running_loop()
            recheck_at = loop.time() + RECHECK_S
            keepalive_at = loop.time() + KEEPALIVE_S
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), GONE_CHECK_S)
                except TimeoutError:
                    if sub.dropped or request.transport is None:  # dropped, or the client left
                        break
                    if loop.time() >= keepalive_at:
                        await resp.write(b": keep-alive\n\n")
                        keepalive_at = loop.time() + KEEPALIVE_S
                else:
                    if item is END:  # the worker is stopping
                        break
                    at, kind, raw, doc = item
                    if await _admits(filt, scope, (org + "/").encode(), doc):
                        await resp.write(sse_event(ids.seal(at), kind, raw))
                        keepalive_at = loop.time() + KEEPALIVE_S
                if loop.time() >= recheck_at:
                    if not await _still_valid(principal):
                        break
                    recheck_at = loop.time() + RECHECK_S
        except ConnectionError:  # the client left, or was dropped
            pass
        finally:
            hub.unsubscribe(sub)
    return resp
