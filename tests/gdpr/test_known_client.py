"""What makes a client known to an organisation before an erasure (real PostgreSQL): its rows
in the organisation's tables but not its requests, an erasure asking to be repeated, and an
event in the live table's answer."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from stream_app.db import reports as report_db
from stream_app.db.tenancy import Venue, tenant_transaction, upsert_venue
from stream_app.gdpr import live
from stream_app.gdpr import requests as gdpr_requests
from stream_app.gdpr.pgdata import holds_client


async def test_a_client_is_held_by_its_rows_not_by_requests_about_it(
    db: asyncpg.Pool, new_org: Any
) -> None:
    org_a, org_b = await new_org(), await new_org()
    only_b, wedded, asked = (f"{k}-{uuid.uuid4().hex[:6]}" for k in ("onlyb", "wed", "asked"))
    async with db.acquire() as conn:
        await conn.execute(
            "INSERT INTO clients (organization_id, id, display_name, country)"
            " VALUES ($1, $2, 'B', 'PT')",
            org_b,
            only_b,
        )
        await upsert_venue(conn, org_a, Venue("v1", "Quinta", 2))
        await conn.execute(  # a row naming the client, with no row in clients
            "INSERT INTO weddings (organization_id, id, client_id, wedding_date, venue_id,"
            " guest_count) VALUES ($1, 'w1', $2, '2026-06-13', 'v1', 80)",
            org_a,
            wedded,
        )
        async with tenant_transaction(conn, org_a):
            await gdpr_requests.open_request(conn, org_a, "access", asked)
            held_a = [await holds_client(conn, org_a, c) for c in (only_b, wedded, asked)]
        async with tenant_transaction(conn, org_b):
            held_b = [await holds_client(conn, org_b, c) for c in (only_b, wedded, asked)]
    assert held_a == [False, True, False]
    assert held_b == [True, False, False]


async def test_an_erasure_asking_to_be_repeated_lets_the_next_one_go_ahead(
    db: asyncpg.Pool, new_org: Any
) -> None:
    org = await new_org()
    seen: list[bool] = []
    async with db.acquire() as conn:

        async def unfinished() -> bool:
            async with tenant_transaction(conn, org):
                return await gdpr_requests.erasure_unfinished(conn, org)

        seen.append(await unfinished())  # no erasure yet
        async with tenant_transaction(conn, org):
            first = await gdpr_requests.open_request(conn, org, "erasure", "c1")
            await gdpr_requests.mark_in_progress(conn, org, first)
        seen.append(await unfinished())  # 202: the live table did not confirm
        await report_db.insert_queued(
            conn,
            report_id="running-1",
            organization_id=org,
            user_id="admin-1",
            report_type="compliance",
            request={"report_id": "running-1"},
        )
        async with tenant_transaction(conn, org):  # a later erasure completes, one running
            second = await gdpr_requests.open_request(conn, org, "erasure", "c2")
            await gdpr_requests.complete(conn, org, second, {"running_reports": ["running-1"]})
        seen.append(await unfinished())  # running-1's files not purged since
        async with tenant_transaction(conn, org):
            await conn.execute(
                'UPDATE reports SET metadata = metadata || \'{"artifacts_purged": "x"}\''
                " WHERE organization_id = $1 AND id = 'running-1'",
                org,
            )
        seen.append(await unfinished())  # purged: nothing asks to be repeated any more
    assert seen == [False, True, True, False]


def test_a_live_row_holds_the_client_once_any_event_counted() -> None:
    empty = {  # GET /orgs/{org}/clients/{client}/interactions of a client with no event
        "organization_id": "o",
        "client_id": "c",
        "inquiries": 0,
        "responses": 0,
        "first_inquiry_at": None,
        "first_response_at": None,
        "first_response_seconds": None,
        "bookings": 0,
        "booked_at": None,
        "converted_at": None,
        "days_to_book": None,
        "direct_bookings": 0,
        "ratings": {},
        "nps": {},
        "average_rating_milli": None,
        "nps_score": None,
    }
    assert [
        live.holds_client(empty),
        live.holds_client({**empty, "ratings": {"5": 1}}),
        live.holds_client({**empty, "inquiries": 1}),
        live.holds_client({**empty, "nps": {"9": 1}}),
    ] == [False, True, True, True]
