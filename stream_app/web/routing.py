"""Which worker owns a venue's rows, and reading them from there.

A venue's rows live in the partition of its message key ``organization_id/venue_id`` (of
``wedding-bookings`` and, co-partitioned, of the table's changelog). Faust's partition
assignor knows which worker (by its canonical URL) holds each changelog partition; a read for
a partition this worker does not hold goes to that worker's HTTP API with an internal token.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from stream_app.agents.bookings import venue_bookings
from stream_app.app import app, settings
from stream_app.partitioning import partition_for
from stream_app.tables.bookings import row_totals, table_key
from stream_app.web.auth import issue_token
from stream_app.web.errors import ApiError

FORWARDED_HEADER = "X-Wedding-Forwarded"


def venue_partition(organization_id: str, venue_id: str) -> int:
    """The partition holding the venue's rows."""
    return partition_for(f"{organization_id}/{venue_id}".encode(), settings.topic_partitions)


def owner_url(organization_id: str, venue_id: str) -> str | None:
    """Base URL of the worker holding the venue's rows; None when it is this worker.

    Raises:
        ApiError: 503 while this worker restores its tables, or when no worker holds the
            partition (a rebalance is under way).
    """
    if getattr(app, "in_recovery", False) or getattr(app, "rebalancing", False):
        # rows being restored from the changelog would read as zeros: refuse, the caller retries
        raise ApiError(503, "recovering", "this worker is restoring its tables; retry")
    partition = venue_partition(organization_id, venue_id)
    changelog = venue_bookings.changelog_topic.get_topic_name()
    if any(
        tp.topic == changelog and tp.partition == partition
        for tp in app.assignor.assigned_actives()
    ):
        return None
    for url, topics in app.assignor.table_metadata(changelog).items():
        if partition in topics.get(changelog, []):
            return str(url).rstrip("/")
    raise ApiError(503, "rebalancing", f"no worker holds partition {partition} right now; retry")


def local_periods(
    organization_id: str, venue_id: str, grain: str, periods: list[str]
) -> list[dict[str, Any]]:
    """The venue's rows for ``periods`` from this worker's table, as JSON-ready dicts."""
    out = []
    for period in periods:
        row = venue_bookings.get(table_key(organization_id, venue_id, grain, period))  # type: ignore[arg-type]
        t = row_totals(row)
        out.append(
            {
                "period": period,
                "bookings": t.bookings,
                "cancellations": t.cancellations,
                "booked_minor": t.booked_minor,
                "cancelled_minor": t.cancelled_minor,
                "revenue_minor": t.revenue_minor,
            }
        )
    return out


async def remote_periods(
    base_url: str, organization_id: str, venue_id: str, grain: str, start: str, end: str
) -> list[dict[str, Any]]:
    """The venue's rows for ``start``..``end`` read from the worker at ``base_url``.

    A 503 (the owner is restoring its tables or rebalancing) or a connection error is retried
    with exponential backoff (0.5 s doubling to 4 s, 6 attempts, tenacity).

    Raises:
        ApiError: 503 when that worker still cannot answer after the retries, or answers
            with another error.
    """
    retrying = AsyncRetrying(
        stop=stop_after_attempt(6),
        wait=wait_exponential(multiplier=0.5, max=4),
        retry=retry_if_exception(lambda e: isinstance(e, _Retriable)),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await _fetch_periods(base_url, organization_id, venue_id, grain, start, end)
    except _Retriable as exc:
        raise ApiError(503, "owner_unavailable", f"worker {base_url}: {exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover


class _Retriable(Exception):
    """The owner did not answer yet (503 or connection error)."""


async def _fetch_periods(
    base_url: str, organization_id: str, venue_id: str, grain: str, start: str, end: str
) -> list[dict[str, Any]]:
    token = issue_token(
        settings.jwt_secret, user_id="internal", organization_id=organization_id, ttl_seconds=60
    )
    url = f"{base_url}/orgs/{organization_id}/venues/{venue_id}/metrics"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(
                url,
                params={"grain": grain, "from": start, "to": end},
                headers={"Authorization": f"Bearer {token}", FORWARDED_HEADER: "1"},
            ) as resp,
        ):
            body = await resp.json()
            if resp.status == 503:
                raise _Retriable(f"answered 503: {body}")
            if resp.status != 200:
                raise ApiError(
                    503, "owner_error", f"worker {base_url} answered {resp.status}: {body}"
                )
            periods: list[dict[str, Any]] = body["periods"]
            return periods
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
        }
    }
