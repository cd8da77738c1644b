"""Rate limits, the bad-token lockout and revocation, across two real workers sharing Redis.

Both workers are in one consumer group (one app id, so one set of counters) and count in the
session's Redis. The limits are small so the tests are quick: per token 10 aggregation
requests a minute, per organisation 15.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import aiohttp
import asyncpg
import pytest
import redis.asyncio
from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from stream_app.db.tenancy import Organization, upsert_organization
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from stream_app.web.auth import issue_token
from tests.conftest import WorkerFactory
from tests.e2e.helpers import db_value

ORG, OTHER, THIRD, FOURTH = "limits-a", "limits-b", "limits-c", "limits-d"
ROUTE = "/orgs/{org}/aggregations/datasets"
"""An ``aggregations`` route that touches no table (the answer is the allow-list)."""
REVOCATION_CACHE_S = 1.0
LOCKOUT_RECHECK_S = 1.0
"""``stream_app.web.ratelimit.LOCKOUT_RECHECK_S`` (not imported: it would build the app here)."""


@pytest.fixture(scope="module")
async def workers(
    worker_factory: WorkerFactory, settings: Settings
) -> AsyncIterator[tuple[WorkerProcess, WorkerProcess]]:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        for org in (ORG, OTHER, THIRD, FOURTH):
            await upsert_organization(conn, Organization(org, org, "Europe/Lisbon", "EUR"))
    finally:
        await conn.close()
    env = {
        "WEDDING_SCHEDULING": "0",
        "WEDDING_RATE_LIMITS": "reads=1000/minute,reports=1000/minute,"
        "aggregations=10/minute,downloads=1000/minute",
        "WEDDING_ORG_RATE_LIMITS": "reads=1000/minute,reports=1000/minute,"
        "aggregations=15/minute,downloads=1000/minute",
        "WEDDING_AUTH_FAILURE_LIMIT": "5/minute",
        "WEDDING_REVOCATION_CACHE_S": str(REVOCATION_CACHE_S),
    }
    a = worker_factory.start("wedding-limits", "a", **env)
    b = worker_factory.start("wedding-limits", "b", **env)
    await asyncio.gather(a.wait_ready(timeout_s=180), b.wait_ready(timeout_s=180))
    yield a, b
    a.stop()
    b.stop()


def bearer(settings: Settings, org: str, role: str = "analyst", user: str = "u") -> dict[str, str]:
    tok = issue_token(
        settings.jwt_secret, user_id=user, organization_id=org, ttl_seconds=600, role=role
    )
    return {"Authorization": f"Bearer {tok}"}


async def get(
    worker: WorkerProcess, org: str, headers: dict[str, str], source: str = "127.0.0.1"
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """GET :data:`ROUTE` from the client address ``source`` (any of 127/8 reaches loopback)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(worker.url, connector=connector) as s,
        s.get(ROUTE.format(org=org), headers=headers) as r,
    ):
        return r.status, dict(r.headers), await r.json()


async def test_token_and_organisation_limits_hold_across_workers(
    workers: tuple[WorkerProcess, WorkerProcess], settings: Settings
) -> None:
    a, b = workers
    first = bearer(settings, ORG, user="first")
    # 10 a minute per token: 6 on worker a, 5 on worker b -> the 11th is refused
    statuses = [(await get(a, ORG, first))[0] for _ in range(6)]
    statuses += [(await get(b, ORG, first))[0] for _ in range(4)]
    assert statuses == [200] * 10
    status, headers, body = await get(b, ORG, first)
    assert status == 429
    assert (body["error"]["code"], body["error"]["field"]) == ("rate_limited", "Authorization")
    assert "10/minute" in body["error"]["reason"]
    assert 1 <= int(headers["Retry-After"]) <= 60
    # the organisation's limit (15) counts every token of it: a second token gets 5 more
    second = bearer(settings, ORG, user="second")
    statuses = [(await get(a if i % 2 else b, ORG, second))[0] for i in range(6)]
    assert statuses == [200] * 5 + [429]
    status, headers, body = await get(a, ORG, second)
    assert (status, body["error"]["field"]) == (429, "organization_id")
    # another organisation is not affected
    status, _, _ = await get(a, OTHER, bearer(settings, OTHER))
    assert status == 200
    # all or nothing, in limits' own key layout: the first token's 11th request (over the
    # token's limit) used none of the organisation's budget, the second token's refused
    # requests (over the organisation's) none of the token's
    store = redis.asyncio.Redis.from_url(settings.redis_url)
    try:

        async def entries(*key: str) -> int:
            spec = "10/1/minute" if key[0] == "token" else "15/1/minute"
            name = f"wedding-limits:wedding-limits:LIMITER/{'/'.join(key)}/{spec}"
            return int(await store.llen(name))

        counted = [
            await entries("token", ORG, _jti(first), "aggregations"),
            await entries("token", ORG, _jti(second), "aggregations"),
            await entries("org", ORG, "aggregations"),
        ]
    finally:
        await store.aclose()
    assert counted == [10, 5, 15]
    # and limits reads those lists (the Retry-After above comes from it)
    storage = storage_from_string(
        "async+" + settings.redis_url,
        key_prefix="wedding-limits:wedding-limits",
        implementation="redispy",
    )
    try:
        stats = await MovingWindowRateLimiter(storage).get_window_stats(
            parse("15/minute"), "org", ORG, "aggregations"
        )
    finally:
        await cast(Any, storage).bridge.get_connection().aclose()  # limits has no close
    assert stats.remaining == 0


async def test_revocation_reaches_every_worker_within_the_cache_bound(
    workers: tuple[WorkerProcess, WorkerProcess], settings: Settings
) -> None:
    a, b = workers
    victim = bearer(settings, OTHER, user="leaked")
    keeper = bearer(settings, OTHER, user="keeper")
    assert (await get(b, OTHER, victim))[0] == 200  # worker b caches "nothing revoked"
    jti = _jti(victim)
    admin = bearer(settings, OTHER, role="admin", user="boss")
    async with (
        aiohttp.ClientSession(a.url) as s,
        s.post(f"/orgs/{OTHER}/tokens/revoke", json={"jti": jti}, headers=admin) as r,
    ):
        assert r.status == 200, await r.text()
        answer = await r.json()
    assert answer["effective_within_s"] == REVOCATION_CACHE_S
    # minted here without a record: revoked all the same, and the answer says none matched
    assert (answer["recorded_tokens"], answer["warning"]) == (
        0,
        f"no token of this organisation is recorded with jti {jti!r}: check the id"
        " (`wedding-engine token` prints each jti when it issues one)",
    )
    revoked_at = time.monotonic()
    # refused on both workers no later than the bound: a request *sent* after it is not
    # served (measured at sending: a CI run's loaded machine took 0.6 s to answer one)
    for w in (a, b):
        while True:
            sent = time.monotonic()
            status, _, body = await get(w, OTHER, victim)
            if status == 401:
                assert body["error"]["code"] == "token_revoked"
                break
            assert status == 200
            assert sent - revoked_at < REVOCATION_CACHE_S + 0.5
            await asyncio.sleep(0.3)
    assert (await get(b, OTHER, keeper))[0] == 200  # another token of the organisation works
    audited = await db_value(
        settings,
        "SELECT count(*) FROM audit_log WHERE organization_id = $1"
        " AND action = 'token.revoked' AND target = $2 AND actor = 'boss'",
        OTHER,
        jti,
    )
    assert audited == 1
    # a revocation time in the future is refused and recorded nowhere: "every token issued
    # before 9999" would lock the organisation out for good (an attacker's finding)
    recorded = await db_value(
        settings, "SELECT count(*) FROM token_revocations WHERE organization_id = $1", OTHER
    )
    async with (
        aiohttp.ClientSession(b.url) as s,
        s.post(
            f"/orgs/{OTHER}/tokens/revoke",
            json={"before": "9999-01-01T00:00:00+00:00"},
            headers=admin,
        ) as r,
    ):
        assert r.status == 400, await r.text()
        error = (await r.json())["error"]
    assert error["field"] == "$.before"
    assert "in the future" in error["reason"]
    assert recorded == await db_value(
        settings, "SELECT count(*) FROM token_revocations WHERE organization_id = $1", OTHER
    )
    # all tokens issued before now: the keeper goes too
    before = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    async with (
        aiohttp.ClientSession(b.url) as s,
        s.post(f"/orgs/{OTHER}/tokens/revoke", json={"before": before}, headers=admin) as r,
    ):
        assert r.status == 200, await r.text()
    await asyncio.sleep(REVOCATION_CACHE_S + 0.2)
    assert (await get(a, OTHER, keeper))[0] == 401
    assert (await get(b, OTHER, keeper))[0] == 401


async def test_repeated_bad_tokens_lock_the_address_out(
    workers: tuple[WorkerProcess, WorkerProcess], settings: Settings
) -> None:
    a, b = workers
    attacker = "127.0.0.7"  # an address of its own: the other tests' failures do not count
    bad = {"Authorization": "Bearer not-a-token"}
    statuses = [(await get(a if i % 2 else b, ORG, bad, attacker))[0] for i in range(5)]
    assert statuses == [401] * 5
    status, headers, body = await get(a, ORG, bad, attacker)
    assert (status, body["error"]["field"]) == (429, "Authorization")
    assert int(headers["Retry-After"]) >= 1
    # locked out on every worker (on the other within its re-check bound): even a good token
    # from this address waits, so a guess that happens to be right is not told apart ...
    await asyncio.sleep(LOCKOUT_RECHECK_S + 0.1)
    good = bearer(settings, THIRD, user="late")
    assert (await get(b, THIRD, good, attacker))[0] == 429
    assert (await get(a, THIRD, good, attacker))[0] == 429
    # ... while another address is served
    assert (await get(b, THIRD, good, "127.0.0.8"))[0] == 200


def _jti(headers: dict[str, str]) -> str:
    import jwt

    claims = jwt.decode(headers["Authorization"][7:], options={"verify_signature": False})
    return str(claims["jti"])


async def test_a_rate_limit_store_that_is_away_lets_requests_through_and_says_so(
    worker_factory: WorkerFactory, settings: Settings, workers: tuple[WorkerProcess, ...]
) -> None:
    """A rate limit must not take the API down with it: with nothing listening at
    ``WEDDING_REDIS_URL`` every request over a token's limit is still answered 200, and the
    worker's log names the store (once: repeats of one failure are throttled,
    ``stream_app.logthrottle``)."""
    env = {
        "WEDDING_SCHEDULING": "0",
        "WEDDING_REDIS_URL": "redis://127.0.0.1:9/0",  # discard port: nothing listens
        "WEDDING_RATE_LIMITS": "reads=1000/minute,reports=1000/minute,"
        "aggregations=2/minute,downloads=1000/minute",
    }
    away = worker_factory.start("wedding-limits-away", "a", **env)
    try:
        await away.wait_ready(timeout_s=180)
        token = bearer(settings, THIRD, user="through")
        statuses = [(await get(away, THIRD, token))[0] for _ in range(4)]
        assert statuses == [200] * 4  # twice the token's limit
        said = away.log_path.read_text(errors="replace")
        assert "rate-limit store redis://127.0.0.1:9/0 failed; request not limited" in said
        # and it shows: /readyz stays 200 (the API is up) but lists the store as failing, and
        # each request let through is counted (an operator's trial: ready, limits off, and
        # nothing but a throttled log line said so)
        async with aiohttp.ClientSession(away.url) as s:
            async with s.get("/readyz") as r:
                assert r.status == 200
                ready = await r.json()
            async with s.get("/metrics") as r:
                metrics = await r.text()
        assert ready["ready"] is True
        assert ready["checks"]["ratelimits"] == {
            "ok": False,
            "detail": "unreachable: requests are not limited",
            "required": False,
        }
        counted = [
            float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("wedding_ratelimit_store_failures_total ")
        ]
        assert counted and counted[0] >= 4  # each of the four reads (and the probes' own)
    finally:
        away.stop()


REBORN = "limits-reborn"
REBORN_SOURCE = "127.0.0.21"
"""The client address of the tests below: their 401s count towards its lockout alone."""


async def test_a_token_older_than_its_organisation_is_refused_even_with_its_revocation_gone(
    workers: tuple[WorkerProcess, WorkerProcess], settings: Settings
) -> None:
    """An attacker round's finding: deleting an organisation by hand cascades its
    revocations away, and re-registering its id gave its old tokens, a revoked one too,
    the new tenant's data. A token issued more than a minute before its organisation was
    registered belongs to an earlier organisation of that id and is refused."""
    import jwt

    from stream_app.schemas.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER

    a, b = workers
    conn = await asyncpg.connect(settings.postgres_dsn)  # the cluster's superuser here
    try:
        await conn.execute("DELETE FROM organizations WHERE id = $1", REBORN)
        await conn.execute(
            "INSERT INTO organizations (id, name, time_zone, currency, created_at)"
            " VALUES ($1, $1, 'UTC', 'EUR', now() - interval '1 hour')",
            REBORN,
        )
        now = int(time.time())
        claims = {
            "iss": DEFAULT_ISSUER, "aud": DEFAULT_AUDIENCE, "jti": "reborn-old", "sub": "old",
            "org": REBORN, "role": "admin", "iat": now - 120, "exp": now + 600,
        }  # fmt: skip
        old = {"Authorization": f"Bearer {jwt.encode(claims, settings.jwt_secret)}"}
        assert (await get(a, REBORN, old, REBORN_SOURCE))[0] == 200  # issued after the registration
        async with (
            aiohttp.ClientSession(
                a.url, connector=aiohttp.TCPConnector(local_addr=(REBORN_SOURCE, 0))
            ) as s,
            s.post(f"/orgs/{REBORN}/tokens/revoke", json={"jti": "reborn-old"}, headers=old) as r,
        ):
            assert r.status == 200, await r.text()
        await asyncio.sleep(REVOCATION_CACHE_S + 0.2)
        status, _, body = await get(b, REBORN, old, REBORN_SOURCE)
        assert (status, body["error"]["reason"]) == (401, "the token has been revoked")
        fresh = bearer(settings, REBORN, role="admin")  # never revoked
        assert (await get(a, REBORN, fresh, REBORN_SOURCE))[0] == 200
        # deleted by hand (its revocation with it): every token of the id stops working (an
        # operator's trial: they went on reading its live tables, no longer revocable). A
        # second apart from `fresh`: a token of the deletion's own second (iat is whole
        # seconds) is not told from one issued after it
        await asyncio.sleep(1.1)
        await conn.execute("DELETE FROM organizations WHERE id = $1", REBORN)
        assert await db_value(
            settings, "SELECT count(*) FROM token_revocations WHERE organization_id = $1", REBORN
        ) == 0  # fmt: skip
        deleted = await conn.fetchval(
            "SELECT deleted_at FROM deleted_organizations WHERE organization_id = $1", REBORN
        )
        await asyncio.sleep(REVOCATION_CACHE_S + 0.2)
        for worker in (a, b):
            for token in (fresh, old):  # refusals from an address of their own (lockout 5)
                status, _, body = await get(worker, REBORN, token, "127.0.0.22")
                assert (status, body["error"]["code"], body["error"]["reason"]) == (
                    401,
                    "token_revoked",
                    f"the token's organisation was deleted ({deleted.isoformat()})",
                )
        # and registered again at once (by SQL: `wedding-engine org` refuses a deleted id):
        # the tokens issued before the deletion stay refused, the one issued within a minute
        # of it too (an attacker round: the registration time alone let it through)
        await conn.execute(
            "INSERT INTO organizations (id, name, time_zone, currency)"
            " VALUES ($1, $1, 'UTC', 'EUR')",
            REBORN,
        )
        await asyncio.sleep(REVOCATION_CACHE_S + 0.2)
        for worker in (a, b):
            for token in (fresh, old):
                status, _, body = await get(
                    worker, REBORN, token, "127.0.0.24"
                )  # four more refusals: an address of its own (lockout 5)
                assert (status, body["error"]["code"], body["error"]["reason"]) == (
                    401,
                    "token_revoked",
                    f"the token was issued before its organisation was deleted"
                    f" ({deleted.isoformat()}): it belongs to the deleted organisation",
                )
        # a registration by hand with no tombstone (an id deleted before migration 026): the
        # registration time decides
        await conn.execute("DELETE FROM deleted_organizations WHERE organization_id = $1", REBORN)
        created = await conn.fetchval("SELECT created_at FROM organizations WHERE id = $1", REBORN)
    finally:
        await conn.close()
    await asyncio.sleep(REVOCATION_CACHE_S + 0.2)
    for worker in (a, b):
        status, _, body = await get(worker, REBORN, old, REBORN_SOURCE)
        assert (status, body["error"]["code"], body["error"]["reason"]) == (
            401,
            "token_revoked",
            f"the token was issued before its organisation was registered"
            f" ({created.isoformat()}): it belongs to an earlier organisation of that id",
        )
    # the new organisation's own tokens work
    mine = bearer(settings, REBORN, role="admin")
    assert (await get(a, REBORN, mine, REBORN_SOURCE))[0] == 200


async def test_revoking_a_token_of_an_organisation_that_does_not_exist_is_a_404(
    workers: tuple[WorkerProcess, WorkerProcess], settings: Settings
) -> None:
    """An attacker round's 500 (the revocation's foreign key)."""
    a, _ = workers
    admin = bearer(settings, "limits-nobody", role="admin")
    async with (
        aiohttp.ClientSession(
            a.url, connector=aiohttp.TCPConnector(local_addr=(REBORN_SOURCE, 0))
        ) as s,
        s.post("/orgs/limits-nobody/tokens/revoke", json={"jti": "x"}, headers=admin) as r,
    ):
        assert r.status == 404, await r.text()
        error = (await r.json())["error"]
    assert (error["code"], error["field"], error["reason"]) == (
        "not_found",
        "organization_id",
        "no organisation 'limits-nobody'",
    )


async def test_concurrent_requests_are_counted_exactly_across_workers(
    workers: tuple[WorkerProcess, WorkerProcess], settings: Settings
) -> None:
    """The checks of concurrent requests go to Redis in one pipeline a loop turn: 40 requests
    of one token at once, half to each worker, get exactly its limit (10) answered and the
    rest refused, and the organisation's window holds exactly those 10."""
    a, b = workers
    token = bearer(settings, FOURTH, user="burst")
    results = await asyncio.gather(
        *(get(a if i % 2 else b, FOURTH, token, "127.0.0.22") for i in range(40))
    )
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200] * 10 + [429] * 30
    assert {r[2]["error"]["field"] for r in results if r[0] == 429} == {"Authorization"}
    store = redis.asyncio.Redis.from_url(settings.redis_url)
    try:
        org_entries = await store.llen(
            f"wedding-limits:wedding-limits:LIMITER/org/{FOURTH}/aggregations/15/1/minute"
        )
    finally:
        await store.aclose()
    assert org_entries == 10
