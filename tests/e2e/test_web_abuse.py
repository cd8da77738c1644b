"""An attacker's smaller findings against the HTTP API, on one real worker (Kafka, PostgreSQL,
Redis) with small limits: signed links limited like tokens, every refusal naming its field,
cancellation outside the ``reports`` class, the workers' part header refused to clients, and
a venue-scoped request of an organisation-wide report type refused up front.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from stream_app.db.reports import insert_queued
from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from tests.conftest import WorkerFactory
from tests.e2e.helpers import auth, db_value, request_report_http

pytestmark = pytest.mark.slow
GROUP = "wedding-web-abuse"
ORG = "abuse-org"
LINK_LIMIT = 4
"""The workers' ``downloads`` limit per token (so per link), a minute."""
REPORTS_LIMIT = 3
ADMIN_LIMIT = 6
"""Admin requests of one token a minute on this module's worker (the tests here make at most
three with one admin token)."""
"""The workers' ``reports`` limit per token, a minute."""
ORG_DOWNLOADS_LIMIT = LINK_LIMIT + 1
"""The workers' organisation ``downloads`` limit, a minute: the link test's downloads use it up
(the links' budget), and the organisation's staff must still download."""
AUTH_FAILURE_LIMIT = 3
"""The workers' ``WEDDING_AUTH_FAILURE_LIMIT``, a minute."""
COMPLIANCE = {
    "report_type": "compliance",
    "date_from": "2026-01-01",
    "date_to": "2026-03-31",
    "output_formats": ["csv", "json"],
    "cache_strategy": "skip",
}


@pytest.fixture(scope="module")
async def worker(settings: Settings, worker_factory: WorkerFactory) -> AsyncIterator[WorkerProcess]:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(ORG, ORG, "Europe/London", "GBP"))
        await upsert_venue(conn, ORG, Venue("v1", "Hall", 1))
    finally:
        await conn.close()
    w = worker_factory.start(
        GROUP,
        "abuse",
        WEDDING_OFFSET_RESET="latest",
        WEDDING_RATE_LIMITS=(
            f"downloads={LINK_LIMIT}/minute,reports={REPORTS_LIMIT}/minute,"
            f"admin={ADMIN_LIMIT}/minute"
        ),
        WEDDING_ORG_RATE_LIMITS=f"downloads={ORG_DOWNLOADS_LIMIT}/minute",
        WEDDING_AUTH_FAILURE_LIMIT=f"{AUTH_FAILURE_LIMIT}/minute",
        WEDDING_DELIVERY_POLL_S="0.2",
    )
    await w.wait_ready(timeout_s=120, min_partitions=4)
    try:
        yield w
    finally:
        w.stop()  # its consumer group would answer later modules' report requests too


async def call(
    worker: WorkerProcess,
    method: str,
    path: str,
    *,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, dict[str, str], bytes]:
    """``method path`` from the client address ``source`` (any of 127/8 reaches loopback)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(worker.url, connector=connector) as s,
        s.request(method, path, headers=headers, **kwargs) as r,
    ):
        return r.status, dict(r.headers), await r.read()


def error_of(body: bytes) -> tuple[str, str, str | None]:
    """``(code, reason, field)`` of a refusal body; every key must be there."""
    error = orjson.loads(body)["error"]
    assert set(error) == {"code", "reason", "field"}, error
    return error["code"], error["reason"], error["field"]


async def delivered_links(
    worker: WorkerProcess, settings: Settings, org: str = ORG
) -> list[dict[str, Any]]:
    """An admin's compliance report of ``org`` delivered through the API: its links (csv
    and json)."""
    done = await request_report_http(
        worker.url, settings, org, {**COMPLIANCE, "delivery": {"method": "api"}}
    )
    assert done["status"] == "completed", done
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession(worker.url) as s:
        while time.monotonic() < deadline:
            async with s.get(
                f"/orgs/{org}/reports/{done['report_id']}", headers=auth(settings, org)
            ) as r:
                status = await r.json()
            links: list[dict[str, Any]] = status["delivery_links"]
            if len(links) == 2:
                return [{**link, "report_id": done["report_id"]} for link in links]
            await asyncio.sleep(0.2)
    raise TimeoutError(f"the report's links were not handed out: {status}")


async def test_a_signed_link_is_rate_limited_and_forged_links_lock_the_address_out(
    worker: WorkerProcess, settings: Settings
) -> None:
    """An attacker's finding: links were public, so never limited, and every download added
    an audit row."""
    csv_link, json_link = sorted(await delivered_links(worker, settings), key=lambda x: x["format"])
    path = "/downloads/" + csv_link["url"].split("/downloads/")[1]
    statuses, refusals, downloaded = [], [], []
    for _ in range(LINK_LIMIT + 2):
        status, headers, body = await call(worker, "GET", path)
        statuses.append(status)
        if status == 429:
            refusals.append((headers, body))
        else:
            downloaded.append(body)
    assert statuses == [200] * LINK_LIMIT + [429] * 2
    for headers, body in refusals:
        code, reason, field = error_of(body)
        assert (code, field) == ("rate_limited", "token")
        assert f"{LINK_LIMIT}/minute" in reason
        assert 1 <= int(headers["Retry-After"]) <= 60
    # the limit is the link's: the report's other link still downloads
    json_path = "/downloads/" + json_link["url"].split("/downloads/")[1]
    assert (await call(worker, "GET", json_path))[0] == 200
    audited = await db_value(
        settings,
        "SELECT count(*) FROM audit_log WHERE organization_id = $1"
        " AND action = 'link.downloaded' AND target = $2",
        ORG,
        csv_link["report_id"],
    )
    assert audited == LINK_LIMIT + 1  # one row per 200, none per 429
    # that used up the organisation's budget for links: another link is refused for it...
    status, _, body = await call(worker, "GET", json_path)
    assert (status, error_of(body)[::2]) == (429, ("rate_limited", "organization_id"))
    # ...but not the organisation's own staff, whose downloads have a budget of their own
    # (a link holder could otherwise keep the staff from every file)
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.get(
            f"/orgs/{ORG}/reports/{csv_link['report_id']}/files/csv", headers=auth(settings, ORG)
        ) as r,
    ):
        assert r.status == 200, await r.text()
        assert await r.read() == downloaded[0]  # the file the link served
    # a revoked link is refused as invalid before any budget is counted (its own is used up:
    # counted first, it was a 429 and took a slot of the organisation's)
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.post(
            f"/orgs/{ORG}/reports/{csv_link['report_id']}/links/revoke",
            headers=auth(settings, ORG),
        ) as r,
    ):
        assert r.status == 200, await r.text()
    status, _, body = await call(worker, "GET", path, source="127.0.0.6")
    assert (status, error_of(body)[::2]) == (403, ("invalid_link", "token"))

    # forged links count as bad tokens from the address: then even a good link waits
    forger = "127.0.0.5"
    head, _, sig = path.rpartition(".")
    forged = f"{head}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
    answers = [await call(worker, "GET", forged, source=forger) for _ in range(AUTH_FAILURE_LIMIT)]
    assert [a[0] for a in answers] == [403] * AUTH_FAILURE_LIMIT
    assert {error_of(a[2])[::2] for a in answers} == {("invalid_link", "token")}
    status, headers, body = await call(worker, "GET", forged, source=forger)
    assert (status, error_of(body)[::2]) == (429, ("rate_limited", "Authorization"))
    assert int(headers["Retry-After"]) >= 1
    assert (await call(worker, "GET", json_path, source=forger))[0] == 429


async def test_a_valid_link_to_a_removed_file_is_a_404_not_a_bad_token(
    worker: WorkerProcess, settings: Settings
) -> None:
    """An attacker round: after an erasure purged an organisation's files, its valid links
    answered 403 ``invalid_link`` and each click counted as a bad token from the address;
    three of them here (twenty by default) locked the address out for every tenant. Now
    such a link is a 404 naming why, counted in the link's budget, not as a bad token."""
    org = "abuse-gone-org"
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(org, org, "Europe/London", "GBP"))
    finally:
        await conn.close()
    link = (await delivered_links(worker, settings, org))[0]
    path = "/downloads/" + link["url"].split("/downloads/")[1]
    clicker = "127.0.0.23"
    assert (await call(worker, "GET", path, source=clicker))[0] == 200
    removed = list((settings.artifact_dir / org / link["report_id"]).iterdir())
    for file in removed:  # as an erasure's purge does
        file.unlink()
    answers = [await call(worker, "GET", path, source=clicker) for _ in range(LINK_LIMIT - 1)]
    assert [a[0] for a in answers] == [404] * (LINK_LIMIT - 1)  # more than AUTH_FAILURE_LIMIT
    code, reason, field = error_of(answers[0][2])
    assert (code, field) == ("not_found", "token")
    assert "was removed (a GDPR erasure or the retention rule)" in reason
    # the address is not locked out: a staff download from it goes on
    status, _, body = await call(
        worker,
        "GET",
        f"/orgs/{ORG}/reports/{link['report_id']}",
        source=clicker,
        headers=auth(settings, ORG),
    )
    assert status == 404, body  # ORG's view of another organisation's report id: not a 429
    status, _, _ = await call(worker, "GET", path, source=clicker)
    assert status == 429  # the link's own budget (LINK_LIMIT a minute) still holds


async def test_oversize_bodies_are_one_refusal_naming_the_body(
    worker: WorkerProcess, settings: Settings
) -> None:
    """aiohttp's own body limit (1 MiB) and the handlers' (64 KiB) answer the same refusal
    (an attacker's finding: ``request_entity_too_large`` with a null field)."""
    headers = {**auth(settings, ORG, "big-body"), "Content-Type": "application/json"}
    big = b'{"name": "' + b"x" * 2_000_000 + b'"}'

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: aiohttp's limit stops it
        for start in range(0, len(big), 65_536):
            yield big[start : start + 65_536]

    status, _, body = await call(
        worker, "POST", f"/orgs/{ORG}/schedules", headers=headers, data=chunked()
    )
    assert status == 413
    code, reason, field = error_of(body)
    assert (code, field) == ("too_large", "$")
    assert "1048576" in reason  # aiohttp's limit, named
    status, _, body = await call(
        worker,
        "POST",
        f"/orgs/{ORG}/reports/validate",
        headers=headers,
        data=io.BytesIO(big[:100_000]),
    )
    assert (status, error_of(body)[::2]) == (413, ("too_large", "$"))


async def test_a_report_request_body_has_the_handlers_limit(
    worker: WorkerProcess, settings: Settings
) -> None:
    """An attacker's finding: a ~1 MB request (under aiohttp's limit, over Kafka's message
    limit once stored and sent round again) was recorded, then answered 500 and left
    ``queued``; it is refused before anything is recorded, as validation's is."""
    headers = {**auth(settings, ORG, "big-request"), "Content-Type": "application/json"}
    for venues in (14_000, 200_000):  # just over 64 KiB; about the attacker's 1 MB
        filters = {"venue_id": ["v1"] * venues}
        body = {**COMPLIANCE, "report_id": f"big-{venues}", "data_filters": filters}
        raw = orjson.dumps(body)
        assert len(raw) > 64 * 1024
        status, _, answer = await call(
            worker, "POST", f"/orgs/{ORG}/reports", headers=headers, data=raw
        )
        code, reason, field = error_of(answer)
        assert (status, code, field) == (413, "too_large", "$"), answer
        assert "65536" in reason
        assert await db_value(
            settings, "SELECT count(*) FROM reports WHERE organization_id = $1 AND id = $2",
            ORG, f"big-{venues}",
        ) == 0  # fmt: skip


@pytest.mark.parametrize("depth", [65, 1000])
async def test_deeply_nested_report_requests_are_a_400_naming_the_body(
    worker: WorkerProcess, settings: Settings, depth: int
) -> None:
    """An attacker's finding: a ``configuration`` 255–1024 levels deep was a 500 (orjson
    re-serialising it), on the request and on validation."""
    headers = {**auth(settings, ORG, "deep"), "Content-Type": "application/json"}
    deep = b"[" * (depth - 2) + b"1" + b"]" * (depth - 2)  # + the body and configuration
    for path, report_id in (
        (f"/orgs/{ORG}/reports", f"deep-{depth}"),
        (f"/orgs/{ORG}/reports/validate", None),
    ):
        body = orjson.dumps({**COMPLIANCE, **({"report_id": report_id} if report_id else {})})
        raw = body[:-1] + b', "configuration": {"z": ' + deep + b"}}"
        status, _, answer = await call(worker, "POST", path, headers=headers, data=raw)
        assert status == 400, answer
        code, reason, field = error_of(answer)
        assert (code, field) == ("invalid_json", "$")
        assert reason == f"body is nested {depth} levels deep; at most 64 are accepted"
    assert await db_value(
        settings, "SELECT count(*) FROM reports WHERE organization_id = $1 AND id = $2",
        ORG, f"deep-{depth}",
    ) == 0  # fmt: skip


async def test_cancel_is_not_in_the_reports_class(
    worker: WorkerProcess, settings: Settings
) -> None:
    """An attacker's finding: after its own flood of requests an organisation could not
    cancel the backlog (cancel shared the ``reports`` budget). An analyst's cancellations
    count in ``cancels``: 4 + 6 of them pass a token's ``admin`` budget of 6 unrefused."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        for i in range(REPORTS_LIMIT + 1):
            await insert_queued(
                conn,
                report_id=f"abuse-backlog-{i}",
                organization_id=ORG,
                user_id="flooder",
                report_type="monthly_booking_summary",
                request={},
            )
    finally:
        await conn.close()
    analyst = auth(settings, ORG, "flooder", role="analyst")
    statuses = [
        (await call(worker, "POST", f"/orgs/{ORG}/reports/validate", headers=analyst, json={}))[0]
        for _ in range(REPORTS_LIMIT + 1)
    ]
    assert statuses == [400] * REPORTS_LIMIT + [429]  # the reports class is used up
    for i in range(REPORTS_LIMIT + 1):
        status, _, body = await call(
            worker, "POST", f"/orgs/{ORG}/reports/abuse-backlog-{i}/cancel", headers=analyst
        )
        assert status == 200, body
    # ... nor in the admin class: an analyst's cancellations of unknown ids used up the
    # organisation's admin budget, and its admins could not revoke tokens (an attacker round)
    for i in range(ADMIN_LIMIT):
        status, _, body = await call(
            worker, "POST", f"/orgs/{ORG}/reports/abuse-none-{i}/cancel", headers=analyst
        )
        assert status == 404, body
    cancelled = await db_value(
        settings,
        "SELECT count(*) FROM reports WHERE organization_id = $1 AND id LIKE 'abuse-backlog-%'"
        " AND status = 'cancelled'",
        ORG,
    )
    assert cancelled == REPORTS_LIMIT + 1


async def test_the_workers_part_header_is_refused_to_clients(
    worker: WorkerProcess, settings: Settings
) -> None:
    """An attacker's finding: any client could ask for a worker's raw part (its partitions)."""
    viewer = auth(settings, ORG, "curious", role="viewer")
    status, _, body = await call(worker, "GET", f"/orgs/{ORG}/payments/summary", headers=viewer)
    assert status == 200, body
    assert b"partitions" not in body
    for path, query in (
        ("payments/summary", {}),
        ("interactions/summary", {"from": "2026-01", "to": "2026-02", "zone": "UTC"}),
        ("suppliers/summary", {"from": "2026-01", "to": "2026-02"}),
    ):
        status, _, body = await call(
            worker,
            "GET",
            f"/orgs/{ORG}/{path}",
            headers={**viewer, "X-Wedding-Summary-Part": "1"},
            params=query,
        )
        assert status == 400, body
        code, _, field = error_of(body)
        assert (code, field) == ("invalid_field", "X-Wedding-Summary-Part")


async def test_a_venue_scoped_token_cannot_request_an_organisation_wide_type(
    worker: WorkerProcess, settings: Settings
) -> None:
    """Refused up front as ``…/reports/validate`` refuses it (an attacker's finding: 202,
    then the report failed on its filter)."""
    scoped = auth(settings, ORG, "hall-analyst", role="analyst", venues=["v1"])
    validation = {k: COMPLIANCE[k] for k in ("report_type", "date_from", "date_to")}
    status, _, body = await call(
        worker, "POST", f"/orgs/{ORG}/reports/validate", headers=scoped, json=validation
    )
    assert (status, error_of(body)[::2]) == (400, ("invalid_field", "$.data_filters.venue_id"))
    status, _, body = await call(
        worker, "POST", f"/orgs/{ORG}/reports", headers=scoped, json=COMPLIANCE
    )
    assert (status, error_of(body)[::2]) == (400, ("invalid_field", "$.data_filters.venue_id"))
    assert "compliance" in error_of(body)[1]
    recorded = await db_value(
        settings,
        "SELECT count(*) FROM reports WHERE organization_id = $1 AND user_id = $2",
        ORG,
        "hall-analyst",
    )
    assert recorded == 0
    # a type that takes a venue filter is still accepted for the scope
    booking = {**COMPLIANCE, "report_type": "monthly_booking_summary", "output_formats": ["csv"]}
    status, _, body = await call(
        worker, "POST", f"/orgs/{ORG}/reports", headers=scoped, json=booking
    )
    assert status == 202, body


@pytest.mark.parametrize("entry", [["v1"], {"a": 1}, 1, None])
async def test_a_venue_scoped_tokens_non_string_venue_is_the_admins_400(
    worker: WorkerProcess, settings: Settings, entry: Any
) -> None:
    """An attacker's finding: a list or object entry was a 500 (unhashable in the scope
    check), a number or null a 403; the admin gets a 400 naming the entry."""
    scoped = auth(settings, ORG, "hall-analyst", role="analyst", venues=["v1"])
    admin = auth(settings, ORG, "admin-1")
    body = {
        "report_type": "monthly_booking_summary",
        "date_from": "2026-01-01",
        "date_to": "2026-03-31",
        "data_filters": {"venue_id": [entry]},
    }
    answers = []
    for headers in (scoped, admin):
        for path, extra in (("reports/validate", {}), ("reports", {"output_formats": ["csv"]})):
            status, _, answer = await call(
                worker, "POST", f"/orgs/{ORG}/{path}", headers=headers, json={**body, **extra}
            )
            code, reason, field = error_of(answer)
            answers.append((status, code, field))
            assert "Expected `str`" in reason, reason
    assert answers == [(400, "invalid_field", "$.data_filters.venue_id[0]")] * 4


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", f"/orgs/{ORG}/schedules", {"report_type": "compliance"}),
        ("PUT", f"/orgs/{ORG}/schedules/wide", {"report_type": "compliance"}),
        ("POST", f"/orgs/{ORG}/tokens/revoke", {"jti": "j"}),
    ],
)
async def test_an_admin_body_has_the_handlers_limit_too(
    worker: WorkerProcess, settings: Settings, method: str, path: str, body: dict[str, Any]
) -> None:
    """An attacker round's finding: these three routes read bodies up to aiohttp's 1 MiB
    (a 1 MB object of 70,000 keys cost the event loop 0.2 s before its 400, and a flood of
    them took another tenant's read p99 from 6 ms to 1.4 s); they stop at 64 KiB as the
    others do, before parsing."""
    wide = {**body, "x": {f"k{i}": [1] for i in range(8_000)}}
    raw = orjson.dumps(wide)
    assert 64 * 1024 < len(raw) < 1024 * 1024
    headers = {**auth(settings, ORG, "wide-body", role="admin"), "Content-Type": "application/json"}
    status, _, answer = await call(worker, method, path, headers=headers, data=raw)
    code, reason, field = error_of(answer)
    assert (status, code, field, reason) == (413, "too_large", "$", "body is over 65536 bytes")


async def raw_get(
    worker: WorkerProcess, path: str, header_lines: list[bytes], source: str
) -> tuple[int, bytes]:
    """A GET sent byte for byte (headers no client library would send) from the client
    address ``source`` (HTTP/1.0: the answer is not chunked); its status and body."""
    host, port = worker.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port), local_addr=(source, 0))
    try:
        lines = [b"GET " + path.encode() + b" HTTP/1.0", *header_lines, b"", b""]
        writer.write(b"\r\n".join(lines))
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.parametrize(("n", "token"), [(0, b"\xff\xfe"), (1, b"a\x80"), (2, b"\xe2\x82")])
@pytest.mark.parametrize("path", [f"/orgs/{ORG}/reports/r1", f"/orgs/{ORG}/updates"])
async def test_a_token_that_is_not_ascii_is_a_401_not_a_500(
    worker: WorkerProcess, path: str, n: int, token: bytes
) -> None:
    """An attacker round's finding: ``Authorization: Bearer \\xff\\xfe`` was a 500 on every
    organisation route and the live-update stream (PyJWT cannot encode the surrogate escapes
    aiohttp hands such bytes over as)."""
    # an address per case: each bad token counts towards the address's lockout
    source = f"127.0.1.{n + (10 if path.endswith('updates') else 0) + 1}"
    status, body = await raw_get(worker, path, [b"Authorization: Bearer " + token], source)
    code, reason, field = error_of(body)
    assert (status, code, field) == (401, "unauthorized", "Authorization")
    assert reason == "invalid token: a token is ASCII (base64url and dots)"


async def test_two_authorization_headers_are_a_400(
    worker: WorkerProcess, settings: Settings
) -> None:
    """An attacker round's finding: with two ``Authorization`` headers the first was used;
    a proxy reading the last would disagree on who is asking."""
    mine = auth(settings, ORG, "first")["Authorization"].encode()
    theirs = auth(settings, ORG, "second")["Authorization"].encode()
    status, body = await raw_get(
        worker,
        f"/orgs/{ORG}/venues/v1/metrics?from=2026-01&to=2026-01",
        [b"Authorization: " + mine, b"Authorization: " + theirs],
        "127.0.1.30",
    )
    assert (status, *error_of(body)) == (
        400,
        "invalid_field",
        "the Authorization header is given 2 times; give it once",
        "Authorization",
    )
