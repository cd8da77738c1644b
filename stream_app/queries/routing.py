"""Which worker owns an entity's rows, and reading them from there.

A venue's rows live in the partition of its message key ``organization_id/venue_id`` (of
``wedding-bookings`` and, co-partitioned, of the table's changelog); a booking's payments, a
client's interactions and a supplier's activity likewise live in the partition of
``organization_id/<entity>`` of their table's changelog. Faust's partition assignor knows
which worker (by its canonical URL) holds each changelog partition; a read for a partition
this worker does not hold goes to that worker's HTTP API with an internal token
(:func:`remote_json`, retried while the owner restores its tables).

What cannot be answered raises :class:`~stream_app.queries.errors.QueryUnavailableError`
(retriable; the HTTP layer answers it with a 503 naming its code).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential
from yarl import URL

from stream_app.app import app, settings
from stream_app.errors import WeddingError
from stream_app.queries.errors import QueryUnavailableError
from stream_app.queries.partitions import partition_for
from stream_app.runtime.state import partition_reader
from stream_app.schemas.tokens import INTERNAL_TOKEN_TTL_S, new_token
from stream_app.tables.bookings import row_totals, table_key
from stream_app.topology import venue_bookings

FORWARDED_HEADER = "X-Wedding-Forwarded"


def venue_partition(organization_id: str, venue_id: str) -> int:
    """The partition holding the venue's rows."""
    return partition_for(f"{organization_id}/{venue_id}".encode(), settings.topic_partitions)


def owner_url(organization_id: str, venue_id: str) -> str | None:
    """Base URL of the worker holding the venue's rows; None when it is this worker.

    Raises:
        QueryUnavailableError: while this worker restores its tables, or when no worker
            holds the partition (``rebalancing``: a rebalance is under way).
    """
    changelog = venue_bookings.changelog_topic.get_topic_name()
    return changelog_owner(
        changelog, venue_partition(organization_id, venue_id), no_owner_code="rebalancing"
    )


def changelog_owner(
    changelog: str, partition: int, *, no_owner_code: str = "recovering"
) -> str | None:
    """Base URL of the worker holding ``partition`` of the table changelog ``changelog``.

    Returns:
        None when this worker holds it, else the owner's base URL (no trailing ``/``).

    Raises:
        QueryUnavailableError: ``recovering`` while this worker restores its tables or
            rebalances (rows being restored would read as zeros), or ``no_owner_code`` when
            no worker holds the partition right now (nobody can answer; retry).
    """
    if getattr(app, "in_recovery", False) or getattr(app, "rebalancing", False):
        raise QueryUnavailableError("recovering", "this worker is restoring its tables; retry")
    if any(
        tp.topic == changelog and tp.partition == partition
        for tp in app.assignor.assigned_actives()
    ):
        return None
    for url, topics in app.assignor.table_metadata(changelog).items():
        if partition in topics.get(changelog, []):
            return str(url).rstrip("/")
    raise QueryUnavailableError(
        no_owner_code, f"no worker holds partition {partition} right now; retry"
    )


ATTEMPTS = 6
"""Attempts of a forwarded read (:func:`remote_json`)."""

FIRST_RETRY_S = 0.5
"""Wait before a forwarded read's second attempt; then 1, 2, 4 and 4 s."""


async def remote_json(
    base_url: str,
    path: str,
    params: dict[str, str],
    organization_id: str,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """GET ``base_url + path`` with an internal token of ``organization_id``; its JSON body.

    ``path`` must be a route declared ``forwarded=True`` (:class:`stream_app.web.guard.RouteSpec`):
    every other route refuses the internal token (403).

    ``path`` must already be URL-encoded. The request carries :data:`FORWARDED_HEADER` (so
    the receiver never forwards it again) and ``headers``. A 503 (the other worker is
    restoring its tables or rebalancing) or a connection error is retried with exponential
    backoff (0.5 s doubling to 4 s, 6 attempts, tenacity).

    Raises:
        QueryUnavailableError: ``owner_unavailable`` when that worker still cannot answer
            after the retries; ``owner_error`` when it answers with another error status.
    """
    headers = headers or {}
    # The first attempt without a retrier: tenacity's ``AsyncRetrying`` is a reference cycle
    # (about 32 objects with a thread lock and condition) that only the cyclic collector
    # frees; one per forwarded read made 1,113 of them per worker per 15 s under the HTTP load
    # test, and their collection passes (~100 ms each) set the reads' p99.
    try:
        return await _fetch_json(base_url, path, params, organization_id, headers)
    except _Retriable:
        await asyncio.sleep(FIRST_RETRY_S)
    retrying = AsyncRetrying(  # attempts 2-6, waits 1, 2, 4, 4 s between them
        stop=stop_after_attempt(ATTEMPTS - 1),
        wait=wait_exponential(multiplier=FIRST_RETRY_S * 2, max=4),
        retry=retry_if_exception(lambda e: isinstance(e, _Retriable)),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await _fetch_json(base_url, path, params, organization_id, headers)
    except _Retriable as exc:
        raise QueryUnavailableError("owner_unavailable", f"worker {base_url}: {exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def local_periods(
    organization_id: str, venue_id: str, grain: str, periods: list[str]
) -> list[dict[str, Any]]:
    """The venue's rows for ``periods`` from this worker's table (read from the partition's
    RocksDB database, :func:`~stream_app.runtime.state.partition_reader`), as JSON-ready
    dicts."""
    read = partition_reader(venue_bookings, venue_partition(organization_id, venue_id))
    out = []
    for period in periods:
        row = read(table_key(organization_id, venue_id, grain, period))  # type: ignore[arg-type]
        t = row_totals(row)
        out.append(
            {
                "period": period,
                "bookings": t.bookings,
                "cancellations": t.cancellations,
                "booked_minor": t.booked_minor,
                "cancelled_minor": t.cancelled_minor,
                "revenue_minor": t.revenue_minor,
                "lead_time_days_sum": t.lead_time_days_sum,
                "lead_time_bookings": t.lead_time_bookings,
                "average_lead_time_milli_days": t.average_lead_time_milli_days,
            }
        )
    return out


async def remote_periods(
    base_url: str, organization_id: str, venue_id: str, grain: str, start: str, end: str
) -> list[dict[str, Any]]:
    """The venue's rows for ``start``..``end`` read from the worker at ``base_url``.

    Retries as :func:`remote_json`.

    Raises:
        QueryUnavailableError: that worker still cannot answer after the retries, or
            answers with another error.
    """
    body = await remote_json(
        base_url,
        f"/orgs/{quote(organization_id, safe='')}/venues/{quote(venue_id, safe='')}/metrics",
        {"grain": grain, "from": start, "to": end},
        organization_id,
    )
    periods: list[dict[str, Any]] = body["periods"]
    return periods


_internal: dict[str, tuple[float, str]] = {}
"""organization_id → (monotonic time to renew, internal token): the receiving worker verifies
each token once (it remembers verified tokens)."""


def _internal_token(organization_id: str) -> str:
    now = time.monotonic()
    found = _internal.get(organization_id)
    if found is not None and found[0] > now:
        return found[1]
    ttl = min(INTERNAL_TOKEN_TTL_S, settings.token_max_ttl_s)
    token = new_token(
        settings.jwt_secret,
        user_id="internal",
        organization_id=organization_id,
        ttl_seconds=ttl,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        internal=True,
    ).token
    _internal[organization_id] = (now + ttl / 5, token)
    return token


_sessions: dict[int, aiohttp.ClientSession] = {}


def _session() -> aiohttp.ClientSession:
    """This event loop's client session for worker-to-worker reads (kept-alive connections:
    a new session per read cost a TCP connection each time)."""
    key = id(asyncio.get_running_loop())
    found = _sessions.get(key)
    if found is None or found.closed:
        # a connect that does not complete in 2 s fails (and is retried) at once: an owner
        # out of file descriptors accepted nothing, and each of 6 attempts waited its whole
        # 10 s (an attacker round: a 503 after 77 s, holding an organisation slot)
        found = _sessions[key] = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10, sock_connect=2)
        )
    return found


async def close_session() -> None:
    """Close this event loop's worker-to-worker client session, if any (a later read opens
    a new one)."""
    found = _sessions.pop(id(asyncio.get_running_loop()), None)
    if found is not None:
        await found.close()


class _Retriable(WeddingError):
    """The owner did not answer yet (503 or connection error): retried by
    :func:`remote_json`."""

    retriable = True


async def _fetch_json(
    base_url: str,
    path: str,
    params: dict[str, str],
    organization_id: str,
    headers: dict[str, str],
) -> dict[str, Any]:
    token = _internal_token(organization_id)
    try:
        async with (
            _session().get(
                URL(base_url + path, encoded=True),
                params=params,
                headers={
                    "Authorization": f"Bearer {token}",
                    FORWARDED_HEADER: "1",
                    **headers,
                },
            ) as resp,
        ):
            body = await resp.json(loads=orjson.loads)
            if resp.status == 503:
                raise _Retriable(f"answered 503: {body}")
            if resp.status != 200:
                raise QueryUnavailableError(
                    "owner_error", f"worker {base_url} answered {resp.status}: {body}"
                )
            if not isinstance(body, dict):
                raise QueryUnavailableError("owner_error", f"worker {base_url} answered {body!r}")
            return body
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _Retriable(str(exc)) from None


def as_table_row(period: dict[str, Any]) -> dict[str, Any]:
    """A period dict (as served over HTTP) in the table's row format (``{"totals": ...}``)."""
    return {
        "totals": {
            "bookings": period["bookings"],
            "cancellations": period["cancellations"],
            "booked_minor": period["booked_minor"],
            "cancelled_minor": period["cancelled_minor"],
            "lead_time_days_sum": period.get("lead_time_days_sum", 0),
            "lead_time_bookings": period.get("lead_time_bookings", 0),
        }
    }
