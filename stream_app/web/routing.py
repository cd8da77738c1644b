"""Which worker owns a venue's rows, and reading them from there.

A venue's rows live in the partition of its message key ``organization_id/venue_id`` (of
``wedding-bookings`` and, co-partitioned, of the table's changelog). Faust's partition
assignor knows which worker (by its canonical URL) holds each changelog partition; a read for
a partition this worker does not hold goes to that worker's HTTP API with an internal token.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from stream_app.agents.bookings import venue_bookings
from stream_app.app import app, settings
from stream_app.partitioning import partition_for
from stream_app.tables.bookings import VenueTotals, table_key
from stream_app.web.auth import issue_token
from stream_app.web.errors import ApiError

FORWARDED_HEADER = "X-Wedding-Forwarded"


def venue_partition(organization_id: str, venue_id: str) -> int:
    """The partition holding the venue's rows."""
    return partition_for(f"{organization_id}/{venue_id}".encode(), settings.topic_partitions)


def owner_url(organization_id: str, venue_id: str) -> str | None:
    """Base URL of the worker holding the venue's rows; None when it is this worker.

    Raises:
        ApiError: 503 when no worker holds the partition (a rebalance is under way).
    """
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
        t = VenueTotals.from_json(row["totals"] if row else None)
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

    Raises:
        ApiError: 503 when that worker does not answer or answers with an error.
    """
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
            if resp.status != 200:
                raise ApiError(
                    503, "owner_error", f"worker {base_url} answered {resp.status}: {body}"
                )
            periods: list[dict[str, Any]] = body["periods"]
            return periods
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ApiError(503, "owner_unreachable", f"worker {base_url}: {exc}") from None


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
