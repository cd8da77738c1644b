"""Download links (issue 9, item 9 of Why): the schedule's lifetime for every method, links
stored with their run, revocation per report and per schedule, deletion revokes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web

from stream_app.delivery.api import ApiMethod, LinkError, LinkSigner
from stream_app.delivery.links import check_not_revoked, links_of_reports, revoke
from stream_app.delivery.targets import ApiTarget, DeliveryTarget, WebhookTarget
from stream_app.delivery.webhook import WebhookMethod
from stream_app.schedules.model import Schedule
from stream_app.schedules.store import delete_schedule
from tests.delivery.conftest import Deliverer
from tests.schedules.builders import per_org
from tests.serving import serving

SECRET = "whsec-0123456789-abcdefghij"


def schedule(target: DeliveryTarget, name: str = "links") -> Callable[[str], Schedule]:
    return per_org(name, output_formats=("csv", "json"), delivery=target)


@pytest_asyncio.fixture
async def hook_url() -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
    posted: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        posted.append(json.loads(await request.read()))
        return web.Response(status=204)

    async with serving({"/hook": handle}) as port:
        yield posted, f"http://127.0.0.1:{port}/hook"


async def test_webhook_links_last_as_long_as_the_schedule_says(
    db: asyncpg.Pool,
    make_run: Any,
    signer: LinkSigner,
    hook_url: tuple[list[dict[str, Any]], str],
    delivering: Deliverer,
    webhook: WebhookMethod,
) -> None:
    posted, url = hook_url
    target = WebhookTarget(url=url, secret=SECRET, link_ttl_seconds=120)
    run, (status,) = await make_run(schedule(target))
    before = datetime.now(UTC).replace(microsecond=0)
    result = await delivering(run, status, webhook)
    assert result.outcome == "delivered"
    (doc,) = posted
    assert len(doc["artifacts"]) == 2
    for artifact in doc["artifacts"]:
        expires = datetime.fromisoformat(artifact["download_expires_at"])
        assert before + timedelta(seconds=120) <= expires <= before + timedelta(seconds=122)
        claims = signer.verify(artifact["download_url"], now=datetime.now(UTC))
        assert (claims.report_id, claims.schedule_id) == (
            status.report_id,
            run.schedule.schedule_id,
        )
        assert claims.organization_id == status.organization_id
    # the links the webhook carried are recorded with the run
    async with db.acquire() as conn:
        stored = await conn.fetch(
            "SELECT url, run_id, method FROM download_links WHERE report_id = $1", status.report_id
        )
    assert sorted(r["url"] for r in stored) == sorted(a["download_url"] for a in doc["artifacts"])
    assert {(r["run_id"], r["method"]) for r in stored} == {(run.run_id, "webhook")}


async def test_api_links_are_handed_back_with_the_run(
    db: asyncpg.Pool, make_run: Any, signer: LinkSigner, delivering: Deliverer
) -> None:
    run, (status,) = await make_run(schedule(ApiTarget(link_ttl_seconds=600)))
    result = await delivering(run, status, ApiMethod(signer))
    assert result.outcome == "delivered" and len(result.links) == 2
    async with db.acquire() as conn:
        found = await links_of_reports(conn, status.organization_id, [status.report_id])
        rows = await conn.fetch(
            "SELECT format, url, run_id FROM download_links WHERE report_id = $1 ORDER BY format",
            status.report_id,
        )
    assert [(r["format"], r["run_id"]) for r in rows] == [("csv", run.run_id), ("json", run.run_id)]
    assert sorted(str(link["url"]) for link in found[status.report_id]) == sorted(result.links)
    assert not any(link["revoked"] for link in found[status.report_id])
    # another organisation reading the same report id sees none of them
    async with db.acquire() as conn:
        assert await links_of_reports(conn, "someone-else", [status.report_id]) == {}


async def test_report_links_can_be_revoked(
    db: asyncpg.Pool, make_run: Any, signer: LinkSigner, delivering: Deliverer
) -> None:
    run, (status,) = await make_run(schedule(ApiTarget(link_ttl_seconds=600)))
    result = await delivering(run, status, ApiMethod(signer))
    org = status.organization_id
    claims = [signer.verify(link, now=datetime.now(UTC)) for link in result.links]
    async with db.acquire() as conn:
        for c in claims:
            await check_not_revoked(conn, c)  # valid before
        # the same report id revoked in another organisation changes nothing here
        await revoke(conn, "org-other", "report", status.report_id, actor="admin-b")
        for c in claims:
            await check_not_revoked(conn, c)
        await revoke(conn, org, "report", status.report_id, actor="admin-1")
        for c in claims:
            with pytest.raises(LinkError, match="link revoked: its report's links"):
                await check_not_revoked(conn, c)
        found = await links_of_reports(conn, org, [status.report_id])
    assert all(link["revoked"] for link in found[status.report_id])
    # a link signed after the revocation works (revocation is not a ban of the report)
    later = signer.sign(
        org,
        status.artifacts[0].path,
        now=datetime.now(UTC) + timedelta(milliseconds=5),
        report_id=status.report_id,
    )
    async with db.acquire() as conn:
        await check_not_revoked(conn, signer.verify(later.url, now=datetime.now(UTC)))


async def test_schedule_links_are_revoked_by_the_route_and_by_deletion(
    db: asyncpg.Pool, make_run: Any, signer: LinkSigner, delivering: Deliverer
) -> None:
    first, (s1,) = await make_run(schedule(ApiTarget(link_ttl_seconds=600), "one"))
    second, (s2,) = await make_run(schedule(ApiTarget(link_ttl_seconds=600), "two"))
    r1 = await delivering(first, s1, ApiMethod(signer))
    r2 = await delivering(second, s2, ApiMethod(signer))
    c1 = signer.verify(r1.links[0], now=datetime.now(UTC))
    c2 = signer.verify(r2.links[0], now=datetime.now(UTC))
    async with db.acquire() as conn:
        await revoke(conn, s1.organization_id, "schedule", first.schedule.schedule_id, actor="a")
        with pytest.raises(LinkError, match="schedule's links were revoked"):
            await check_not_revoked(conn, c1)
        await check_not_revoked(conn, c2)  # the other schedule's links still work
        assert await delete_schedule(conn, s2.organization_id, second.schedule.schedule_id)
        with pytest.raises(LinkError, match="schedule's links were revoked"):
            await check_not_revoked(conn, c2)  # deleting the schedule revoked its links
        row = await conn.fetchrow(
            "SELECT revoked_by FROM download_link_revocations"
            " WHERE organization_id = $1 AND scope = 'schedule' AND target_id = $2",
            s2.organization_id,
            second.schedule.schedule_id,
        )
    assert row is not None and row["revoked_by"] == "schedule.deleted"
